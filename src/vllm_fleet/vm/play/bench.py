"""`vllm-fleet bench`: vLLM's own benchmark (`vllm.benchmarks.serve`, inside the deployed image) against the fleet's
gateway, at one or more request rates, summarised, plotted and compared with a saved baseline.

The load generator is vLLM's; this module only chooses its arguments from a named workload, reads its result files
and compares them. The playbook (playbooks/bench.yml) runs it on a serving host of the model, in a container of the
service's image with the service's weights as tokenizer, the client key in a root-only file (never argv or env).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_fleet.spec.gate import LATENCIES, PERCENTILES, THROUGHPUTS, Gate, higher_is_better
from vllm_fleet.vm.planning.plan import ServicePlan


@dataclass(frozen=True)
class Workload:
    """A named load shape, as vLLM benchmark arguments (the rate and prompt count are added per run)."""

    name: str
    description: str
    args: tuple[str, ...]


def workloads(input_len: int, output_len: int) -> dict[str, Workload]:
    return {
        "random": Workload("random", f"random prompts of ~{input_len} tokens, {output_len} tokens out", (
            "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len",
            str(output_len), "--random-range-ratio", "0.2", "--ignore-eos")),
        "prefix": Workload("prefix", f"multi-turn shape: 8 shared openings of {input_len} tokens, each asked "
                                     f"again with a new {max(8, input_len // 4)}-token turn, {output_len} out", (
            "--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(input_len),
            "--prefix-repetition-suffix-len", str(max(8, input_len // 4)), "--prefix-repetition-num-prefixes", "8",
            "--prefix-repetition-output-len", str(output_len))),
    }


def bench_args(workload: Workload, *, model: str, base_url: str, rate: float, prompts: int,
               concurrency: int | None, label: str) -> list[str]:
    """The arguments of one run of vllm.benchmarks.serve (no key: it reads OPENAI_API_KEY, set from a file)."""
    args = ["--backend", "openai", "--base-url", base_url,
            "--endpoint", "/v1/completions", "--model", model, "--tokenizer", "/mnt/models",
            "--num-prompts", str(prompts), "--request-rate", "inf" if math.isinf(rate) else f"{rate:g}",
            "--percentile-metrics", ",".join(LATENCIES), "--metric-percentiles", ",".join(map(str, PERCENTILES)),
            "--save-result", "--result-dir", "/bench/out", "--result-filename", f"{label}.json", "--disable-tqdm",
            "--seed", "0", *workload.args]
    if concurrency:
        args += ["--max-concurrency", str(concurrency)]
    return args


def gate_args(gate: Gate, *, model: str, base_url: str, label: str) -> list[str]:
    """One run of the service's gate: its workload, rate, prompts and concurrency against `base_url`."""
    rate = math.inf if gate.request_rate == "inf" else float(gate.request_rate)
    return [*bench_args(workloads(gate.input_len, gate.output_len)[gate.workload], model=model, base_url=base_url,
                        rate=rate, prompts=gate.prompts, concurrency=gate.max_concurrency, label=label),
            "--num-warmups", str(gate.warmup_requests)]


def _figure(metric: str, value: float) -> str:
    return f"{value:.1f} tok/s" if metric == "output_throughput" else (
        f"{value:.2f} req/s" if metric == "request_throughput" else f"{value:.1f} ms")


def gate_verdict(gate: Gate, before: Mapping[str, Any], after: Mapping[str, Any], *, service: str,
                 host: str) -> dict[str, Any]:
    """Whether the new container (`after`, vLLM's result JSON) passes the gate against the running one (`before`).

    A new container that fails or drops requests fails the gate; an old one that completed nothing leaves nothing
    to compare with, and the change passes (said in the message)."""
    old, new = summary(before), summary(after)
    load = (f"workload {gate.workload}, {gate.prompts} prompts of {gate.input_len} tokens in and {gate.output_len} "
            f"out, rate {gate.request_rate}, concurrency {gate.max_concurrency or 'unbounded'}")
    where = f"{service} on {host}"
    # What the gate cost: every request both runs sent, their warm-ups included.
    sent = sum(int(run.get("completed") or 0) + int(run.get("failed") or 0) + gate.warmup_requests
               for run in (old, new))
    verdict: dict[str, Any] = {"service": service, "host": host, "metric": gate.metric,
                               "allowed_percent": gate.max_regression_percent, "before": old.get(gate.metric),
                               "after": new.get(gate.metric), "regression_percent": None, "ok": True,
                               "requests": sent}
    failed = int(new.get("failed") or 0) + max(0, gate.prompts - int(new.get("completed") or 0))
    if failed:
        verdict |= {"ok": False, "message": (
            f"{where}: the benchmark gate failed: the new container failed {failed} of {gate.prompts} requests "
            f"({load})")}
        return verdict
    if not old.get("completed") or old.get(gate.metric) in (None, 0) or new.get(gate.metric) is None:
        verdict["message"] = (f"{where}: the benchmark gate has no figure of the running container to compare "
                              f"{gate.metric} with ({load}); the change passes")
        return verdict
    before_v, after_v = float(old[gate.metric] or 0), float(new[gate.metric] or 0)
    worse = before_v - after_v if higher_is_better(gate.metric) else after_v - before_v
    regression = 100.0 * worse / before_v
    ok = regression <= gate.max_regression_percent
    change = f"{abs(regression):.1f}% {'worse' if regression > 0 else 'better'}"
    verdict |= {"regression_percent": regression, "ok": ok, "message": (
        f"{where}: the benchmark gate {'passed' if ok else 'failed'}: {gate.metric} "
        f"{_figure(gate.metric, before_v)} before, {_figure(gate.metric, after_v)} after, {change}; "
        f"{gate.max_regression_percent:g}% worse is allowed ({load})")}
    return verdict


def gated_changes(services: Sequence[ServicePlan], wanted_hashes: Mapping[str, str],
                  running_hashes: Mapping[str, str | None]) -> list[str]:
    """The services with a gate whose running container has another configuration than the wanted one: the
    changes a gate judges. A service with no running container (a first deploy, a stopped one) is not gated."""
    return [s.name for s in services if s.gate and running_hashes.get(s.name)
            and running_hashes[s.name] != wanted_hashes.get(s.name)]


def gate_hosts(batch: Sequence[str], changes: Sequence[Sequence[str]], passed: Sequence[str]) -> dict[str, str]:
    """Which host of the batch benchmarks each gated change: the first one (in play order) it changes on, unless
    the gate already passed on a host of an earlier batch. The other hosts wait for it."""
    chosen: dict[str, str] = {}
    for host, names in zip(batch, changes, strict=True):
        for name in names:
            if name not in passed:
                chosen.setdefault(name, host)
    return chosen


def parse_rates(text: str) -> list[float]:
    """'1,2,4' or 'inf' into request rates; ValueError naming the bad part."""
    rates = []
    for part in text.split(","):
        part = part.strip()
        value = math.inf if part == "inf" else float(part)
        if not value > 0:
            raise ValueError(part)
        rates.append(value)
    if not rates:
        raise ValueError(text)
    return rates


def summary(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures of one run: p50/p90/p99 of each latency (ms), throughputs, completed and failed requests."""
    row: dict[str, float | None] = {}
    for metric in LATENCIES:
        for p in PERCENTILES:
            value = result.get(f"p{p}_{metric}_ms")
            row[f"{metric}_p{p}_ms"] = float(value) if value is not None else None
    for key in (*THROUGHPUTS, "completed", "failed"):
        value = result.get(key)
        row[key] = float(value) if value is not None else None
    rate = result.get("request_rate")
    row["request_rate"] = math.inf if rate in (None, "inf") else float(rate)
    return row


def compare(current: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]
            ) -> list[dict[str, Any]]:
    """Per rate and metric: baseline, current and the change in % (positive: higher now). Rates that only one
    side ran are left out."""
    base = {str(r["request_rate"]): r for r in baseline}
    rows = []
    for run in current:
        old = base.get(str(run["request_rate"]))
        if old is None:
            continue
        for key, value in run.items():
            if key in ("request_rate", "completed", "failed") or value is None or old.get(key) in (None, 0):
                continue
            before = float(old[key])
            rows.append({"request_rate": run["request_rate"], "metric": key, "baseline": before,
                         "current": value, "change_percent": 100.0 * (float(value) - before) / before})
    return rows


def plot(runs: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Latency (TTFT and end-to-end, p50 and p99) against the request rate actually achieved, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(runs, key=lambda r: float(r["request_throughput"] or 0))
    x = [float(r["request_throughput"] or 0) for r in ordered]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for key, label in (("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "TTFT p99"), ("e2el_p50_ms", "end-to-end p50"),
                       ("e2el_p99_ms", "end-to-end p99")):
        ax.plot(x, [r[key] for r in ordered], marker="o", label=label)
    ax.set_xlabel("achieved request rate (req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def baseline_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.json"


def save_baseline(directory: Path, name: str, runs: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = baseline_path(directory, name)
    path.write_text(json.dumps({"meta": dict(meta), "runs": [dict(r) for r in runs]}, indent=2, default=str))
    return path
