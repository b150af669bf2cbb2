"""`vllm-fleet bench` without a fleet: workloads as vLLM benchmark arguments, summaries of its result files,
comparisons with a baseline, the PNG plot, and bad options refused before any host is contacted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_fleet.cli import app
from vllm_fleet.vm import bench as b


def result(rate: float, scale: float) -> dict[str, float]:
    """The keys vllm.benchmarks.serve writes with --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles
    50,90,99."""
    out = {"request_rate": rate, "completed": 50, "failed": 0, "request_throughput": 4.0 / scale,
           "output_throughput": 120.0 / scale}
    for i, metric in enumerate(b.LATENCIES):
        for p in b.PERCENTILES:
            out[f"p{p}_{metric}_ms"] = scale * (10 * (i + 1) + p)
    return out


def test_a_workload_becomes_vllm_benchmark_arguments_without_any_key() -> None:
    args = b.bench_args(b.workloads(128, 32)["prefix"], model="chat", base_url="https://gw:443", rate=math.inf,
                        prompts=40, concurrency=4, label="x")
    joined = " ".join(args)
    assert "--dataset-name prefix_repetition" in joined and "--request-rate inf" in joined
    assert "--max-concurrency 4" in joined and "--percentile-metrics ttft,tpot,itl,e2el" in joined
    assert not any("key" in a.lower() or "authorization" in a.lower() for a in args)
    assert b.parse_rates("1, 2.5,inf") == [1.0, 2.5, math.inf]
    with pytest.raises(ValueError):
        b.parse_rates("1,-2")


def test_summaries_compare_with_a_baseline_in_percent_and_plot_as_a_png(tmp_path: Path) -> None:
    import matplotlib.image

    base = [b.summary(result(2, 1.0)), b.summary(result(math.inf, 1.0))]
    now = [b.summary(result(2, 1.5)), b.summary(result(4, 1.0))]
    rows = b.compare(now, base)
    ttft = next(r for r in rows if r["metric"] == "ttft_p50_ms")
    assert ttft["request_rate"] == 2 and ttft["change_percent"] == pytest.approx(50.0)
    assert {r["request_rate"] for r in rows} == {2}  # rate 4 has no baseline
    png = b.plot(base, tmp_path / "p.png", "title")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape[2] in (3, 4)


def test_bad_bench_options_are_refused_before_any_host(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("vllm_hosts:\n  hosts:\n    h1: {ansible_host: 203.0.113.1}\n  vars:\n    vllm_fleet_spec:\n"
                   "      services: [{name: chat, storage_uri: 'file:///m', accelerator: cpu, gpus: 0}]\n")
    runner = CliRunner()
    for args, path in ((["--workload", "sharegpt"], "--workload"), (["--rates", "1,fast"], "--rates"),
                       ([], "--inventory")):
        res = runner.invoke(app, ["bench", "-i", str(inv), "--json", *args])
        assert res.exit_code == 2, res.output
        assert f'"path": "{path}"' in res.stdout
