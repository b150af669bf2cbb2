"""The no-op deploy: what `vllm-fleet deploy` costs when nothing needs to change, on real sandbox hosts.

    python benchmarks/fleet_noop.py --layout default|fleet [--code CHECKOUT]

- default: the embedded default's shape, one CPU host serving tiny-chat, tiny-embed and tiny-rerank;
- fleet: two CPU hosts on an internal network, tiny-chat on both, the gateway and the monitoring (Prometheus,
  Alertmanager, node exporters; Grafana off) on the first.

Every stage of deploy-vllm.yml runs once to settle, then three times unchanged. Prints the median wall seconds of the
three, the tasks run (ok, summed over the hosts) and the changes (must be 0). With --code, the deploys run the
vllm_fleet package and collection of another checkout (its src/ first on PYTHONPATH; the hosts and models still come
from this one), so that two commits are compared on the same hosts' shape: the ratio of the two medians is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import INTERNAL_NETWORK, HostSpec, address, host_down, host_up
from vllm_fleet.sandbox.inventory import cpu_host, write_sandbox_inventory
from vllm_fleet.sandbox.tiny_models import generate
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

KEY, CLIENT = "noop-backend-key-3f9e", "noop-client-key-7a21"
MODELS, IMAGES = "/srv/vllm-fleet/seed-models", "/srv/vllm-fleet/images"
SERVICES = [("tiny-chat", "generate", 8000), ("tiny-embed", "embed", 8001), ("tiny-rerank", "score", 8002)]
LINK = ("try:\n    from vllm_fleet.vm.running.paths import ensure_collection_link\n"
        "except ImportError:  # a checkout from before the VM wing's rooms\n"
        "    from vllm_fleet.vm.paths import ensure_collection_link\n"
        "ensure_collection_link()\n")


def spec(layout: str) -> dict[str, Any]:
    chosen = SERVICES if layout == "default" else SERVICES[:1]
    out: dict[str, Any] = {"services": [
        {"name": name, "task": task, "storage_uri": f"file://{MODELS}/{name}", "image": "vllm-fleet/vllm-cpu:0.32.0",
         "accelerator": "cpu", "gpus": 0, "port": port, "shm_size": "1g", "api_key": {"env": "NOOP_BACKEND_KEY"},
         "engine": {"max_model_len": 128, "gpu_memory_utilization": 0.1, "enforce_eager": True}}
        for name, task, port in chosen]}
    if layout == "fleet":
        out["gateway"] = {"port": 8443, "clients": [{"name": "bench", "key": {"env": "NOOP_CLIENT_KEY"},
                                                     "models": ["*"]}]}
        out["monitoring"] = {}
    return out


def deploy(inv: Path, code: Path | None) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "NOOP_BACKEND_KEY": KEY, "NOOP_CLIENT_KEY": CLIENT}
    if code:
        env["PYTHONPATH"] = str(code / "src")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json"],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"deploy printed no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
    if not result.get("ok"):
        raise SystemExit(f"deploy failed: {json.dumps(result.get('hosts'), indent=1)[-4000:]}")
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=["default", "fleet"], default="default")
    parser.add_argument("--code", type=Path, help="a checkout whose vllm_fleet and collection run the deploys")
    ns = parser.parse_args()
    code = ns.code.resolve() if ns.code else None
    if code:  # its own collection link, as its `make venv` makes it
        subprocess.run([sys.executable, "-c", LINK], env={**os.environ, "PYTHONPATH": str(code / "src")}, check=True)
    ensure_engine()
    tag, _ = ensure_host_image()
    image, _ = ensure_vllm_image()
    models, archive = generate(image), save_archive(image)
    run = uuid.uuid4().hex[:6]
    names = [f"vf-noop-{run}-a"] + ([f"vf-noop-{run}-b"] if ns.layout == "fleet" else [])
    workdir = Path(f"/tmp/vf-noop-{run}")
    workdir.mkdir()
    try:
        hosts: dict[str, dict[str, Any]] = {}
        for name in names:
            public, _ = host_up(HostSpec(name=name, image=tag, shm_size="2g", networks=(INTERNAL_NETWORK,), mounts=(
                f"{models}:{MODELS}:ro", f"{archive.parent}:{IMAGES}:ro")))
            internal = address(name, INTERNAL_NETWORK) if ns.layout == "fleet" else public
            hosts[name] = cpu_host(public, internal, image_archive=f"{IMAGES}/{archive.name}")
        first = names[0]
        inv = write_sandbox_inventory(
            workdir / "hosts.yml", hosts, spec(ns.layout),
            gateways={first: None, "vars": {"gateway_pki_dir": str(workdir / "pki")}} if ns.layout == "fleet" else None,
            monitoring={first: None, "vars": {"monitoring_grafana": False}} if ns.layout == "fleet" else None)
        settle, _ = deploy(inv, code)
        runs = [deploy(inv, code) for _ in range(3)]
        times = [t for t, _ in runs]
        tasks = [sum(h["ok"] for h in r["hosts"].values()) for _, r in runs]
        changed = max(sum(h["changed"] for h in r["hosts"].values()) for _, r in runs)
        print(f"layout:              {ns.layout} ({len(names)} host(s)); code: {code or 'this checkout'}")
        stages = "prepare, weights, serve, smoke" + (", gateway, monitoring" if ns.layout == "fleet" else "")
        print(f"first deploy:        {settle:6.1f} s (to settle: {stages})")
        print(f"no-op full deploy:   {statistics.median(times):6.1f} s  median of 3 "
              f"({', '.join(f'{t:.1f}' for t in times)}); tasks ok {tasks[-1]} (summed over the hosts); "
              f"changed {changed}")
    finally:
        for name in names:
            host_down(name)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
