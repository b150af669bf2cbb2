"""`vllm-fleet bench` without a fleet: workloads as vLLM benchmark arguments, summaries of its result files,
comparisons with a baseline, the PNG plot, and bad options refused before any host is contacted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_fleet.cli import app
from vllm_fleet.spec.gate import WORKLOADS, Gate
from vllm_fleet.vm.play import bench as b


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


def gate(**fields: object) -> Gate:
    return Gate.model_validate({"max_regression_percent": 25, **fields})


def test_the_spec_knows_exactly_the_workloads_the_benchmark_renders() -> None:
    assert tuple(b.workloads(64, 16)) == WORKLOADS


def test_a_gate_becomes_one_run_of_its_workload_against_one_container() -> None:
    args = b.gate_args(gate(workload="prefix", prompts=12, max_concurrency=3, input_len=40, output_len=8),
                       model="chat", base_url="http://127.0.0.1:8000", label="new")
    joined = " ".join(args)
    assert "--base-url http://127.0.0.1:8000" in joined and "--model chat" in joined
    assert "--num-prompts 12" in joined and "--max-concurrency 3" in joined and "--request-rate inf" in joined
    assert "--prefix-repetition-prefix-len 40" in joined and "--result-filename new.json" in joined
    assert "--num-warmups 8" in joined
    assert "--request-rate 2.5" in " ".join(b.gate_args(gate(request_rate=2.5), model="m", base_url="u", label="x"))


def test_the_gate_fails_a_regression_beyond_the_allowance_with_both_figures() -> None:
    slower = b.gate_verdict(gate(prompts=50), result(math.inf, 1.0), result(math.inf, 1.5), service="chat",
                            host="gpu-1")
    assert not slower["ok"]
    assert slower["regression_percent"] == pytest.approx(100 * (1 - 1 / 1.5))
    assert slower["message"].startswith("chat on gpu-1: the benchmark gate failed: output_throughput 120.0 tok/s "
                                        "before, 80.0 tok/s after, 33.3% worse; 25% worse is allowed")
    within = b.gate_verdict(gate(prompts=50), result(math.inf, 1.0), result(math.inf, 1.2), service="chat",
                            host="gpu-1")
    assert within["ok"] and "passed" in within["message"] and within["regression_percent"] == pytest.approx(16.6667,
                                                                                                         rel=1e-3)
    faster = b.gate_verdict(gate(prompts=50), result(math.inf, 1.0), result(math.inf, 0.5), service="chat",
                            host="gpu-1")
    assert faster["ok"] and "100.0% better" in faster["message"]


def test_a_latency_gate_counts_higher_as_worse() -> None:
    latency = gate(metric="ttft_p90_ms", max_regression_percent=10, prompts=50)
    worse = b.gate_verdict(latency, result(1.0, 1.0), result(1.0, 1.2), service="chat", host="h")
    assert not worse["ok"] and worse["before"] == 100.0 and worse["after"] == pytest.approx(120.0)
    assert "ttft_p90_ms 100.0 ms before, 120.0 ms after, 20.0% worse; 10% worse is allowed" in worse["message"]
    assert b.gate_verdict(latency, result(1.0, 1.0), result(1.0, 0.7), service="chat", host="h")["ok"]


def test_a_new_container_that_drops_requests_fails_and_one_without_a_baseline_passes() -> None:
    dropped = result(math.inf, 1.0) | {"completed": 47, "failed": 3}
    verdict = b.gate_verdict(gate(prompts=50), result(math.inf, 1.0), dropped, service="chat", host="h")
    assert not verdict["ok"] and "failed 6 of 50 requests" in verdict["message"]
    assert verdict["requests"] == (50 + 8) + (47 + 3 + 8)  # what both runs sent, each with its 8 warm-ups
    idle = result(math.inf, 1.0) | {"completed": 0}
    verdict = b.gate_verdict(gate(prompts=50), idle, result(math.inf, 1.0), service="chat", host="h")
    assert verdict["ok"] and "no figure of the running container" in verdict["message"]


def test_the_first_host_of_a_batch_a_gated_service_changes_on_benchmarks_it_unless_it_passed_before() -> None:
    batch = ["a", "b", "c"]
    assert b.gate_hosts(batch, [[], ["chat"], ["chat", "code"]], []) == {"chat": "b", "code": "c"}
    assert b.gate_hosts(batch, [[], ["chat"], ["chat", "code"]], ["chat"]) == {"code": "c"}
    assert b.gate_hosts(batch, [[], [], []], []) == {}


def test_only_a_running_container_of_another_configuration_is_a_gated_change() -> None:
    from vllm_fleet.vm.planning.fleet import plan_for_host

    def service(name: str, port: int, gated: bool) -> dict:
        return {"name": name, "storage_uri": f"file:///m/{name}", "accelerator": "cpu", "gpus": 0, "port": port,
                **({"gate": {"max_regression_percent": 5}} if gated else {})}

    services = plan_for_host({"services": [service("chat", 8000, True), service("new", 8001, True),
                                           service("same", 8002, True), service("plain", 8003, False)]},
                             "10.0.0.1").services
    wanted = {"chat": "h2", "new": "h1", "same": "h1", "plain": "h2"}
    running = {"chat": "h1", "same": "h1", "plain": "h1"}
    assert b.gated_changes(services, wanted, running) == ["chat"]
