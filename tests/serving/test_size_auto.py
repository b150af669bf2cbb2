"""tensor_parallel_size: auto, settled from the host's GPUs and the model's config.json.

The playbook tests run the real tasks file deploy-vllm.yml uses (playbooks/tasks/size-auto.yml) through
ansible-playbook on the controller; config.json is read off disk with slurp as it is read off a GPU host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_fleet.spec import SpecError
from vllm_fleet.vm.planning.fleet import CLI_PLAN_VAR, FleetPlan, plan_for_host
from vllm_fleet.vm.planning.plan import HostPlan

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).parent / "fixtures/model_configs"
A100 = {"count": 8, "memory_mib": 81920}
L4 = {"count": 2, "memory_mib": 23034}


def auto_spec(gpus: int | list[int] = 8, uri: str = "hf://meta-llama/Llama-3.1-70B-Instruct", **extra: object) -> dict:
    return {"services": [{"name": "llama", "storage_uri": uri, "gpus": gpus, "tensor_parallel_size": "auto",
                          **extra}]}


def config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def test_auto_picks_the_smallest_size_that_holds_the_full_context() -> None:
    svc = plan_for_host(auto_spec(), "h", variables={"vllm_fleet_gpus": A100,
                                                      "vllm_fleet_model_configs": {"llama": config("llama-3.1-70b")}}
                        ).services[0]
    # 2 x A100 hold 22784 tokens of a 70B model, 4 hold its 131072.
    assert svc.tensor_parallel_size == 4 and svc.gpu_count == 4 and svc.device_ids == [0, 1, 2, 3]
    args = svc.engine_args
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--max-model-len") + 1] == "131072"


def test_auto_takes_the_first_ids_of_a_device_pool() -> None:
    svc = plan_for_host(auto_spec(gpus=[4, 5, 6, 7], uri="hf://meta-llama/Llama-3.1-8B-Instruct"), "h",
                        variables={"vllm_fleet_gpus": A100,
                                   "vllm_fleet_model_configs": {"llama": config("llama-3.1-8b")}}).services[0]
    assert svc.tensor_parallel_size == 1 and svc.device_ids == [4] and svc.gpu_count == 1
    assert "--tensor-parallel-size" not in svc.engine_args


def test_auto_without_facts_is_left_for_the_serve_stage_unless_asked_to_settle() -> None:
    svc = plan_for_host(auto_spec(), "h", variables={}).services[0]
    assert svc.tensor_parallel_size == "auto" and "--tensor-parallel-size" not in svc.engine_args
    with pytest.raises(SpecError) as err:
        plan_for_host(auto_spec(), "h", variables={}, resolve_auto=True)
    issue = err.value.issues[0]
    assert issue.path == "services[0].tensor_parallel_size" and "vllm_fleet_gpus" in issue.problem


def test_auto_refuses_with_numbers_when_the_pool_is_too_small() -> None:
    with pytest.raises(SpecError) as err:
        plan_for_host(auto_spec(gpus=2), "h",
                      variables={"vllm_fleet_gpus": L4, "vllm_fleet_model_configs": {"llama": config("llama-3.1-70b")}})
    issue = err.value.issues[0]
    assert issue.path == "services[0].tensor_parallel_size" and issue.value == "'auto'"
    assert "on the 2 GPU(s) it may use" in issue.problem and "GiB" in issue.problem


def test_a_pool_too_small_for_the_asked_length_names_the_pool_that_fits() -> None:
    spec = auto_spec(gpus=2, engine={"max_model_len": 131072})
    with pytest.raises(SpecError) as err:
        plan_for_host(spec, "h", variables={"vllm_fleet_gpus": A100,
                                            "vllm_fleet_model_configs": {"llama": config("llama-3.1-70b")}})
    assert err.value.issues[0].fix == "give it a pool of at least 4 GPUs (gpus: 4)"


def run_size_auto(tmp_path: Path, spec: dict, **variables: object) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"vllm_fleet_spec": spec, "out_dir": str(tmp_path), **variables}))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"vllm_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_host": "127.0.0.1", "ansible_python_interpreter": sys.executable}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                           str(Path(__file__).parent / "size-auto.yml"), "-i", str(inventory), "-e", f"@{extra}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def weights_dir(tmp_path: Path, name: str) -> Path:
    model = tmp_path / "models" / "llama" / "rev1"
    model.mkdir(parents=True)
    shutil.copy(CONFIGS / f"{name}.json", model / "config.json")
    return model


def test_the_serve_stage_sizes_auto_from_the_weights_on_the_host(tmp_path: Path) -> None:
    model = weights_dir(tmp_path, "llama-3.1-70b")
    proc = run_size_auto(tmp_path, auto_spec(), vllm_fleet_gpus=A100,
                         model_weights_paths={"llama": {"path": str(model), "revision": "rev1"}})
    assert proc.returncode == 0, proc.stdout[-3000:]
    before = HostPlan.model_validate_json((tmp_path / "before.json").read_text()).services[0]
    after = HostPlan.model_validate_json((tmp_path / "after.json").read_text()).services[0]
    assert before.tensor_parallel_size == "auto"
    assert after.tensor_parallel_size == 4 and after.gpu_count == 4
    assert after.engine_args[after.engine_args.index("--tensor-parallel-size") + 1] == "4"


def test_the_serve_stage_refuses_a_model_that_does_not_fit_before_any_container(tmp_path: Path) -> None:
    model = weights_dir(tmp_path, "llama-3.1-70b")
    proc = run_size_auto(tmp_path, auto_spec(gpus=2), vllm_fleet_gpus=L4,
                         model_weights_paths={"llama": {"path": str(model), "revision": "rev1"}})
    assert proc.returncode != 0
    assert "services[0].tensor_parallel_size" in proc.stdout and "does not fit" in proc.stdout
    assert not (tmp_path / "after.json").exists()


def test_a_plan_the_cli_computed_is_taken_as_it_is(tmp_path: Path) -> None:
    """vllm-fleet plans the fleet once and hands the plan to the playbook (vllm_fleet_cli_plan)."""
    precomputed = plan_for_host({"services": [{"name": "from-the-cli", "storage_uri": "file:///m/a",
                                               "accelerator": "cpu", "gpus": 0}]}, "10.9.9.9")
    fleet = FleetPlan(hosts={"localhost": precomputed}, models=["from-the-cli"])
    spec = {"services": [{"name": "from-the-spec", "storage_uri": "file:///m/b", "accelerator": "cpu", "gpus": 0}]}
    proc = run_size_auto(tmp_path, spec, **{CLI_PLAN_VAR: fleet.model_dump(mode="json")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert HostPlan.model_validate_json((tmp_path / "before.json").read_text()) == precomputed
    proc = run_size_auto(tmp_path, spec)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert HostPlan.model_validate_json((tmp_path / "before.json").read_text()).services[0].name == "from-the-spec"
