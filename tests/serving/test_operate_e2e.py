"""Day-2 commands against the serving world's fleet (both hosts, gateway, monitoring): `status` on a healthy
fleet under traffic, `logs` of a real container, `bench`, and `down` (kept weights, a second down that changes
nothing, --purge-weights). The session's last steps: `down` takes the fleet away. (`status` with one backend
stopped runs in test_gateway_e2e.py, while the failover step's replica is still down.)

Runs after tests/serving/test_monitoring_e2e.py in the session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.serving.test_gateway_e2e import CHAT_ONLY_SPEC, Clients
from tests.worlds import CLIENT_KEYS, FLEET_SPEC, KEY, ServingHost, virtual_address

pytestmark = [pytest.mark.world, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def both(serving_host: ServingHost, second_serving_host: ServingHost, fleet: dict[str, Any]
         ) -> tuple[ServingHost, ServingHost]:
    return serving_host, second_serving_host


def run(both: tuple[ServingHost, ServingHost], *args: str) -> Any:
    first, second = both
    return first.cli(*args, spec=FLEET_SPEC, others=[second], others_spec=CHAT_ONLY_SPEC)


def test_status_of_the_healthy_fleet_exits_0_with_every_service_on_every_host(both: tuple[ServingHost, ServingHost]
                                                                               ) -> None:
    """Chat traffic through the gateway while `status` samples /metrics twice: tiny-chat's tokens/s is above 0
    where requests ran, and every row's restart count is Docker's own."""
    first, second = both
    with Clients(first, threads=1, pause=0.2) as clients:
        clients.wait_for(2)
        proc = run(both, "status", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert clients.results and set(clients.results) == {200}, clients.results
    report = json.loads(proc.stdout)
    rows = {(r["host"], r["service"]): r for r in report["services"]}
    want = {(first.name, s["name"]) for s in FLEET_SPEC["services"]} | {(second.name, "tiny-chat")}
    assert set(rows) == want and report["ok"] and report["problems"] == []
    for (host, _), r in rows.items():
        assert r["state"] == "running" and r["health"] == 200 and r["uptime_seconds"] > 0, r
        assert r["gateway"].startswith("UP") and r["model"], r
        on = first if host == first.name else second
        restarts = on.docker("inspect", "-f", "{{.RestartCount}}", r["container"]).stdout.strip()
        assert r["restarts"] == int(restarts), (r, restarts)
    chats = [rows[(first.name, "tiny-chat")], rows[(second.name, "tiny-chat")]]
    for chat in chats:
        assert chat["running"] is not None and chat["waiting"] is not None, chat
        assert 0 <= chat["kv_cache_usage"] <= 1 and chat["tokens_per_second"] is not None, chat
    assert max(chat["tokens_per_second"] for chat in chats) > 0, chats
    table = run(both, "status")
    assert table.returncode == 0, table.stderr[-3000:]
    assert all(h in table.stdout for h in ("host", "uptime", "KV cache", "tokens/s", "gateway", "tiny-rerank"))
    print(f"monitoring: {len(rows)} services in status, all healthy; tiny-chat tokens/s under "
          f"{len(clients.results)} requests: {[round(c['tokens_per_second'], 1) for c in chats]}")


def test_logs_returns_the_containers_last_lines_without_the_key(both: tuple[ServingHost, ServingHost]) -> None:
    first, _ = both
    proc = run(both, "logs", "tiny-embed", "--host", first.name, "--tail", "15", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    entry = json.loads(proc.stdout)["logs"][first.name]
    lines = [ln for ln in (entry["stdout"] + "\n" + entry["stderr"]).splitlines() if ln.strip()]
    assert entry["container"] == "vllm-tiny-embed" and 0 < len(lines) <= 30
    direct = first.docker("logs", "--timestamps", "--tail", "200", "vllm-tiny-embed")
    assert all(ln in direct.stdout + direct.stderr for ln in lines)
    assert KEY not in proc.stdout + proc.stderr
    bad = run(both, "logs", "no-such-service")
    assert bad.returncode == 2 and "'no-such-service'" in bad.stderr and "tiny-chat" in bad.stderr


def test_bench_through_the_gateway_writes_json_and_png_and_compares_with_a_saved_baseline(
        both: tuple[ServingHost, ServingHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two request rates of vLLM's own benchmark through the gateway's HTTPS URL with a client key; the second
    run is compared with the first, saved as a baseline."""
    import matplotlib.image

    monkeypatch.setenv("VLLM_FLEET_BENCH_BASELINES", str(tmp_path / "baselines"))
    load = ["--rates", "4,inf", "--prompts", "16", "--input-len", "32", "--output-len", "8", "--output",
            str(tmp_path / "out"), "--json"]
    first = run(both, "bench", *load, "--save-baseline", "e2e")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert report["meta"]["gateway"].startswith("https://") and report["meta"]["model"] == "tiny-chat"
    assert [r["completed"] for r in report["runs"]] == [16.0, 16.0] and report["ok"]
    assert all(r["ttft_p50_ms"] > 0 and r["e2el_p99_ms"] >= r["e2el_p50_ms"] > 0 and r["output_throughput"] > 0
               for r in report["runs"])
    png = Path(report["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(png).ndim == 3
    raw = json.loads(Path(report["raw_json"]).read_text())
    assert len(raw["raw"]) == 2 and "p99_itl_ms" in raw["raw"][0]
    second = run(both, "bench", *load, "--compare", "e2e")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    comparison = json.loads(second.stdout)["comparison"]
    assert {(c["request_rate"], c["metric"]) for c in comparison} >= {(4.0, "ttft_p50_ms"), (4.0, "e2el_p99_ms")}
    ttft = next(c for c in comparison if c["metric"] == "ttft_p50_ms" and c["request_rate"] == 4.0)
    print(f"monitoring: 2 bench runs (4 req/s and unbounded), TTFT p50 at 4 req/s {ttft['baseline']:.1f} ms then "
          f"{ttft['current']:.1f} ms ({ttft['change_percent']:+.1f}%)")
    printed = first.stdout + first.stderr + second.stdout + second.stderr
    assert not [k for k in (KEY, *CLIENT_KEYS.values()) if k in printed]


def managed(host: ServingHost) -> list[str]:
    return host.docker("ps", "-a", "--filter", "label=io.vllm-fleet.managed", "--format", "{{.Names}}"
                       ).stdout.split()


def test_down_removes_the_fleet_keeps_the_weights_and_a_second_down_changes_nothing(
        both: tuple[ServingHost, ServingHost]) -> None:
    first, second = both
    fetched = "/var/lib/vllm-fleet/models/tiny-embed"  # fetched from the hub by the -vvv deploy
    assert first.exec("test", "-d", fetched, check=False).returncode == 0
    dry = run(both, "down", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert json.loads(dry.stdout)["changed"][first.name] > 0 and managed(first) and managed(second)

    gone = run(both, "down", "--json")
    assert gone.returncode == 0, gone.stdout[-3000:] + gone.stderr[-3000:]
    assert managed(first) == [] and managed(second) == []
    for host in (first, second):
        states = host.exec("systemctl", "is-active", "prometheus-node-exporter", check=False).stdout.split()
        assert states == ["inactive"], (host.name, states)
    assert first.exec("systemctl", "is-active", "haproxy", "prometheus", "prometheus-alertmanager",
                      check=False).stdout.split() == ["inactive"] * 3
    for host in (first, second):  # both are gateway hosts, behind the virtual address: nothing holds it now
        assert host.exec("systemctl", "is-active", "haproxy", "keepalived", check=False).stdout.split() == [
            "inactive"] * 2, host.name
        assert virtual_address().split("/")[0] not in host.exec("ip", "-4", "-o", "addr", "show").stdout
        # The firewall went with the listeners it guarded: no table, no unit left to load it at boot.
        assert host.exec("nft", "list", "table", "inet", "vllm_fleet", check=False).returncode != 0, host.name
        assert host.exec("test", "-e", "/etc/systemd/system/vllm-fleet-firewall.service",
                         check=False).returncode != 0, host.name
    assert first.exec("test", "-d", fetched, check=False).returncode == 0  # weights kept
    adapters = "/var/lib/vllm-fleet/adapters/tiny-chat"  # tiny-chat's adapter, copied there by the weights stage
    assert first.exec("test", "-d", adapters, check=False).returncode == 0

    again = run(both, "down", "--json")
    assert again.returncode == 0 and set(json.loads(again.stdout)["changed"].values()) == {0}, again.stdout[-3000:]

    purge = run(both, "down", "--purge-weights", "--json")
    assert purge.returncode == 0, purge.stdout[-3000:] + purge.stderr[-3000:]
    assert first.exec("test", "-e", fetched, check=False).returncode != 0
    assert first.exec("test", "-e", adapters, check=False).returncode != 0
    assert first.exec("test", "-d", "/srv/vllm-fleet/seed-models/tiny-chat", check=False).returncode == 0
    assert first.exec("test", "-d", "/srv/vllm-fleet/seed-models/tiny-chat-lora", check=False).returncode == 0
