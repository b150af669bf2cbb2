"""What the gateway costs, and what its prefix routing buys, on real vLLM CPU services in sandbox hosts.

    python benchmarks/gateway_overhead.py [--prompts 200] [--concurrency 4] [--rounds 3]
                                          [--part both|overhead|prefix|isolated]

Load comes from vLLM's own benchmark (`vllm.benchmarks.serve`, inside the deployed image), run in a container on the
gateway host so that both paths start from the same place:

1. overhead: one replica of the tiny chat model; the same random workload straight to the backend (internal
   address, backend key) and through the gateway (HTTPS, generated CA, a client key), in alternating order over
   --rounds rounds (direct, gateway, gateway, direct, ...) so that neither path always runs on a warmer or a
   quieter machine. Prints TTFT and end-to-end latency p50/p99 and request throughput per run, their medians per
   path, and gateway/direct ratios of the medians.
2. prefix affinity: a multi-turn-like workload (vLLM's prefix_repetition dataset: many long shared openings, each
   followed by short turns, shuffled), first on one replica whose KV cache holds every opening (the ceiling: what
   any routing can reach), then on two replicas behind the gateway whose caches (--num-gpu-blocks-override) hold
   half of the openings each, with `balance: prefix` unbounded, prefix with its load bound
   (`prefix_load_bound`, HAProxy's hash-balance-factor) and round robin. Prints the prefix-cache hit rate of each,
   from vLLM's own counters (vllm:prefix_cache_hits / vllm:prefix_cache_queries, read with prometheus_client's
   parser), as a ratio of the ceiling. Then, per policy, a skewed workload: one opening in half of the requests,
   the rest spread over the others, sent at a fixed rate (the ceiling run's throughput, Poisson arrivals) instead
   of a closed loop, so that a replica given more than its share queues: TTFT p50/p99 per policy and the p99 as a
   ratio of round robin's.
3. isolated (not part of `both`): the gateway's own cost, with no vLLM. A fast stand-in backend (nginx answering a
   short completion-sized JSON) on the gateway host; `wrk` (Debian's) sends the same POST at the same concurrency
   (--concurrency x 8 connections) for --seconds, over TLS both ways: straight to nginx's own TLS listener (the
   gateway's certificate), and through the gateway (TLS, key check, the Lua body reading, scope, route) to nginx's
   plain one, in alternating rounds. Prints requests/s and latency p50/p99 per run and their medians, the ratio of
   the two, the gateway's own time per request from HAProxy's log (%Ta - %Tr: everything but the backend's answer),
   and the requests each serves per second of its CPU (HAProxy's, nginx's): what sizes a gateway host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import INTERNAL_NETWORK, HostSpec, address, host_down, host_up
from vllm_fleet.sandbox.inventory import cpu_host, write_sandbox_inventory
from vllm_fleet.sandbox.tiny_models import generate
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

BACKEND_KEY = "bench-backend-key-5e1d"
CLIENT_KEY = "bench-client-key-9c2a"
IMAGE = "vllm-fleet/vllm-cpu:0.32.0"
MODELS, IMAGES = "/srv/vllm-fleet/seed-models", "/srv/vllm-fleet/images"
BENCH = ("import argparse, sys; from vllm.benchmarks.serve import add_cli_args, main; "
         "p = argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")


# The prefix workload: OPENINGS shared openings of OPENING_TOKENS tokens, TURNS turns each. Each of two replicas'
# KV caches holds CACHE_BLOCKS blocks of BLOCK tokens (4,800 tokens): half of the openings (32 x 4 blocks) and the
# requests running (4 x 5 blocks), so the half that prefix routing gives a replica about fits, and all of them, which
# round robin gives each replica, do not. The ceiling's one replica has twice that: every opening fits.
OPENINGS, OPENING_TOKENS, TURNS, BLOCK, CACHE_BLOCKS = 64, 128, 8, 32, 150  # CPU attention: blocks of a multiple of 32
LOAD_BOUND = 150  # prefix_load_bound's default
# The workloads send raw prompts (/v1/completions), whose opening the gateway knows only as their first
# gateway_prefix_bytes. The tiny model's tokenizer spends about a byte a token, so an opening of 128 tokens is about
# 128 bytes: the default 256 would take in each request's own suffix and spread one opening's turns over the replicas.
PREFIX_BYTES = 64


def spec(balance: str, cache_blocks: int | None = None, load_bound: int | None = None) -> dict[str, Any]:
    extra = ["--block-size", str(BLOCK), "--num-gpu-blocks-override", str(cache_blocks)] if cache_blocks else []
    return {"services": [{
        "name": "tiny-chat", "task": "generate", "storage_uri": f"file://{MODELS}/tiny-chat", "image": IMAGE,
        "accelerator": "cpu", "gpus": 0, "port": 8000, "shm_size": "1g", "api_key": {"env": "BENCH_BACKEND_KEY"},
        "env": {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"},
        "engine": {"max_model_len": 256, "gpu_memory_utilization": 0.15, "enforce_eager": True,
                   "enable_prefix_caching": True, "extra_args": extra}}],
        "gateway": {"port": 8443, "balance": balance, "prefix_load_bound": load_bound, "clients": [
            {"name": "bench", "key": {"env": "BENCH_CLIENT_KEY"}, "models": ["*"]}]}}


def host(name: str, tag: str, models: Path, archive: Path) -> tuple[str, str]:
    public, _ = host_up(HostSpec(name=name, image=tag, shm_size="2g", networks=(INTERNAL_NETWORK,), mounts=(
        f"{models}:{MODELS}:ro", f"{archive.parent}:{IMAGES}:ro")))
    subprocess.run(["docker", "exec", name, "bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                    "apt-get install -y -qq docker.io >/dev/null"], check=True)
    return public, address(name, INTERNAL_NETWORK)


def deploy(workdir: Path, hosts: dict[str, tuple[str, str]], gateway: str, balance: str, tags: str,
           archive: Path, cache_blocks: int | None = None, load_bound: int | None = LOAD_BOUND) -> None:
    inv = write_sandbox_inventory(
        workdir / f"hosts-{uuid.uuid4().hex[:6]}.yml",
        {name: cpu_host(public, internal, image_archive=f"{IMAGES}/{archive.name}")
         for name, (public, internal) in hosts.items()},
        spec(balance, cache_blocks, load_bound),
        gateways={gateway: None,
                  "vars": {"gateway_pki_dir": str(workdir / "pki"), "gateway_prefix_bytes": PREFIX_BYTES}})
    env = {**os.environ, "BENCH_BACKEND_KEY": BACKEND_KEY, "BENCH_CLIENT_KEY": CLIENT_KEY}
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json", "--tags", tags],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"deploy failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


def bench(gateway: str, workdir: Path, base_url: str, key: str, label: str, args: list[str]) -> dict[str, Any]:
    """vllm.benchmarks.serve in a container of the vLLM image on the gateway host; returns its result JSON."""
    subprocess.run(["docker", "cp", str(workdir / "pki" / "ca.pem"), f"{gateway}:/tmp/bench-ca.pem"], check=True)
    proc = subprocess.run(
        ["docker", "exec", gateway, "docker", "run", "--rm", "--network", "host", "-e", "SSL_CERT_FILE=/ca.pem",
         "-v", "/tmp/bench-ca.pem:/ca.pem:ro", "-v", f"{MODELS}:{MODELS}:ro", "-v", "/tmp:/out",
         "--entrypoint", "/opt/vllm/bin/python3", IMAGE, "-c", BENCH,
         "--backend", "openai", "--base-url", base_url, "--endpoint", "/v1/completions", "--model", "tiny-chat",
         "--tokenizer", f"{MODELS}/tiny-chat", "--header", f"Authorization=Bearer {key}", "--disable-tqdm",
         "--save-result", "--result-dir", "/out", "--result-filename", f"{label}.json",
         "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "50,99", *args],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark {label} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = subprocess.run(["docker", "exec", gateway, "cat", f"/tmp/{label}.json"], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout))


def fresh_caches(hosts: dict[str, tuple[str, str]]) -> None:
    """Restart every replica so that each policy starts from empty prefix caches; wait until each serves again."""
    for name in hosts:
        subprocess.run(["docker", "exec", name, "docker", "restart", "vllm-tiny-chat"], check=True,
                       capture_output=True)
    for _, internal in hosts.values():
        deadline = time.monotonic() + 600
        while True:
            try:
                if requests.get(f"http://{internal}:8000/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the replica at {internal} did not come back after a restart")
            time.sleep(2)
    gateway_internal = next(iter(hosts.values()))[1]  # the first host is the gateway host
    deadline = time.monotonic() + 120
    while True:  # until the gateway's health checks have both replicas back in rotation
        rows = requests.get(f"http://{gateway_internal}:8404/stats;csv", timeout=10).text.splitlines()
        up = [r for r in rows if r.startswith("pool_tiny-chat,") and ",UP," in r and ",BACKEND," not in r]
        if len(up) == len(hosts):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway does not see every replica up: {rows}")
        time.sleep(1)


def prefix_counters(internal: str) -> tuple[float, float]:
    """(hits, queries) of vLLM's prefix cache on one replica."""
    text = requests.get(f"http://{internal}:8000/metrics", timeout=10).text
    values = {"vllm:prefix_cache_hits": 0.0, "vllm:prefix_cache_queries": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name in values:
                if sample.name == f"{name}_total" or (sample.name == name and family.type == "counter"):
                    values[name] += sample.value
    return values["vllm:prefix_cache_hits"], values["vllm:prefix_cache_queries"]


def hit_rate(internals: list[str], run: Any, label: str) -> float:
    """The prefix-cache hit rate over every replica while `run` runs; prints each replica's share."""
    before = [prefix_counters(i) for i in internals]
    run()
    after = [prefix_counters(i) for i in internals]
    per = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
    print(f"{label:<12} per replica: " + ", ".join(
        f"{q:.0f} prompt tokens, {h / q if q else 0:.1%} from cache" for h, q in per), flush=True)
    hits, queries = sum(h for h, _ in per), sum(q for _, q in per)
    return hits / queries if queries else 0.0


def alternating(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, path) for every path of every round, every other round in reverse, so that neither path always runs
    on a warmer or a quieter machine."""
    for i in range(rounds):
        for name in names if i % 2 == 0 else list(reversed(names)):
            yield i, name


FIGURES = ("median_ttft_ms", "p99_ttft_ms", "median_e2el_ms", "p99_e2el_ms", "request_throughput")


def row(name: str, r: dict[str, Any]) -> str:
    return f"{name:<18} " + " ".join(f"{r[k]:9.2f}" for k in FIGURES)


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in FIGURES}


def overhead(workdir: Path, a: str, hosts: dict[str, tuple[str, str]], ns: argparse.Namespace) -> None:
    public_a, internal_a = hosts[a]
    load = ["--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "16",
            "--num-prompts", str(ns.prompts), "--max-concurrency", str(ns.concurrency), "--ignore-eos"]
    bench(a, workdir, f"http://{internal_a}:8000", BACKEND_KEY, "warmup", [*load[:-3], "--num-prompts", "20"])
    paths = {"direct": (f"http://{internal_a}:8000", BACKEND_KEY),
             "through gateway": (f"https://{public_a}:8443", CLIENT_KEY)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    print(f"\n{ns.prompts} requests, 64 tokens in, 16 out, {ns.concurrency} at a time, same backend, "
          f"{ns.rounds} rounds in alternating order")
    print(f"{'run':<18} {'TTFT p50':>9} {'TTFT p99':>9} {'E2E p50':>9} {'E2E p99':>9} {'req/s':>9}  (ms)")
    for i, name in alternating(list(paths), ns.rounds):
        url, key = paths[name]
        result = bench(a, workdir, url, key, f"{name.split()[0]}-{i}", load)
        runs[name].append(result)
        print(row(f"{name} #{i + 1}", result), flush=True)
    direct, through = medians(runs["direct"]), medians(runs["through gateway"])
    print(row("median direct", direct))
    print(row("median gateway", through))
    print(f"{'ratio gw/direct':<18} " + " ".join(f"{through[k] / direct[k]:9.2f}" for k in FIGURES), flush=True)


def skewed(a: str, workdir: Path, url: str, label: str, rate: float) -> dict[str, float]:
    """One opening in half of the requests: two of vLLM's benchmarks at once, each at half of `rate` (Poisson
    arrivals): the random dataset, whose requests all share one 128-token prefix (the hot opening), and the
    prefix_repetition workload over the other openings. Returns TTFT p50 and p99 over the requests of both."""
    half = f"{rate / 2:.2f}"
    hot = ["--dataset-name", "random", "--random-prefix-len", str(OPENING_TOKENS), "--random-input-len", "16",
           "--random-output-len", "4", "--ignore-eos", "--num-prompts", str(OPENINGS * TURNS // 2), "--seed", "7",
           "--request-rate", half, "--save-detailed"]
    rest = ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(OPENING_TOKENS),
            "--prefix-repetition-suffix-len", "16", "--prefix-repetition-num-prefixes", str(OPENINGS - 1),
            "--prefix-repetition-output-len", "4", "--num-prompts", str(OPENINGS * TURNS // 2), "--seed", "101",
            "--request-rate", half, "--save-detailed"]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda args: bench(a, workdir, url, CLIENT_KEY, f"{label}-{args[1]}", args[0]),
                             [(hot, "hot"), (rest, "rest")]))
    ttfts = sorted(t * 1000 for r in runs for t in r["ttfts"] if t)
    return {"p50": statistics.median(ttfts), "p99": ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))],
            "requests": float(len(ttfts))}


def prefix_affinity(workdir: Path, a: str, hosts: dict[str, tuple[str, str]], archive: Path,
                    ns: argparse.Namespace) -> None:
    url = f"https://{hosts[a][0]}:8443"
    turns = ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(OPENING_TOKENS),
             "--prefix-repetition-suffix-len", "16", "--prefix-repetition-num-prefixes", str(OPENINGS),
             "--prefix-repetition-output-len", "4", "--num-prompts", str(OPENINGS * TURNS),
             "--seed", "100", "--max-concurrency", str(ns.concurrency)]
    rates: dict[str, float] = {}
    runs: dict[str, dict[str, Any]] = {}

    def uniform(label: str, internals: list[str]) -> None:
        def run() -> None:
            runs[label] = bench(a, workdir, url, CLIENT_KEY, f"prefix-{label.replace(' ', '-')}", turns)
        rates[label] = hit_rate(internals, run, label)

    # The ceiling: one replica whose cache holds every opening.
    deploy(workdir, {a: hosts[a]}, a, "prefix", "gateway,serve", archive, cache_blocks=2 * CACHE_BLOCKS)
    fresh_caches({a: hosts[a]})
    uniform("ceiling", [hosts[a][1]])
    rate = runs["ceiling"]["request_throughput"]
    skew: dict[str, dict[str, float]] = {}
    internals = [internal for _, internal in hosts.values()]
    for label, balance, bound in (("prefix", "prefix", None), ("bounded prefix", "prefix", LOAD_BOUND),
                                  ("round robin", "round_robin", None)):
        deploy(workdir, hosts, a, balance, "gateway,serve", archive, cache_blocks=CACHE_BLOCKS, load_bound=bound)
        fresh_caches(hosts)
        uniform(label, internals)
        skew[label] = skewed(a, workdir, url, f"skewed-{label.replace(' ', '-')}", rate)
        print(f"{label:<14} skewed: {skew[label]['requests']:.0f} requests, TTFT p50 {skew[label]['p50']:.1f} ms, "
              f"p99 {skew[label]['p99']:.1f} ms", flush=True)
    print(f"\n{OPENINGS} shared openings of {OPENING_TOKENS} tokens x {TURNS} turns, shuffled "
          f"({OPENINGS * TURNS} requests, {ns.concurrency} at a time); the ceiling: one replica whose KV cache holds "
          f"every opening ({2 * CACHE_BLOCKS} blocks of {BLOCK} tokens); the others: two replicas of "
          f"{CACHE_BLOCKS} blocks (half the openings) each. Skewed: one opening in half of the requests, "
          f"sent at {rate:.2f} requests/s (the ceiling run's throughput), Poisson arrivals.")
    print(f"{'policy':<16} {'hit rate':>9} {'/ceiling':>9} {'skewed TTFT p50':>16} {'p99':>9} {'p99/rr':>7}")
    rr = skew["round robin"]["p99"]
    for label, hit in rates.items():
        if label == "ceiling":
            print(f"{label:<16} {hit:9.1%} {1:9.2f}")
            continue
        print(f"{label:<16} {hit:9.1%} {hit / rates['ceiling']:9.2f} {skew[label]['p50']:13.1f} ms "
              f"{skew[label]['p99']:9.1f} {skew[label]['p99'] / rr:7.2f}")


STANDIN = """
server {{
  listen {internal}:8000;
  location = /health {{ return 200 "ok"; }}
  location / {{ default_type application/json; return 200 '{reply}'; }}
}}
server {{
  listen {public}:9443 ssl;
  ssl_certificate /etc/haproxy/vllm-fleet/gateway.pem;
  ssl_certificate_key /etc/haproxy/vllm-fleet/gateway.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  keepalive_requests 100000;
  location / {{ default_type application/json; return 200 '{reply}'; }}
}}
"""
REPLY = ('{"id":"cmpl-0","object":"chat.completion","model":"tiny-chat","choices":[{"index":0,"message":'
         '{"role":"assistant","content":"A short answer of about the size a chat turn has."},"finish_reason":"stop"}]}')
REQUEST = ('{"model":"tiny-chat","messages":[{"role":"system","content":"You are terse."},'
           '{"role":"user","content":"Say something short about gateways."}],"max_tokens":16}')
# wrk's Lua script; the key is in the file (mode 600 on the host), not on wrk's command line.
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def sh(name: str, script: str, check: bool = True) -> str:
    return subprocess.run(["docker", "exec", name, "bash", "-c", script], capture_output=True, text=True,
                          check=check).stdout


def cpu_seconds(name: str, process: str) -> float:
    """User + system CPU seconds of every process of that name on the host (from /proc, in clock ticks)."""
    out = sh(name, f"for p in $(pgrep -x {process}); do cut -d' ' -f14,15 /proc/$p/stat; done; getconf CLK_TCK")
    *rows, tick = out.split()
    return sum(int(v) for v in rows) / int(tick)


def wrk(name: str, url: str, connections: int, seconds: int) -> dict[str, float]:
    out = sh(name, f"wrk -t1 -c{connections} -d{seconds}s --latency -s /root/bench.lua {url}")
    figures = {"rps": float(out.split("Requests/sec:")[1].split()[0])}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        value = out.split(f" {label}")[1].split()[0]
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
        figures[key] = float(value[: -len(unit)]) * scale[unit]
    figures["requests"] = float(out.split(" requests in ")[0].split()[-1])
    return figures


def isolated(workdir: Path, a: str, hosts: dict[str, tuple[str, str]], archive: Path, ns: argparse.Namespace) -> None:
    public, internal = hosts[a]
    sh(a, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null")
    deploy(workdir, {a: hosts[a]}, a, "prefix", "gateway", archive)  # the gateway alone: no vLLM runs
    conf = STANDIN.format(internal=internal, public=public, reply=REPLY)
    subprocess.run(["docker", "exec", "-i", a, "bash", "-c", "cat > /etc/nginx/sites-enabled/default && "
                    "systemctl restart nginx"], input=conf, text=True, check=True)
    subprocess.run(["docker", "exec", "-i", a, "bash", "-c", "umask 077; cat > /root/bench.lua"],
                   input=WRK_SCRIPT % (REQUEST, CLIENT_KEY), text=True, check=True)
    time.sleep(5)  # the gateway's health checks find the stand-in up
    connections = ns.concurrency * 8
    paths = {"direct": ("nginx", f"https://{public}:9443/v1/chat/completions"),
             "through gateway": ("haproxy", f"https://{public}:8443/v1/chat/completions")}
    wrk(a, paths["through gateway"][1], connections, 3)  # warm-up; also checks the key and route pass
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    print(f"\nstand-in backend, TLS both ways, {connections} connections, {ns.seconds} s a run, "
          f"{ns.rounds} rounds in alternating order")
    print(f"{'run':<18} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'req/CPU-s':>10}")
    for i, name in alternating(list(paths), ns.rounds):
        process, url = paths[name]
        since = sh(a, "date +%s").strip()
        cpu = cpu_seconds(a, process)
        result = wrk(a, url, connections, ns.seconds)
        result["per_cpu_s"] = result["requests"] / max(cpu_seconds(a, process) - cpu, 1e-9)
        if name == "through gateway":
            log = sh(a, f"journalctl -q -t haproxy --no-pager -o cat --since @{since}")
            own = sorted(int(t[4]) - int(t[3]) for t in (line.split()[4].split("/") for line in log.splitlines()
                         if " 200 " in line and line.count("/") >= 4) if len(t) == 5 and t[3] != "-1")
            result["own_p50_ms"] = float(own[len(own) // 2]) if own else float("nan")
            result["own_p99_ms"] = float(own[int(len(own) * 0.99)]) if own else float("nan")
            result["own_mean_ms"] = statistics.fmean(own) if own else float("nan")
        runs[name].append(result)
        print(f"{name + ' #' + str(i + 1):<18} {result['rps']:9.0f} {result['p50_ms']:9.2f} "
              f"{result['p99_ms']:9.2f} {result['per_cpu_s']:10.0f}", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    d, g = med["direct"], med["through gateway"]
    print(f"{'median direct':<18} {d['rps']:9.0f} {d['p50_ms']:9.2f} {d['p99_ms']:9.2f} {d['per_cpu_s']:10.0f}")
    print(f"{'median gateway':<18} {g['rps']:9.0f} {g['p50_ms']:9.2f} {g['p99_ms']:9.2f} {g['per_cpu_s']:10.0f}")
    print(f"throughput gateway/direct: {g['rps'] / d['rps']:.2f}; "
          f"latency p50 added: {g['p50_ms'] - d['p50_ms']:.2f} ms")
    print(f"HAProxy's own time per request (%Ta - %Tr, ms): p50 {g['own_p50_ms']:.0f}, p99 {g['own_p99_ms']:.0f}, "
          f"mean {g['own_mean_ms']:.3f}")
    print(f"per CPU-second: HAProxy {g['per_cpu_s']:.0f} requests (TLS, key, body reading, routing); "
          f"nginx {d['per_cpu_s']:.0f} (TLS and the answer)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="direct/gateway pairs, in alternating order")
    parser.add_argument("--part", choices=("both", "overhead", "prefix", "isolated"), default="both")
    parser.add_argument("--seconds", type=int, default=10, help="isolated: the length of each wrk run")
    ns = parser.parse_args()
    ensure_engine()
    tag, _ = ensure_host_image()
    image, _ = ensure_vllm_image()
    models, archive = generate(image), save_archive(image)
    run = uuid.uuid4().hex[:6]
    names = [f"vf-gwbench-{run}-a"] + ([f"vf-gwbench-{run}-b"] if ns.part in ("both", "prefix") else [])
    workdir = Path(tempfile.mkdtemp(prefix="vf-gwbench-"))
    try:
        hosts = {n: host(n, tag, models, archive) for n in names}
        a = names[0]
        if ns.part == "isolated":
            isolated(workdir, a, hosts, archive, ns)
            return
        if ns.part != "prefix":
            t = time.monotonic()
            deploy(workdir, {a: hosts[a]}, a, "prefix", "gateway,serve,smoke", archive)
            print(f"deploy, one replica + gateway: {time.monotonic() - t:.0f} s", flush=True)
            overhead(workdir, a, hosts, ns)
        if ns.part != "overhead":
            prefix_affinity(workdir, a, hosts, archive, ns)
    finally:
        for n in names:
            host_down(n)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
