"""The fleet's inside, scanned from a host on its internal network that belongs to no group of the fleet.

Runs after tests/serving/test_monitoring_e2e.py in the session, on the fleet as it left it: both hosts serve,
both are gateway hosts behind one virtual address, the first is the monitoring host. The outsider is a plain sandbox
host (no deploy) on the sandbox network and the internal one. From it, every listener of the fleet plan either
refuses the connection (the firewall's TCP reset) or answers 401; the attacks that worked before the firewall fail.
The hosts that need a listener still reach it: both gateway hosts see every backend up, the monitoring host scrapes
every target."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.test_gateway_e2e import CHAT_ONLY_SPEC, gw, server_stats
from tests.serving.test_monitoring_e2e import prometheus
from tests.worlds import FLEET_SPEC, PEER_FANOUT, ServingHost, virtual_address
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.listeners import Listener

pytestmark = [pytest.mark.world, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

CURL_REFUSED = 7  # curl's exit code for a refused connection (the firewall's TCP reset)
# Listeners open only for a while: a canary during a rolling update, the weights' peer server during a copy.
NOT_LISTENING_NOW = ("vllm_canary", "weights_peer")


@pytest.fixture(scope="module")
def closed(serving_host: ServingHost, second_serving_host: ServingHost, fleet: dict[str, Any]) -> FleetPlan:
    """The fleet plan the hosts' firewall rules come from: the inventory of the monitoring module's last deploy
    (both hosts, peer fan-out), whose firewall stage changed nothing on either host (its `monitored` fixture
    asserts it), so the rules loaded now are this plan's."""
    from vllm_fleet.vm.planning.inventory import check_inventory

    return check_inventory(serving_host.inventory(FLEET_SPEC, PEER_FANOUT, [second_serving_host], CHAT_ONLY_SPEC),
                           secrets=False)


@pytest.fixture(scope="module")
def outsider(serving_host: ServingHost) -> Iterator[str]:
    """A plain sandbox host on both networks of the fleet, in no group of its inventory."""
    from vllm_fleet.sandbox.hosts import INTERNAL_NETWORK, HostSpec, host_down, host_up

    name = f"{serving_host.name}-outsider"
    host_up(HostSpec(name=name, networks=(INTERNAL_NETWORK,)))
    try:
        yield name
    finally:
        host_down(name, count_engines=False)


def curl(host: ServingHost | str, *args: str) -> tuple[int, str]:
    """curl in a sandbox host: (its exit code, the HTTP status it printed)."""
    import subprocess

    name = host if isinstance(host, str) else host.name
    proc = subprocess.run(["docker", "exec", name, "curl", "-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}",
                           "--max-time", "10", *args], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout.strip()


def target(listener: Listener, hosts: dict[str, ServingHost]) -> str:
    """Where a listener answers from another host: its bind address, or the host's address for every address."""
    return hosts[listener.host].address if listener.address == "0.0.0.0" else listener.address


def connects(address: str, port: int) -> bool:
    """Whether a TCP connection from this machine (a trusted source of every host) is accepted."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


def test_from_an_outsider_every_listener_refuses_the_connection_or_answers_401(
        closed: FleetPlan, outsider: str, serving_host: ServingHost, second_serving_host: ServingHost) -> None:
    """Each listener of the plan, from the outsider and from this machine (a trusted source): a firewalled
    listener accepts this machine's connection and resets the outsider's, so the refusal is the firewall's and not
    an absent listener's. A canary (a rolling update) and the weights' peer server (a copy) listen only for a
    while: both are refused now."""
    hosts = {h.name: h for h in (serving_host, second_serving_host)}
    scanned = [x for x in closed.listeners if x.port is not None]
    assert {x.kind for x in scanned} >= {"gateway", "gateway_metrics", "gateway_peers", "vllm", "vllm_canary",
                                         "prometheus", "alertmanager", "node_exporter"}
    seen: dict[str, tuple[str, str]] = {}
    want: dict[str, tuple[str, str]] = {}
    print(f"\nscan: {len(scanned)} listeners from {outsider} (internal network, no group) and this machine (trusted)")
    for x in scanned:
        address = target(x, hosts)
        scheme = "https" if x.kind == "gateway" else "http"
        code, status = curl(outsider, f"{scheme}://{address}:{x.port}/v1/models")
        outside = "refused" if code == CURL_REFUSED else f"HTTP {status}" if code == 0 else f"curl exit {code}"
        inside = "accepted" if connects(address, x.port or 0) else "refused"
        seen[f"{x.host} {x.name} {address}:{x.port}"] = (outside, inside)
        want[f"{x.host} {x.name} {address}:{x.port}"] = (
            ("HTTP 401", "accepted") if x.sources is None
            else ("refused", "refused") if x.kind in NOT_LISTENING_NOW else ("refused", "accepted"))
        print(f"scan: {x.host:<22} {x.name:<34} {address}:{x.port:<6} outsider: {outside:<9} trusted: {inside}")
    vip = virtual_address().split("/")[0]  # the spec's form carries the prefix length
    code, status = curl(outsider, f"https://{vip}:{closed.gateway.port if closed.gateway else 0}/v1/models")
    print(f"scan: {'virtual address':<22} {'the gateway':<34} {vip} outsider: HTTP {status}")
    assert seen == want
    assert (code, status) == (0, "401")


def test_from_an_outsider_the_attacks_on_the_inside_fail(closed: FleetPlan, outsider: str,
                                                         serving_host: ServingHost,
                                                         second_serving_host: ServingHost) -> None:
    """A silence on Alertmanager, Prometheus's reload and quit, a backend's /invocations and /metrics."""
    mon = serving_host.backend_address
    silence = json.dumps({"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
                          "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z",
                          "createdBy": "outsider", "comment": "mute everything"})
    attacks = {
        "Alertmanager silence": ["-X", "POST", "-H", "Content-Type: application/json", "--data", silence,
                                 f"http://{mon}:9093/api/v2/silences"],
        "Prometheus reload": ["-X", "POST", f"http://{mon}:9090/-/reload"],
        "Prometheus quit": ["-X", "POST", f"http://{mon}:9090/-/quit"],
    }
    for host in (serving_host, second_serving_host):
        attacks[f"{host.name} /invocations"] = ["-X", "POST", "-H", "Content-Type: application/json", "--data",
                                               '{"prompt": "hi", "max_tokens": 1}',
                                               f"http://{host.backend_address}:8000/invocations"]
        attacks[f"{host.name} /metrics"] = [f"http://{host.backend_address}:8000/metrics"]
    outcomes = {name: curl(outsider, *args) for name, args in attacks.items()}
    for name, (code, status) in outcomes.items():
        print(f"scan: attack {name:<40} from the outsider: curl exit {code}, HTTP {status or '-'}")
    assert {name: code for name, (code, _) in outcomes.items()} == dict.fromkeys(attacks, CURL_REFUSED)


def test_the_hosts_that_need_each_listener_still_reach_it(closed: FleetPlan, serving_host: ServingHost,
                                                          second_serving_host: ServingHost) -> None:
    """Both gateway hosts see every backend of every pool up; the monitoring host scrapes every target; a
    request through the virtual address is answered."""
    assert closed.gateway is not None and closed.monitoring is not None
    for host in (serving_host, second_serving_host):
        for pool in closed.gateway.pools:
            stats = server_stats(host, pool.backend)
            assert {s: r["status"] for s, r in stats.items()} == {s.name: "UP" for s in pool.servers}, host.name
    deadline = time.monotonic() + 60
    while True:
        targets = prometheus(serving_host, "/api/v1/targets", state="active")["activeTargets"]
        health = {t["scrapeUrl"]: t["health"] for t in targets}
        if all(h == "up" for h in health.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    print(f"monitoring: {len(health)} targets behind the firewall, {sum(h == 'up' for h in health.values())} up")
    assert health and set(health.values()) == {"up"}, health
    assert gw(serving_host, "/v1/chat/completions", {"model": "tiny-chat", "max_tokens": 4, "messages": [
        {"role": "user", "content": "Hi"}]})[0] == 200


def test_behind_the_firewall_the_monitoring_listeners_answer_401_without_the_password_over_tls_only(
        closed: FleetPlan, serving_host: ServingHost) -> None:
    """From this machine (a trusted source, past the firewall): Prometheus, Alertmanager and both node exporters
    refuse a request without the monitoring user's password, or with a wrong one, and answer it with the right
    one, over TLS from the fleet's internal CA; Prometheus's lifecycle API is off even to that user."""
    import requests

    from tests.worlds import MONITORING_PASSWORD
    from vllm_fleet.spec.monitoring import MONITORING_USER

    ca = serving_host.monitoring_pki / "ca.pem"
    paths = {"prometheus": "/api/v1/status/config", "alertmanager": "/api/v2/status", "node_exporter": "/metrics"}
    secured = [x for x in closed.listeners if x.kind in paths]
    assert sorted(x.kind for x in secured) == ["alertmanager", "node_exporter", "node_exporter", "prometheus"]
    seen: dict[str, tuple[int, ...]] = {}
    for x in secured:
        url = f"https://{x.address}:{x.port}{paths[x.kind]}"
        seen[url] = tuple(requests.get(url, auth=auth, verify=ca, timeout=30).status_code for auth in (
            None, (MONITORING_USER, "not-the-password"), (MONITORING_USER, MONITORING_PASSWORD)))
    for url, codes in seen.items():
        print(f"scan: {url:<52} from this machine: no password {codes[0]}, wrong password {codes[1]}, "
              f"monitoring user {codes[2]}")
    assert seen == dict.fromkeys(seen, (401, 401, 200))
    prom = next(x for x in secured if x.kind == "prometheus")
    for action in ("reload", "quit"):
        resp = requests.post(f"https://{prom.address}:{prom.port}/-/{action}", verify=ca, timeout=30,
                             auth=(MONITORING_USER, MONITORING_PASSWORD))
        assert (resp.status_code, "not enabled" in resp.text) == (403, True), (action, resp.text)
