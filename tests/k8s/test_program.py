"""The Pulumi program under mocks: the inputs of every resource it registers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.harness import FAKE_SECRETS, Run, run_program, unwrap
from tests.k8s.specs import GOOD, HERE, load
from vllm_fleet.k8s.component import COMPONENT_TYPE

SPECS = {p.stem: p for p in GOOD}


@pytest.fixture(scope="module")
def s3_run() -> Run:
    return run_program(load(SPECS["s3-tp4-standard"]))


@pytest.fixture(scope="module")
def hf_run() -> Run:
    return run_program(load(SPECS["hf-container-cache-ingress"]))


def by_name(run: Run) -> dict[str, dict[str, Any]]:
    return {r.name: unwrap(r.inputs) for r in run.custom}


def test_s3_registers_exactly_these_resources(s3_run: Run) -> None:
    assert s3_run.error is None
    # Registration is asynchronous: the order between resources is not fixed, the set is.
    assert sorted((r.typ, r.name) for r in s3_run.mocks.resources) == sorted([
        ("kubernetes:core/v1:Namespace", "namespace-llm"),
        (COMPONENT_TYPE, "llama-70b"),
        ("kubernetes:core/v1:Secret", "secret-llm-llama-70b-s3"),
        ("kubernetes:core/v1:Secret", "secret-llm-llama-70b-api-key"),
        ("kubernetes:core/v1:ServiceAccount", "serviceaccount-llm-llama-70b-storage"),
        ("kubernetes:serving.kserve.io/v1beta1:InferenceService", "inferenceservice-llm-llama-70b"),
    ])


def test_namespace_and_children_are_wired(s3_run: Run) -> None:
    req = s3_run.monitor.requests
    component_urn = "urn:pulumi:test::vllm-fleet::pulumi:pulumi:Stack$vllmfleet:k8s:InferenceService::llama-70b"
    for name in ("secret-llm-llama-70b-s3", "secret-llm-llama-70b-api-key",
                 "serviceaccount-llm-llama-70b-storage", "inferenceservice-llm-llama-70b"):
        assert req[name]["parent"] == component_urn, name
        assert any(d.endswith("::namespace-llm") for d in req[name]["dependencies"]), name
    assert req["namespace-llm"]["parent"].endswith("pulumi:pulumi:Stack::vllm-fleet-test")
    # external_url is None here, and Pulumi drops None from registered outputs.
    assert s3_run.monitor.registered_outputs[component_urn] == [
        "internal_url", "openai_base_url", "served_model_name"]
    ns = by_name(s3_run)["namespace-llm"]
    assert ns == {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "llm", "labels": {"app.kubernetes.io/managed-by": "vllm-fleet"}}}


def test_s3_secret_and_service_account(s3_run: Run) -> None:
    res = by_name(s3_run)
    secret = res["secret-llm-llama-70b-s3"]
    assert secret["type"] == "Opaque"
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": FAKE_SECRETS["s3AccessKeyId"],
                                    "AWS_SECRET_ACCESS_KEY": FAKE_SECRETS["s3SecretAccessKey"]}
    s3_annotations = {"serving.kserve.io/s3-endpoint": "minio.minio.svc:9000",
                      "serving.kserve.io/s3-usehttps": "0", "serving.kserve.io/s3-verifyssl": "0",
                      "serving.kserve.io/s3-region": "us-east-1"}
    assert secret["metadata"]["annotations"] == s3_annotations
    assert secret["metadata"]["namespace"] == "llm"
    sa = res["serviceaccount-llm-llama-70b-storage"]
    assert sa["secrets"] == [{"name": "llama-70b-s3"}]
    assert sa["metadata"]["annotations"] == s3_annotations
    assert res["secret-llm-llama-70b-api-key"]["stringData"] == {"api-key": FAKE_SECRETS["vllmApiKey"]}


def test_s3_inference_service(s3_run: Run) -> None:
    isvc = by_name(s3_run)["inferenceservice-llm-llama-70b"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                               "serving.kserve.io/autoscalerClass": "hpa"}
    p = isvc["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"], p["scaleMetric"], p["scaleTarget"]) == (1, 3, "cpu", 75)
    assert p["serviceAccountName"] == "llama-70b-storage"
    assert p["runtimeClassName"] == "nvidia"
    term = p["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["3"]
    assert p["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}]
    [c] = p["containers"]
    assert c["name"] == "kserve-container"
    assert c["image"] == "vllm/vllm-openai:v0.32.0"
    assert c["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert c["args"] == ["--model", "/mnt/models", "--served-model-name", "llama-70b", "--host", "0.0.0.0",
                         "--port", "8000", "--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.9",
                         "--shutdown-timeout", "30"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8000, "protocol": "TCP"}]
    assert c["env"] == [
        {"name": "STORAGE_URI", "value": "s3://models/llama-3.1-70b-instruct"},
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llama-70b-api-key", "key": "api-key"}}},
    ]
    amounts = {"cpu": "32", "memory": "320Gi", "nvidia.com/gpu": "4"}
    assert c["resources"] == {"requests": amounts, "limits": amounts}
    assert c["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert c["startupProbe"] == {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 15,
                                 "timeoutSeconds": 5, "failureThreshold": 240}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8000}


def test_hf_with_existing_secrets_cache_and_ingress(hf_run: Run) -> None:
    res = by_name(hf_run)
    assert sorted(res) == ["inferenceservice-llm-qwen-chat", "ingress-llm-qwen-chat",
                           "serviceaccount-llm-qwen-chat-storage"]
    assert res["serviceaccount-llm-qwen-chat-storage"]["secrets"] == [{"name": "hf-credentials"}]
    assert "annotations" not in res["serviceaccount-llm-qwen-chat-storage"]["metadata"]
    isvc = res["inferenceservice-llm-qwen-chat"]
    assert isvc["metadata"]["labels"]["team"] == "ml"
    assert isvc["metadata"]["annotations"]["example.com/owner"] == "ml-platform"
    p = isvc["spec"]["predictor"]
    assert p["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert p["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 300}]
    assert p["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert p["volumes"][1] == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "shared-hf-cache"}}
    [c] = p["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env == {
        "STORAGE_URI": "hf://Qwen/Qwen2.5-7B-Instruct:main",
        "VLLM_API_KEY": {"secretKeyRef": {"name": "vllm-api-keys", "key": "qwen"}},
        "HF_TOKEN": {"secretKeyRef": {"name": "hf-credentials", "key": "HF_TOKEN"}},
        "HF_ENDPOINT": "https://hf-mirror.com",
        "HF_HOME": "/root/.cache/huggingface",
        "VLLM_LOGGING_LEVEL": "INFO",
    }
    assert "--enable-auto-tool-choice" in c["args"] and "--enable-prefix-caching" in c["args"]
    assert c["volumeMounts"][1] == {"name": "model-cache", "mountPath": "/root/.cache"}
    ing = res["ingress-llm-qwen-chat"]
    assert ing["spec"] == {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["qwen.example.com"], "secretName": "qwen-tls"}],
        "rules": [{"host": "qwen.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "qwen-chat-predictor", "port": {"number": 80}}}}]}}],
    }


def test_outputs_name_internal_and_external_urls(s3_run: Run, hf_run: Run) -> None:
    assert s3_run.outputs["llama-70b.internal_url"] == "http://llama-70b-predictor.llm.svc.cluster.local"
    assert s3_run.outputs["llama-70b.openai_base_url"] == "http://llama-70b-predictor.llm.svc.cluster.local/v1"
    assert s3_run.outputs["llama-70b.external_url"] is None
    assert s3_run.outputs["llama-70b.served_model_name"] == "llama-70b"
    assert hf_run.outputs["qwen-chat.external_url"] == "https://qwen.example.com"


def test_knative_gcs_scale_to_zero() -> None:
    run = run_program(load(SPECS["gcs-knative"]))
    res = by_name(run)
    assert res["secret-serving-mistral-gcs"]["stringData"] == {
        "gcloud-application-credentials.json": FAKE_SECRETS["gcsCredentials"]}
    assert res["serviceaccount-serving-mistral-storage"]["secrets"] == [{"name": "mistral-gcs"}]
    isvc = res["inferenceservice-serving-mistral"]
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    p = isvc["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"], p["scaleMetric"], p["scaleTarget"]) == (0, 2, "concurrency", 4)
    assert run.outputs["mistral.internal_url"] == "http://mistral.serving.svc.cluster.local"


def test_runtime_mode_uses_model_format_and_storage_uri() -> None:
    run = run_program(load(SPECS["runtime-rerank"]))
    isvc = by_name(run)["inferenceservice-default-bge-rerank"]
    p = isvc["spec"]["predictor"]
    assert "containers" not in p
    m = p["model"]
    assert m["modelFormat"] == {"name": "huggingface"}
    assert m["runtime"] == "kserve-huggingfaceserver"
    assert m["storageUri"] == "hf://BAAI/bge-reranker-v2-m3"
    assert m["args"] == ["--model_name=bge-rerank", "--runner", "pooling", "--convert", "classify",
                         "--gpu-memory-utilization", "0.9", "--shutdown-timeout", "30"]
    assert not any(e["name"] == "STORAGE_URI" for e in m["env"])
    assert m["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_pvc_cache_claim_is_created_and_pvc_uri_passed_through() -> None:
    run = run_program(load(SPECS["pvc-embed"]))
    res = by_name(run)
    assert res["persistentvolumeclaim-llm-bge-embed-model-cache"]["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "fast-rwo"}
    [c] = res["inferenceservice-llm-bge-embed"]["spec"]["predictor"]["containers"]
    assert c["env"][0] == {"name": "STORAGE_URI", "value": "pvc://model-store/bge-m3"}
    assert c["args"][-8:] == ["--runner", "pooling", "--convert", "embed", "--gpu-memory-utilization", "0.9",
                              "--shutdown-timeout", "30"]
    assert {"name": "model-cache", "mountPath": "/cache"} in c["volumeMounts"]


def test_cpu_service_asks_for_no_gpu() -> None:
    run = run_program(load(SPECS["cpu-https"]))
    res = by_name(run)
    [c] = res["inferenceservice-default-tiny-cpu"]["spec"]["predictor"]["containers"]
    assert c["resources"]["limits"] == {"cpu": "8", "memory": "16Gi"}
    assert "serviceaccount-default-tiny-cpu-storage" not in res
    assert res["serviceaccount-default-tiny-gpu-storage"]["secrets"] == [{"name": "s3-creds"}]


def test_pulumi_main_runs_the_same_program() -> None:
    """pulumi/__main__.py, executed as the Pulumi CLI would, registers the example stack."""
    import runpy

    import pulumi

    from tests.k8s.harness import RecordingMocks, RecordingMonitor
    from tests.k8s.specs import EXAMPLE_STACK

    spec = load(EXAMPLE_STACK)["config"]["vllm-fleet:spec"]
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="vllm-fleet", stack="test", preview=False,
                             monitor=RecordingMonitor(mocks))
    import json

    pulumi.runtime.set_all_config({"vllm-fleet:spec": json.dumps(spec),
                                   **{f"vllm-fleet:{k}": v for k, v in FAKE_SECRETS.items()}},
                                  secret_keys=[f"vllm-fleet:{k}" for k in FAKE_SECRETS])

    @pulumi.runtime.test
    def body() -> None:
        runpy.run_path(str(HERE.parents[1] / "pulumi" / "__main__.py"))

    body()
    kinds = sorted(r.typ.rsplit(":", 1)[1] for r in mocks.resources if r.typ.startswith("kubernetes:"))
    assert kinds == ["InferenceService", "InferenceService", "Ingress", "Namespace", "PersistentVolumeClaim",
                     "Secret", "Secret", "Secret", "ServiceAccount", "ServiceAccount"]
    assert sorted(r.name for r in mocks.resources if r.typ == COMPONENT_TYPE) == ["llama-70b", "qwen-chat"]
