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

# Latency metrics vLLM's benchmark reports (ms) and the percentiles asked of it.
LATENCIES = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 99)
THROUGHPUTS = ("request_throughput", "output_throughput")


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
