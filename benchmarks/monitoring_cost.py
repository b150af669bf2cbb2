"""What the fleet's monitoring costs: scrape-to-query lag and Prometheus's memory, on the e2e fleet's shape.

    python benchmarks/monitoring_cost.py [--intervals 5,15] [--samples 12] [--settle 90]

One sandbox host serves the tiny chat, embedding and rerank models behind the gateway and runs the monitoring stage
(Debian's Prometheus, Alertmanager and node exporter; the same roles and playbook as production). For each scrape
interval:

1. lag: a request through the gateway, then the time from the moment vLLM's own /metrics shows it
   (vllm:request_success_total, read with prometheus_client's parser) to the moment Prometheus's HTTP API answers the
   new value. Each request is sent at a random point of the scrape cycle. Median and max over --samples requests,
   and the median as a ratio of the scrape interval (a value waits on average half an interval for the next
   scrape).
2. memory and load, after --settle seconds of scraping: Prometheus's resident memory (its own
   process_resident_memory_bytes), series in its head block, samples appended per second, the slowest scrape, and
   Prometheus's memory as a ratio of one vLLM server's and of the node exporter's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import host_down
from vllm_fleet.sandbox.inventory import cpu_host, write_sandbox_inventory
from vllm_fleet.sandbox.tiny_models import generate
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import BACKEND_KEY, CLIENT_KEY, IMAGE, IMAGES, MODELS, host

PROMETHEUS = 9090


def spec(interval: int) -> dict[str, Any]:
    def svc(name: str, task: str, port: int) -> dict[str, Any]:
        return {"name": name, "task": task, "storage_uri": f"file://{MODELS}/{name}", "image": IMAGE,
                "accelerator": "cpu", "gpus": 0, "port": port, "shm_size": "1g",
                "api_key": {"env": "BENCH_BACKEND_KEY"},
                "env": {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"},
                "engine": {"max_model_len": 128, "gpu_memory_utilization": 0.1, "enforce_eager": True}}
    return {"services": [svc("tiny-chat", "generate", 8000), svc("tiny-embed", "embed", 8001),
                         svc("tiny-rerank", "score", 8002)],
            "gateway": {"port": 8443, "clients": [{"name": "bench", "key": {"env": "BENCH_CLIENT_KEY"},
                                                   "models": ["*"]}]},
            "monitoring": {"scrape_interval_seconds": interval}}


def deploy(workdir: Path, name: str, public: str, internal: str, archive: Path, interval: int, tags: str) -> None:
    inv = write_sandbox_inventory(
        workdir / f"hosts-{uuid.uuid4().hex[:6]}.yml",
        {name: cpu_host(public, internal, image_archive=f"{IMAGES}/{archive.name}")}, spec(interval),
        gateways={name: None, "vars": {"gateway_pki_dir": str(workdir / "pki")}},
        monitoring={name: None, "vars": {"monitoring_grafana": False}})
    env = {**os.environ, "BENCH_BACKEND_KEY": BACKEND_KEY, "BENCH_CLIENT_KEY": CLIENT_KEY}
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json", "--tags", tags],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"deploy failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


def in_host(name: str, url: str) -> str:
    """GET from inside the host (Prometheus and the services listen on its internal address only)."""
    return subprocess.run(["docker", "exec", name, "curl", "-sf", url], capture_output=True, text=True,
                          check=True).stdout


def query(name: str, internal: str, promql: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    data = json.loads(in_host(name, f"http://{internal}:{PROMETHEUS}/api/v1/query?query={quote(promql)}"))
    return list(data["data"]["result"])


def scalar(name: str, internal: str, promql: str) -> float | None:
    result = query(name, internal, promql)
    return float(result[0]["value"][1]) if result else None


def successes(name: str, internal: str) -> float:
    text = in_host(name, f"http://{internal}:8000/metrics")
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "vllm:request_success"
               for s in f.samples if s.name.endswith("_total"))


def lag(name: str, public: str, internal: str, workdir: Path, samples: int, interval: int) -> list[float]:
    """Each request at a random point of the scrape cycle: sent right after the previous one showed up in
    Prometheus, every request would wait almost a whole interval (the loop would lock onto the scrapes)."""
    ca = str(workdir / "pki" / "ca.pem")
    promql = 'sum(vllm:request_success_total{job="vllm",service="tiny-chat"})'
    lags = []
    pick = random.Random(0)  # noqa: S311 - spreads requests over the scrape cycle; not a secret
    for _ in range(samples):
        time.sleep(pick.uniform(0, interval))
        before = successes(name, internal)
        r = requests.post(f"https://{public}:8443/v1/completions", verify=ca, timeout=60,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "tiny-chat", "prompt": "hello", "max_tokens": 4})
        r.raise_for_status()
        while successes(name, internal) <= before:
            time.sleep(0.05)
        shown = time.monotonic()
        while (scalar(name, internal, promql) or 0) <= before:
            time.sleep(0.1)
        lags.append(time.monotonic() - shown)
    return lags


def cost(name: str, internal: str) -> dict[str, float | None]:
    def one(promql: str) -> float | None:
        return scalar(name, internal, promql)
    return {
        "prometheus_rss_mib": (one('process_resident_memory_bytes{job="prometheus"}') or 0) / 2**20,
        "head_series": one("prometheus_tsdb_head_series"),
        "samples_per_second": one("rate(prometheus_tsdb_head_samples_appended_total[1m])"),
        "slowest_scrape_ms": (one("max(scrape_duration_seconds)") or 0) * 1000,
        "vllm_rss_mib": (one('max(process_resident_memory_bytes{job="vllm"})') or 0) / 2**20,
        "node_exporter_rss_mib": (one('process_resident_memory_bytes{job="node"}') or 0) / 2**20,
        "targets": one("count(up)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--intervals", default="5,15", help="scrape intervals to compare, in seconds")
    parser.add_argument("--samples", type=int, default=12, help="requests timed per interval")
    parser.add_argument("--settle", type=int, default=90, help="seconds of scraping before memory is read")
    ns = parser.parse_args()
    intervals = [int(i) for i in ns.intervals.split(",")]
    ensure_engine()
    tag, _ = ensure_host_image()
    image, _ = ensure_vllm_image()
    models, archive = generate(image), save_archive(image)
    name = f"vf-monbench-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="vf-monbench-"))
    try:
        public, internal = host(name, tag, models, archive)
        t = time.monotonic()
        deploy(workdir, name, public, internal, archive, intervals[0], "gateway,serve,smoke,monitoring")
        print(f"deploy, 3 services + gateway + monitoring: {time.monotonic() - t:.0f} s", flush=True)
        for interval in intervals:
            t = time.monotonic()
            deploy(workdir, name, public, internal, archive, interval, "monitoring")
            print(f"\nscrape interval {interval} s (monitoring stage: {time.monotonic() - t:.0f} s)", flush=True)
            time.sleep(ns.settle)
            lags = lag(name, public, internal, workdir, ns.samples, interval)
            figures = cost(name, internal)
            med = statistics.median(lags)
            print(f"  scrape-to-query lag: median {med:.2f} s, max {max(lags):.2f} s over {len(lags)} requests; "
                  f"median/interval {med / interval:.2f}")
            print(f"  Prometheus: {figures['prometheus_rss_mib']:.0f} MiB resident, {figures['head_series']:.0f} "
                  f"series, {figures['samples_per_second']:.0f} samples/s from {figures['targets']:.0f} targets, "
                  f"slowest scrape {figures['slowest_scrape_ms']:.0f} ms")
            vllm, node = figures["vllm_rss_mib"] or 0, figures["node_exporter_rss_mib"] or 0
            print(f"  memory ratios: Prometheus/vLLM server {figures['prometheus_rss_mib'] / vllm:.2f} "
                  f"(vLLM {vllm:.0f} MiB), Prometheus/node exporter {figures['prometheus_rss_mib'] / node:.1f} "
                  f"(node exporter {node:.0f} MiB)", flush=True)
    finally:
        host_down(name)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
