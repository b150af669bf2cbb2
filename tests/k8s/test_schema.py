"""Every InferenceService the program creates passes a strict check against KServe's own models."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.k8s.schema import check, check_inference_service
from tests.k8s.specs import GOOD, load
from vllm_fleet.k8s.render import rendered_manifests
from vllm_fleet.k8s.validation import CLUSTER_TARGET, cluster_settings
from vllm_fleet.spec import validate_spec

CORE_MODELS = {"Namespace": "V1Namespace", "Secret": "V1Secret", "ServiceAccount": "V1ServiceAccount",
               "PersistentVolumeClaim": "V1PersistentVolumeClaim", "Ingress": "V1Ingress",
               "NetworkPolicy": "V1NetworkPolicy"}


def manifests(path) -> list[dict[str, Any]]:
    return rendered_manifests(validate_spec(load(path), CLUSTER_TARGET))


def isvcs(path) -> list[dict[str, Any]]:
    return [m for m in manifests(path) if m["kind"] == "InferenceService"]


def test_the_specs_cover_every_case_the_issue_names() -> None:
    seen: set[str] = set()
    for path in GOOD:
        for svc in validate_spec(load(path), CLUSTER_TARGET).services:
            s = cluster_settings(svc)
            seen |= {svc.uri.scheme, svc.task.value, s.mode, "standard" if s.is_standard else "knative"}
            if svc.tensor_parallel_size > 1:
                seen.add("multi-gpu-tp")
    assert {"s3", "gs", "hf", "pvc", "ms", "https", "embed", "score", "generate", "container", "runtime",
            "standard", "knative", "multi-gpu-tp"} <= seen


@pytest.mark.parametrize("spec", GOOD, ids=[p.stem for p in GOOD])
def test_every_inference_service_matches_the_kserve_models(spec) -> None:
    found = isvcs(spec)
    assert found
    for isvc in found:
        assert check_inference_service(isvc) == []


@pytest.mark.parametrize("spec", GOOD, ids=[p.stem for p in GOOD])
def test_every_other_object_matches_the_kubernetes_models(spec) -> None:
    for m in manifests(spec):
        # The gateway's Envoy AI Gateway and Envoy Gateway objects: test_gateway_manifests.py, against their schemas.
        if m["kind"] != "InferenceService" and m["apiVersion"] in ("v1", "networking.k8s.io/v1"):
            assert check(m, CORE_MODELS[m["kind"]]) == [], m["kind"]


def planted(isvc: dict[str, Any], where: str) -> dict[str, Any]:
    bad = copy.deepcopy(isvc)
    predictor = bad["spec"]["predictor"]
    if where == "top":
        bad["spec"]["predicter"] = {}
    elif where == "predictor":
        predictor["minReplica"] = 1
    elif where == "container":
        predictor["containers"][0]["imagePullPolicyy"] = "Always"
    elif where == "probe":
        predictor["containers"][0]["startupProbe"]["httpGet"]["paths"] = "/health"
    elif where == "volume":
        predictor["volumes"][0]["emptyDir"]["sizelimit"] = "1Gi"
    elif where == "metadata":
        bad["metadata"]["annotation"] = {}
    return bad


@pytest.mark.parametrize("where", ["top", "predictor", "container", "probe", "volume", "metadata"])
def test_a_planted_unknown_field_is_caught_with_its_path(where) -> None:
    isvc = isvcs(GOOD[0])[0]
    problems = check_inference_service(planted(isvc, where))
    assert len(problems) == 1
    assert "unknown field" in problems[0]
    key = {"top": "spec.predicter", "predictor": "spec.predictor.minReplica",
           "container": "spec.predictor.containers[0].imagePullPolicyy",
           "probe": "spec.predictor.containers[0].startupProbe.httpGet.paths",
           "volume": "spec.predictor.volumes[0].emptyDir.sizelimit", "metadata": "metadata.annotation"}[where]
    assert problems[0].startswith(key + ":")


def test_a_wrong_type_is_caught() -> None:
    isvc = copy.deepcopy(isvcs(GOOD[0])[0])
    isvc["spec"]["predictor"]["minReplicas"] = "1"
    isvc["spec"]["predictor"]["containers"][0]["args"] = "--model /mnt/models"
    problems = check_inference_service(isvc)
    assert any(p.startswith("spec.predictor.minReplicas: expected int") for p in problems)
    assert any(p.startswith("spec.predictor.containers[0].args: expected a list") for p in problems)


def test_the_sdk_alone_would_not_catch_it() -> None:
    """Why the strict walk exists: the SDK's deserialiser drops unknown keys without a word."""
    from kserve.api_client import ApiClient

    fmt = {"name": "huggingface", "verison": "1"}
    obj = ApiClient()._ApiClient__deserialize(fmt, "V1beta1ModelFormat")
    assert ApiClient().sanitize_for_serialization(obj) == {"name": "huggingface"}
    assert check(fmt, "V1beta1ModelFormat") == [".verison: unknown field of V1beta1ModelFormat"]


def test_adapters_come_through_the_storage_initializer_and_vllm_starts_with_them() -> None:
    import json

    path = next(p for p in GOOD if p.stem == "hf-lora-adapters")
    (isvc,) = isvcs(path)
    predictor = isvc["spec"]["predictor"]
    assert predictor["storageUris"] == [
        {"uri": "hf://Qwen/Qwen2.5-7B-Instruct:a09a35458c702b33eeacc393d103063234e8bc28", "mountPath": "/mnt/models"},
        {"uri": "hf://acme/qwen-support-lora:5b1f0d3c2a4e6f8091a2b3c4d5e6f708192a3b4c",
         "mountPath": "/mnt/adapters/support-tone"},
        {"uri": "pvc://lora-adapters/sql", "mountPath": "/mnt/adapters/support-sql"},
    ]
    (container,) = predictor["containers"]
    # storageUri and STORAGE_URI are KServe's other way to name a model: never beside storageUris.
    assert "STORAGE_URI" not in {e["name"] for e in container["env"]} and "model" not in predictor
    args = container["args"]
    assert args[args.index("--max-loras") + 1] == "4" and args[args.index("--max-lora-rank") + 1] == "32"
    modules = [json.loads(a) for a in args[args.index("--lora-modules") + 1:]]
    assert modules == [
        {"name": "support-tone", "path": "/mnt/adapters/support-tone", "base_model_name": "support-chat"},
        {"name": "support-sql", "path": "/mnt/adapters/support-sql", "base_model_name": "support-chat"},
    ]
    assert check_inference_service(isvc) == []
