"""Bad inputs fail in the controller-side plan step, before any host is touched.

One ansible-playbook run of playbooks/deploy-vllm.yml with one inventory host per bad input. The fleet is planned
once, so the plan step refuses the whole fleet with one message that names every host and its problems. The hosts
do not exist: had any task reached one, it would be reported unreachable instead of failing the plan task.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.worlds import SANDBOX_CONNECTION
from vllm_fleet.vm.running.runner import run_playbook

pytestmark = pytest.mark.world  # runs ansible-playbook (no Docker needed, but it is a real playbook run)

CONFIGS = Path(__file__).parent / "fixtures" / "model_configs"
PLAN_TASK = "Validate every host's vllm_fleet_spec and plan the hosts, the gateway and the monitoring, once"

GOOD = {
    "name": "chat", "storage_uri": "hf://Qwen/Qwen2.5-7B-Instruct", "served_model_name": "qwen",
    "gpus": [0], "port": 8000, "api_key": {"env": "BAD_INPUT_KEY"},
}


def svc(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    engine = changes.pop("engine", None)
    out.update(changes)
    if engine is not None:
        out["engine"] = engine
    return out


def two(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    return [first, second]


GPUS_4xA100 = {"count": 4, "memory_mib": 81920}
GPUS_1xL4 = {"count": 1, "memory_mib": 23034}
GPUS_1xT4 = {"count": 1, "memory_mib": 15360, "compute_capability": "7.5", "mig_gpus": []}
GPUS_4xA100_MIG1 = {"count": 4, "memory_mib": 81920, "compute_capability": "8.0", "mig_gpus": [1]}
# (id, services, extra host vars, text the failure must contain)
CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], str]] = [
    ("typo-flag", [svc(engine={"extra_args": ["--max-num-seq", "8"]})], {}, "did you mean --max-num-seqs"),
    ("unknown-flag", [svc(engine={"extra_args": ["--turbo-mode"]})], {}, "is not a flag of vLLM 0.32.0"),
    ("switch-with-value", [svc(engine={"extra_args": ["--enable-chunked-prefill=yes"]})], {},
     "is a switch and takes no value"),
    ("value-without-flag", [svc(engine={"extra_args": ["8192"]})], {}, "is a value with no flag before it"),
    ("flag-missing-value", [svc(engine={"extra_args": ["--max-num-batched-tokens"]})], {}, "needs a value"),
    ("bad-choice", [svc(engine={"extra_args": ["--kv-cache-dtype", "int3"]})], {}, "does not accept 'int3'"),
    ("managed-flag", [svc(engine={"extra_args": ["--port", "9000"]})], {}, "which the spec renders itself"),
    ("api-key-in-args", [svc(engine={"extra_args": ["--api-key=abc"]})], {}, "give the key by reference"),
    ("gpu-id-out-of-range", [svc(gpus=[4])], {"vllm_fleet_gpus": GPUS_4xA100}, "GPU 4 does not exist"),
    ("too-many-gpus", [svc(gpus=8, tensor_parallel_size=8)], {"vllm_fleet_gpus": GPUS_4xA100},
     "asks for 8 GPU(s) but the host has 4"),
    ("gpus-over-host-total", two(svc(gpus=3, tensor_parallel_size=3), svc(name="b", port=8001, gpus=2,
                                                                           tensor_parallel_size=2)),
     {"vllm_fleet_gpus": GPUS_4xA100}, "ask for 5 GPUs in all"),
    ("gpu-shared", two(svc(gpus=[0]), svc(name="b", port=8001, gpus=[0])), {}, "GPU 0 is already given"),
    ("port-clash", two(svc(), svc(name="b", gpus=[1])), {}, "is already used by services[0]"),
    ("model-too-large", [svc(storage_uri="hf://meta-llama/Llama-3.1-70B-Instruct")],
     {"vllm_fleet_gpus": GPUS_4xA100, "vllm_fleet_model_configs": {"chat": str(CONFIGS / "llama-3.1-70b.json")}},
     "it fits at tensor_parallel_size 4"),
    ("context-beyond-kv-cache", [svc(storage_uri="hf://meta-llama/Llama-3.1-8B-Instruct",
                                     engine={"max_model_len": 131072})],
     {"vllm_fleet_gpus": GPUS_1xL4, "vllm_fleet_model_configs": {"chat": str(CONFIGS / "llama-3.1-8b.json")}},
     "for 131072 tokens"),
    ("context-beyond-model", [svc(engine={"max_model_len": 65536})],
     {"vllm_fleet_gpus": GPUS_4xA100, "vllm_fleet_model_configs": {"chat": str(CONFIGS / "qwen2.5-7b-instruct.json")}},
     "exceeds the model's max_position_embeddings 32768"),
    ("tp-not-dividing-heads", [svc(gpus=[0, 1, 2, 3, 4, 5, 6, 7], tensor_parallel_size=8)],
     {"vllm_fleet_gpus": {"count": 8, "memory_mib": 81920},
      "vllm_fleet_model_configs": {"chat": str(CONFIGS / "qwen2.5-7b-instruct.json")}}, "does not divide"),
    ("bf16-on-turing", [svc(engine={"dtype": "bfloat16"})], {"vllm_fleet_gpus": GPUS_1xT4},
     "GPUs of compute capability 7.5 cannot run"),
    ("auto-dtype-bf16-model-on-turing", [svc(storage_uri="hf://meta-llama/Llama-3.1-8B-Instruct",
                                             engine={"max_model_len": 4096})],
     {"vllm_fleet_gpus": GPUS_1xT4, "vllm_fleet_model_configs": {"chat": str(CONFIGS / "llama-3.1-8b.json")}},
     "config.json asks for bfloat16"),
    ("gpu-in-mig-mode", [svc(gpus=[1])], {"vllm_fleet_gpus": GPUS_4xA100_MIG1}, "are in MIG mode"),
    ("count-beyond-whole-gpus", [svc(gpus=4, tensor_parallel_size=4)], {"vllm_fleet_gpus": GPUS_4xA100_MIG1},
     "only 3 of the host's GPUs are whole"),
    ("missing-secret", [svc(api_key={"env": "BAD_INPUT_UNSET_KEY"})], {}, "BAD_INPUT_UNSET_KEY"),
    ("literal-secret", [svc(api_key="sk-live-abcdef0123456789")], {}, "secrets are given by reference only"),
    ("shm-too-small", [svc(shm_size="64m")], {}, "below the 160 MiB"),
    ("tp-times-pp-mismatch", [svc(gpus=[0, 1], tensor_parallel_size=1)], {}, "= 1, but 2 GPU(s) are given"),
    ("cpu-with-gpus", [svc(accelerator="cpu", gpus=1)], {}, "asks for GPUs on accelerator cpu"),
    ("privileged-port", [svc(port=80)], {}, "outside the unprivileged port range"),
    ("bad-uri-scheme", [svc(storage_uri="ftp://models.lan/qwen")], {}, "ftp"),
    ("bad-service-name", [svc(name="Qwen_Chat")], {}, "is not a DNS-1123 label"),
    ("gpu-utilization-over-one", [svc(engine={"gpu_memory_utilization": 1.5})], {}, "fraction of GPU memory"),
    ("tools-on-embed", [svc(task="embed", engine={"tool_call_parser": "hermes"})], {}, "never generates text"),
]


def test_there_are_at_least_twenty_bad_inputs() -> None:
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


def test_every_bad_input_fails_in_the_plan_step(world: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD_INPUT_KEY", "bad-input-key-123")
    monkeypatch.delenv("BAD_INPUT_UNSET_KEY", raising=False)
    hosts = {
        f"vf-bad-{case_id}": {"ansible_connection": SANDBOX_CONNECTION,
                              "vllm_fleet_spec": {"services": services}, **extra}
        for case_id, services, extra, _ in CASES
    }
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"vllm_hosts": {"hosts": hosts}}))
    result = run_playbook("deploy-vllm.yml", inv)
    assert not result.ok
    assert not [h for h, r in result.hosts.items() if r.unreachable or r.changed or r.ok], "a task reached a host"
    errors = {r.last_error for r in result.hosts.values() if r.failed}
    assert len(errors) == 1, errors
    error = errors.pop()
    assert error.startswith(PLAN_TASK), f"failed elsewhere: {error}"
    assert "bad-input-key-123" not in error
    # One section per host: "vllm_fleet_spec of host H: N problem(s) found; nothing was changed:" and its issues.
    sections = dict(re.findall(r"vllm_fleet_spec of host (vf-bad-[\w-]+): (.*?)(?=vllm_fleet_spec of host |\Z)",
                               error, re.S))
    assert sorted(sections) == sorted(f"vf-bad-{case_id}" for case_id, *_ in CASES)
    for case_id, _, _, expected in CASES:
        assert expected in sections[f"vf-bad-{case_id}"], f"{case_id}: {sections[f'vf-bad-{case_id}']}"
