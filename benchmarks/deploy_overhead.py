"""What the deploy playbook costs on top of vLLM itself, on a real vLLM CPU container in a sandbox host.

    python benchmarks/deploy_overhead.py [--services 1|3] [--keep]

Prints:
- to healthy: seconds from the start of `vllm-fleet deploy` until /health first answers 200 (polled from here);
- vLLM start: seconds from the container's start to uvicorn's "Application startup complete", from its log;
- overhead = to healthy - vLLM start (plan, facts, image check, the rollout tasks, readiness polling);
- no-op re-run: seconds for a second, unchanged deploy of the serve and smoke stages (changed=0), its task count, and
  the ratio to the first run;
- no-op full deploy: every stage of deploy-vllm.yml (validate, facts, prepare, weights, serve, smoke, summary) once
  to settle, then three times unchanged: the median seconds and the task count (changed=0), as `vllm-fleet deploy`
  of the embedded default is.
The image is loaded into the host before timing (its load time is printed separately): it is a one-off.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up
from vllm_fleet.sandbox.inventory import cpu_host, write_sandbox_inventory
from vllm_fleet.sandbox.tiny_models import generate
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

KEY = "bench-key-0a1b2c"
SERVICES = [("tiny-chat", "generate", 8000), ("tiny-embed", "embed", 8001), ("tiny-rerank", "score", 8002)]


def spec(count: int) -> dict:
    return {"services": [
        {"name": name, "task": task, "storage_uri": f"file:///srv/vllm-fleet/seed-models/{name}",
         "image": "vllm-fleet/vllm-cpu:0.32.0", "accelerator": "cpu", "gpus": 0, "port": port, "shm_size": "1g",
         "api_key": {"env": "BENCH_VLLM_KEY"},
         "engine": {"max_model_len": 128, "gpu_memory_utilization": 0.1, "enforce_eager": True}}
        for name, task, port in SERVICES[:count]]}


def deploy(inv: Path, tags: str | None = "serve,smoke") -> tuple[float, dict]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json",
                           *(["--tags", tags] if tags else [])],
                          capture_output=True, text=True, env={**os.environ, "BENCH_VLLM_KEY": KEY}, check=False)
    return time.monotonic() - started, json.loads(proc.stdout)


def first_health(address: str, port: int, t0: float, out: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    out[port] = time.monotonic() - t0
                    return
        except OSError:
            pass
        time.sleep(0.2)


def vllm_start_seconds(host: str, container: str) -> float:
    started = subprocess.run(["docker", "exec", host, "docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                             capture_output=True, text=True, check=True).stdout.strip()
    logs = subprocess.run(["docker", "exec", host, "docker", "logs", "--timestamps", container],
                          capture_output=True, text=True, check=True)
    line = next(x for x in (logs.stdout + logs.stderr).splitlines() if "Application startup complete" in x)

    def ts(text: str) -> datetime:
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}")

    return (ts(line.split()[0]) - ts(started)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1, choices=[1, 2, 3])
    parser.add_argument("--keep", action="store_true", help="leave the host and its inventory up, to profile by hand")
    ns = parser.parse_args()
    ensure_engine()
    tag, _ = ensure_host_image()
    image, _ = ensure_vllm_image()
    models, archive = generate(image), save_archive(image)
    name = f"vf-bench-{uuid.uuid4().hex[:6]}"
    workdir = Path(f"/tmp/{name}")
    workdir.mkdir()
    try:
        address, _ = host_up(HostSpec(name=name, image=tag, mounts=(
            f"{models}:/srv/vllm-fleet/seed-models:ro", f"{archive.parent}:/srv/vllm-fleet/images:ro")))
        subprocess.run(["docker", "exec", name, "bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                        "apt-get install -y -qq docker.io >/dev/null"], check=True)
        t = time.monotonic()
        subprocess.run(["docker", "exec", name, "docker", "load", "-q", "-i",
                        f"/srv/vllm-fleet/images/{archive.name}"], check=True, capture_output=True)
        load = time.monotonic() - t
        inv = workdir / "hosts.yml"
        # No gateway here: the services listen on the sandbox network, where this script polls them.
        write_sandbox_inventory(inv, {name: cpu_host(address, address)}, spec(ns.services))
        healthy: dict[int, float] = {}
        stop = threading.Event()
        t0 = time.monotonic()
        pollers = [threading.Thread(target=first_health, args=(address, port, t0, healthy, stop), daemon=True)
                   for _, _, port in SERVICES[:ns.services]]
        for p in pollers:
            p.start()
        first, result = deploy(inv)
        stop.set()
        if not result["ok"]:
            raise SystemExit(f"deploy failed: {result['hosts']}")
        starts = [vllm_start_seconds(name, f"vllm-{svc}") for svc, _, _ in SERVICES[:ns.services]]
        to_healthy = max(healthy.values())
        again, second = deploy(inv)
        print(f"services:                 {ns.services}")
        print(f"image load (one-off):     {load:6.1f} s")
        print(f"to healthy (last one):    {to_healthy:6.1f} s")
        print(f"vLLM start (sum of logs): {sum(starts):6.1f} s  ({', '.join(f'{s:.1f}' for s in starts)})")
        print(f"role overhead:            {to_healthy - sum(starts):6.1f} s  "
              f"({(to_healthy - sum(starts)) / to_healthy:.0%} of time to healthy)")
        print(f"first deploy incl. smoke: {first:6.1f} s")
        print(f"no-op re-run:             {again:6.1f} s  (changed={second['hosts'][name]['changed']}, "
              f"tasks ok={second['hosts'][name]['ok']}, {again / first:.2f} x the first run)", flush=True)
        deploy(inv, tags=None)  # the prepare and weights stages' own first run
        runs = [deploy(inv, tags=None) for _ in range(3)]
        if not all(r["ok"] for _, r in runs):
            raise SystemExit(f"full deploy failed: {[r['hosts'] for _, r in runs]}")
        times = sorted(t for t, _ in runs)
        third = runs[-1][1]
        print(f"no-op full deploy:        {times[1]:6.1f} s  median of 3 ({', '.join(f'{t:.1f}' for t in times)}; "
              f"changed={max(r['hosts'][name]['changed'] for _, r in runs)}, tasks ok={third['hosts'][name]['ok']})")
    finally:
        if ns.keep:
            print(f"kept: host {name}, inventory {workdir / 'hosts.yml'} (BENCH_VLLM_KEY={KEY})")
        else:
            host_down(name)
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
