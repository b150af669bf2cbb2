"""Each service's `gate:`: the benchmark a rollout must pass before it goes past the first updated host.

    gate:
      metric: output_throughput        # or a latency percentile: ttft_p90_ms, e2el_p99_ms, ...
      max_regression_percent: 25       # worse than the running container by more than this: roll back, stop
      workload: random                 # or prefix (shared openings asked again, a multi-turn shape)

The load is vLLM's own serving benchmark with these arguments (vllm_fleet.vm.play.bench renders them); the names of its
metrics and workloads live here, so that a spec is checked before any host is touched. Cross-field rules that need
the service (a gate on a pooling task, a workload longer than the context) are in `gate_rules`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from vllm_fleet.spec.errors import SpecIssue, fail, show_value
from vllm_fleet.spec.model import Strict

if TYPE_CHECKING:
    from vllm_fleet.spec.model import Service

# Latency metrics vLLM's benchmark reports (ms), the percentiles asked of it, and its throughputs.
LATENCIES = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 99)
THROUGHPUTS = ("request_throughput", "output_throughput")
LATENCY_METRICS = tuple(f"{m}_p{p}_ms" for m in LATENCIES for p in PERCENTILES)
GATE_METRICS = (*THROUGHPUTS, *LATENCY_METRICS)
# The workload shapes vllm_fleet.vm.bench.workloads renders (tests hold the two lists together).
WORKLOADS = ("random", "prefix")


def higher_is_better(metric: str) -> bool:
    return metric in THROUGHPUTS


class Gate(Strict):
    """Benchmark a changed service on its first updated host, the running container first and the new one next,
    with the same load; a regression beyond the allowance rolls that host back and stops the rollout."""

    metric: str = Field("output_throughput", description="a throughput (higher is better) or a latency percentile "
                                                        "such as ttft_p90_ms (lower is better)")
    max_regression_percent: float = Field(gt=0, le=1000, description="how much worse the new container may be")
    workload: str = Field("random", description="random, or prefix: shared openings asked again (multi-turn)")
    input_len: int = Field(64, ge=1, le=1_000_000, description="prompt tokens per request")
    output_len: int = Field(32, ge=1, le=1_000_000, description="tokens generated per request")
    prompts: int = Field(32, ge=4, le=100_000, description="requests per run")
    request_rate: float | Literal["inf"] = Field("inf", description="requests per second, or inf: all at once")
    max_concurrency: int | None = Field(8, ge=1, le=100_000, description="requests in flight at most")
    warmup_requests: int = Field(8, ge=0, le=100_000, description="requests sent to each container before the "
                                                                 "measured ones (a fresh one warms its caches)")

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in GATE_METRICS:
            raise fail("is not a metric of vLLM's serving benchmark",
                       f"use one of {', '.join(THROUGHPUTS)} or a latency percentile such as ttft_p90_ms, "
                       "tpot_p50_ms, itl_p99_ms or e2el_p90_ms (p50, p90, p99)")
        return v

    @field_validator("workload")
    @classmethod
    def _workload(cls, v: str) -> str:
        if v not in WORKLOADS:
            raise fail("is not a benchmark workload vllm-fleet knows",
                       f"use one of {', '.join(WORKLOADS)}")
        return v

    @field_validator("request_rate")
    @classmethod
    def _rate(cls, v: float | str) -> float | str:
        if v != "inf" and not (isinstance(v, float | int) and 0 < v < math.inf):
            raise fail("is not a request rate", "give requests per second above 0, or inf to send them all at once")
        return v


def gate_rules(services: Sequence[Service]) -> Iterator[SpecIssue]:
    """A gate only on a generate service (the benchmark drives /v1/completions), with a workload its context
    holds."""
    for i, svc in enumerate(services):
        gate = svc.gate
        if gate is None:
            continue
        if svc.task.value != "generate":
            yield SpecIssue(f"services[{i}].gate", "(set)",
                            f"is set on a '{svc.task.value}' service; vLLM's serving benchmark measures text "
                            "generation (/v1/completions)",
                            "remove the gate, or gate the generate services only")
            continue
        longest = svc.engine.max_model_len
        need = gate.input_len + (max(8, gate.input_len // 4) if gate.workload == "prefix" else 0) + gate.output_len
        if isinstance(longest, int) and need > longest:
            yield SpecIssue(f"services[{i}].gate.input_len", show_value(gate.input_len),
                            f"with output_len {gate.output_len} needs {need} tokens of context, beyond the "
                            f"service's max_model_len {longest}",
                            "shorten input_len or output_len so that the benchmark's requests fit")
