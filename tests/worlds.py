"""The real-vLLM world shared by the whole session: the vLLM CPU image, tiny models and one sandbox host with
Docker inside (fixtures registered in tests/conftest.py), and helpers to deploy specs onto it."""


from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vllm_fleet.sandbox import inventory as sandbox_inventory

# Sandbox hosts are reached as production reaches its VMs: over SSH (Ansible's ssh connection, with pipelining and
# ControlMaster from ansible.cfg), with the sandbox's key (vllm_fleet.sandbox.hosts.ssh_vars).
SANDBOX_CONNECTION = "ssh"


# The sandbox inventory writer (vllm_fleet.sandbox.inventory): each running sandbox host reached over SSH.
write_inventory = sandbox_inventory.write_sandbox_inventory

KEY = "e2e-key-7c41d0"  # the services' api_key: the key between the gateway and the backends
MODELS_MOUNT = "/srv/vllm-fleet/seed-models"
IMAGES_MOUNT = "/srv/vllm-fleet/images"
# The gateway's client keys (test values), by the variable the spec names them with.
CLIENT_KEYS = {"E2E_CLIENT_APP": "e2e-client-app-3b9d27f1", "E2E_CLIENT_CHAT": "e2e-client-chat-8e41c0aa",
               "E2E_CLIENT_LIMITED": "e2e-client-limited-51f2d6b3"}
# The monitoring block of the e2e fleet: quick scrapes and short alert windows, and Alertmanager's receiver (its URL
# carries a token, so the spec names it by reference: AlertReceiver below serves it).
MONITORING = {"scrape_interval_seconds": 5, "alerts": {"down_minutes": 1},
              "alertmanager": {"webhook_url": {"env": "E2E_ALERT_WEBHOOK"}},
              "password": {"env": "E2E_MONITORING_PASSWORD"}}
# The weights stage's peer fan-out (the first host reads the origin, the other copies from it), as the gateway
# e2e's last deploy (the full -vvv one) runs it: the fleet plan then lists the peer server among the listeners, so
# every later step over both hosts plans with it too, or its firewall stage would change the rules back and forth.
PEER_FANOUT = {"model_weights_fanout": "peer"}
# The monitoring user's password (Prometheus, Alertmanager, the node exporters), by reference.
MONITORING_PASSWORD = "e2e-monitoring-5d17ab3c90"
WEBHOOK_TOKEN = "e2e-webhook-4c1a9e70d2"
# Environment every deploy gets besides the keys: the receiver's URL once the session has one.
RUN_ENV: dict[str, str] = {"E2E_MONITORING_PASSWORD": MONITORING_PASSWORD}
GATEWAY_PORT = 8443
GATEWAY = {
    "port": GATEWAY_PORT, "metrics_port": 8404, "tls": {"mode": "generated"},
    "health": {"interval_seconds": 1, "fall": 2, "rise": 2},
    "clients": [
        {"name": "app", "key": {"env": "E2E_CLIENT_APP"}, "models": ["*"]},
        {"name": "chat-only", "key": {"env": "E2E_CLIENT_CHAT"}, "models": ["tiny-chat"]},
        {"name": "limited", "key": {"env": "E2E_CLIENT_LIMITED"}, "models": ["tiny-chat"], "requests_per_minute": 5},
    ],
}


def service(name: str, task: str, port: int, *, model: str | None = None, **engine: Any) -> dict[str, Any]:
    return {
        "name": name, "task": task, "storage_uri": f"file://{MODELS_MOUNT}/{model or name}",
        "served_model_name": name, "image": "vllm-fleet/vllm-cpu:0.32.0", "accelerator": "cpu", "gpus": 0,
        "port": port, "shm_size": "1g", "api_key": {"env": "E2E_VLLM_KEY"},
        # Up to five vLLM servers share two cores here: vLLM's automatic OpenMP binding pins every one of them to
        # the same core, where a starting engine waited minutes behind a serving one. One unpinned thread each.
        "env": {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"},
        "engine": {"max_model_len": 128, "gpu_memory_utilization": 0.1, "enforce_eager": True, **engine},
    }


@functools.cache
def virtual_address() -> str:
    """The serving world's gateway address when two hosts serve it: a spare address of the sandbox network."""
    from vllm_fleet.sandbox.hosts import spare_address

    return spare_address()


def highly_available(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its gateway block served by every gateway host at `virtual_address()`."""
    if not spec.get("gateway"):
        return spec
    return {**spec, "gateway": {**spec["gateway"], "high_availability": {"virtual_address": virtual_address()}}}


@dataclass
class ServingHost:
    name: str
    address: str  # on the sandbox network: where clients reach the gateway
    workdir: Path
    backend_address: str = ""  # on the internal network: where the services listen
    engines_counted_until: float = 0.0  # the cost ledger has this host's vLLM engine starts up to here

    def count_engine_starts(self, test: str | None = None) -> None:
        """Record in the cost ledger the vLLM engines this host started since the last count, for `test`."""
        from vllm_fleet.sandbox import ledger
        from vllm_fleet.sandbox.hosts import engine_starts

        started, self.engines_counted_until = engine_starts(self.name, self.engines_counted_until)
        ledger.record("engine_starts", started, test=test, host=self.name)

    @property
    def monitoring_pki(self) -> Path:
        """The controller directory of the fleet's internal CA (monitoring_pki_dir): Prometheus's CA."""
        return self.workdir / "monitoring-pki"

    @property
    def pki(self) -> Path:
        """The controller directory of the gateway's generated CA (gateway_pki_dir)."""
        return self.workdir / "pki"

    @property
    def gateway_url(self) -> str:
        return f"https://{self.address}:{GATEWAY_PORT}"

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command on the host itself."""
        return subprocess.run(["docker", "exec", self.name, *args], capture_output=True, text=True, check=check)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", self.name, "docker", *args], capture_output=True, text=True,
                              check=check)

    def started_at(self, container: str) -> str:
        return self.docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()

    def containers(self) -> list[str]:
        return sorted(self.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())

    def host_vars(self) -> dict[str, Any]:
        """The host's variables. The machine the tests run on is the operators' machine: its address on the
        internal network is a trusted source of every host's firewall (tests call backends and metrics from it);
        the outsider host of tests/serving/test_network_scan_e2e.py is not."""
        from vllm_fleet.sandbox.hosts import INTERNAL_NETWORK, gateway

        return sandbox_inventory.cpu_host(self.address, self.backend_address,
                                          image_archive=f"{IMAGES_MOUNT}/vllm-cpu-0.32.0.tar",
                                          vllm_fleet_trusted_sources=[gateway(INTERNAL_NETWORK)],
                                          monitoring_pki_dir=str(self.monitoring_pki))

    def inventory(self, spec: dict[str, Any], extra_vars: dict[str, Any] | None = None,
                  others: Sequence[ServingHost] = (), others_spec: dict[str, Any] | None = None) -> Path:
        """This host (the gateway host too, when the spec has a gateway block) and `others` serving beside it,
        with `others_spec` as their own spec when given. With others and a gateway block, every host is a gateway
        host, behind one virtual address (gateway.high_availability at `virtual_address()`)."""
        gateways = [self, *others] if spec.get("gateway") else []
        if len(gateways) > 1:
            spec = highly_available(spec)
            others_spec = highly_available(others_spec) if others_spec else None
        hosts = {h.name: {**h.host_vars(), **(extra_vars or {})} for h in (self, *others)}
        for h in others if others_spec else ():
            hosts[h.name]["vllm_fleet_spec"] = others_spec
        # Grafana's apt repository is out of reach here: its install path is checked by rendering.
        return write_inventory(
            self.workdir / f"inv-{uuid.uuid4().hex[:6]}.yml", hosts, spec,
            gateways=({h.name: None for h in gateways} | {"vars": {"gateway_pki_dir": str(self.pki)}}
                      if gateways else None),
            monitoring=({self.name: None, "vars": {"monitoring_grafana": False}}
                        if spec.get("monitoring") is not None else None))

    def cli(self, *args: str, spec: dict[str, Any], others: Sequence[ServingHost] = (),
            others_spec: dict[str, Any] | None = None, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        """`vllm-fleet ARGS -i INVENTORY` over this host and `others`, as a user runs it."""
        inv = self.inventory(spec, None, others, others_spec)
        env = os.environ | CLIENT_KEYS | RUN_ENV | {"E2E_VLLM_KEY": KEY}
        proc = subprocess.run([sys.executable, "-m", "vllm_fleet", *args, "-i", str(inv)], capture_output=True,
                              text=True, env=env, check=False, timeout=timeout)
        if args[0] == "bench" and "--json" in args and proc.returncode == 0:
            from vllm_fleet.sandbox import ledger

            runs = json.loads(proc.stdout)["runs"]
            ledger.record("bench_requests", sum(int(r["completed"] or 0) + int(r.get("failed") or 0) for r in runs))
        return proc

    def deploy(self, spec: dict[str, Any], *, extra_vars: dict[str, Any] | None = None,
               tags: str | None = "weights,gateway,serve,smoke", key: str | None = KEY, timeout: int = 3600,
               verbose: int = 0, artifacts: Path | None = None, env: dict[str, str] | None = None,
               others: Sequence[ServingHost] = (), others_spec: dict[str, Any] | None = None) -> dict[str, Any]:
        inv = self.inventory(spec, extra_vars, others, others_spec)
        run_env = {k: v for k, v in os.environ.items() if k != "E2E_VLLM_KEY"} | CLIENT_KEYS | RUN_ENV | (env or {})
        if key:
            run_env["E2E_VLLM_KEY"] = key
        cmd = [sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json"]
        if tags:
            cmd += ["--tags", tags]
        if verbose:
            cmd.append("-" + "v" * verbose)
        if artifacts is not None:
            cmd += ["--artifacts", str(artifacts)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, check=False, timeout=timeout)
        try:
            payload = json.loads(proc.stdout)
        except json.JSONDecodeError:
            payload = {"ok": False, "raw": proc.stdout[-4000:]}
        payload["rc"] = proc.returncode
        from vllm_fleet.sandbox import ledger

        for gate in payload.get("gates") or []:
            ledger.record("bench_requests", gate.get("requests", 0), gate=gate.get("service"))
        payload["output"] = proc.stdout + proc.stderr
        return payload



@pytest.fixture(scope="session")
def vllm_world(world: str) -> tuple[str, Path, Path]:
    """(host image tag, tiny models dir, image archive): built once, cached across runs."""
    from vllm_fleet.sandbox.tiny_models import generate
    from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

    image, _ = ensure_vllm_image()
    return world, generate(image), save_archive(image)


def _host(name: str, vllm_world: tuple[str, Path, Path], workdir: Path) -> ServingHost:
    """A sandbox host on the sandbox network and the internal one, with the tiny models and the image archive
    mounted, prepared by the production prepare stage (Debian's Docker on a CPU host): no later deploy of the
    session finds anything left to prepare, so none restarts Docker under running engines."""
    from vllm_fleet.sandbox.hosts import INTERNAL_NETWORK, HostSpec, address, host_up

    tag, models, archive = vllm_world
    public, _ = host_up(HostSpec(name=name, image=tag, shm_size="2g", networks=(INTERNAL_NETWORK,), mounts=(
        f"{models}:{MODELS_MOUNT}:ro", f"{archive.parent}:{IMAGES_MOUNT}:ro")))
    host = ServingHost(name, public, workdir, address(name, INTERNAL_NETWORK))
    prepared = host.deploy({"services": [chat_service()]}, tags="prepare")
    assert prepared["ok"], f"the prepare stage failed on {name}:\n" + prepared["output"][-6000:]
    return host


# The serving world's hosts alive now: tests/conftest.py counts their vLLM engine starts after every test.
LIVE_HOSTS: dict[str, ServingHost] = {}


def _live(host: ServingHost) -> ServingHost:
    LIVE_HOSTS[host.name] = host
    return host


def _retire(name: str) -> None:
    """Count the host's last engine starts (for the test tearing it down), then remove it."""
    from vllm_fleet.sandbox.hosts import host_down

    host = LIVE_HOSTS.pop(name, None)
    if host is not None:
        host.count_engine_starts()
    host_down(name, count_engines=False)


# The second serving host of each session, prepared in the background from the moment the first one starts.
_SECOND: dict[str, Future[ServingHost]] = {}


@pytest.fixture(scope="session")
def serving_host(vllm_world: tuple[str, Path, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServingHost]:
    """The real-vLLM world of the whole session: one sandbox host with Docker inside, the tiny models and the vLLM
    image archive mounted; its services listen on the internal network and it is the gateway host. Every area that
    needs real vLLM (serving, gateway, and later monitoring, adapters) deploys onto it and changes it step by step,
    instead of starting a world of its own. The second serving host is prepared beside it, in the background."""
    name = f"vf-serving-{uuid.uuid4().hex[:6]}"
    workdir = tmp_path_factory.mktemp("serving")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="second-serving-host") as pool:
        _SECOND[name] = pool.submit(_host, f"{name}-b", vllm_world, workdir)
        try:
            yield _live(_host(name, vllm_world, workdir))
        finally:
            _SECOND.pop(name).exception()  # wait for it, whether or not a step took it
            _retire(f"{name}-b")
            _retire(name)


@pytest.fixture(scope="session")
def second_serving_host(serving_host: ServingHost) -> Iterator[ServingHost]:
    """A second serving host in the same world, taken only by the steps that need two replicas of a model (gateway
    failover and rolling updates, then monitoring and day-2 commands); prepared since the session's first step."""
    host = _SECOND[serving_host.name].result(timeout=1800)
    try:
        yield _live(host)
    finally:
        _retire(host.name)


# Latency objectives of the e2e chat service: loose enough never to fire on 2 shared cores, so the SLO alerts are
# loaded and evaluated on real histograms without paging anyone.
CHAT_SLO = {"ttft_p95_seconds": 30, "e2e_p95_seconds": 120}


# tiny-chat's benchmark gate: the median time to first token under 16 concurrent requests may grow by at most this
# much against the running container. One sequence at a time makes a new request wait for the 15 ahead of it
# (measured: output tokens/s fell only 25% on these cores, TTFT p50 grew 8.4 to 36 times); an unchanged engine
# measured 1.8 times slower once (a fresh container against a warm one on shared cores), hence warm-ups and a wide
# allowance. Sized to what the assertions need: two rounds of the 16 concurrent requests give a median, and 8
# warm-ups fill the engine first (64 prompts and 16 warm-ups per side before: the verdicts were as clear).
CHAT_GATE = {"metric": "ttft_p50_ms", "max_regression_percent": 250, "workload": "random", "input_len": 32,
             "output_len": 16, "prompts": 32, "max_concurrency": 16, "warmup_requests": 8}


# tiny-chat's LoRA adapter (sandbox/tiny_models_gen.py), a file:// source on every host: the weights stage copies
# it into the service's adapters directory, and every replica serves it from the first deploy on.
CHAT_ADAPTER = {"name": "tiny-chat-lora", "storage_uri": f"file://{MODELS_MOUNT}/tiny-chat-lora"}


def chat_service() -> dict[str, Any]:
    """tiny-chat as every host of the e2e fleet serves it."""
    return service("tiny-chat", "generate", 8000, max_model_len=256) | {
        "slo": CHAT_SLO, "gate": CHAT_GATE, "adapters": [dict(CHAT_ADAPTER)]}


def fleet_spec() -> dict[str, Any]:
    """The serving e2e's spec: three tiny services behind the gateway. VLLM_FLEET_E2E_ONLY=tiny-chat limits a local
    run to some services; the steps that need the others skip."""
    only = [n for n in os.environ.get("VLLM_FLEET_E2E_ONLY", "").split(",") if n]
    services = [chat_service(), service("tiny-embed", "embed", 8001), service("tiny-rerank", "score", 8002)]
    return {"services": [s for s in services if not only or s["name"] in only], "gateway": GATEWAY,
            "monitoring": MONITORING}


# The spec the serving host runs now: the e2e steps that change it for good update it, so later areas know it.
FLEET_SPEC: dict[str, Any] = fleet_spec()


class AlertReceiver:
    """Alertmanager's webhook receiver for the session: an HTTP server on this machine's sandbox address that keeps
    every notification it is sent (the destination end of the alert path, like a chat tool's webhook)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.weights.origins import sandbox_gateway

        received = self.received = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == f"/hooks/{WEBHOOK_TOKEN}":
                    received.append(json.loads(body))
                self.send_response(200 if self.path == f"/hooks/{WEBHOOK_TOKEN}" else 404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((sandbox_gateway(), 0), Handler)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}/hooks/{WEBHOOK_TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for n in self.received for a in n.get("alerts", [])
                if a["labels"].get("alertname") == alertname and a["status"] == "firing"]


@pytest.fixture(scope="session")
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    RUN_ENV["E2E_ALERT_WEBHOOK"] = receiver.url
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def fleet(serving_host: ServingHost, alert_receiver: AlertReceiver) -> dict[str, Any]:
    """FLEET_SPEC deployed on the serving host, gateway and monitoring included: the first deploy of the session."""
    import time

    started = time.monotonic()
    result = serving_host.deploy(FLEET_SPEC, tags="weights,gateway,serve,smoke,monitoring")
    result["seconds"] = time.monotonic() - started
    assert result["ok"], result["output"][-6000:]
    return result
