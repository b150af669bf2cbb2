"""Boundaries of the cluster rules, and the shared spec wiring them in for Target.K8S only."""

from __future__ import annotations

import pytest

from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import SpecError, validate_spec
from vllm_fleet.units import k8s_size
from vllm_fleet.vm.planning.rules import VM_TARGET


def spec(name: str, **kubernetes: object) -> dict[str, object]:
    return {"services": [{"name": name, "storage_uri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
                          "kubernetes": kubernetes}]}


@pytest.mark.parametrize(("mode", "longest"), [("Standard", 53), ("RawDeployment", 53), ("Knative", 47),
                                               ("Serverless", 47)])
def test_name_limit_follows_the_names_kserve_derives(mode: str, longest: int) -> None:
    validate_spec(spec("a" * longest, deployment_mode=mode), CLUSTER_TARGET)
    with pytest.raises(SpecError) as err:
        validate_spec(spec("a" * (longest + 1), deployment_mode=mode), CLUSTER_TARGET)
    assert [i.path for i in err.value.issues] == ["services[0].name"]
    assert f"at most {longest}" in err.value.issues[0].problem


def test_the_kubernetes_block_is_not_checked_for_vms() -> None:
    validate_spec(spec("chat", min_replicas=-1), VM_TARGET)
    with pytest.raises(SpecError):
        validate_spec(spec("chat", min_replicas=-1), CLUSTER_TARGET)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec(spec("chat", min_replicas=-1, max_replicas=0, scale_target=3), CLUSTER_TARGET)
    assert sorted(i.path for i in err.value.issues) == [
        "services[0].kubernetes.max_replicas", "services[0].kubernetes.min_replicas",
        "services[0].kubernetes.scale_target"]


@pytest.mark.parametrize(("size", "quantity"), [("16g", "16Gi"), ("512m", "512Mi"), ("1Gi", "1Gi"), ("2GB", "2Gi"),
                                                ("64k", "64Ki"), ("1024", "1024")])
def test_spec_sizes_become_kubernetes_quantities(size: str, quantity: str) -> None:
    assert k8s_size(size) == quantity
