"""The seed document's InferenceService, written as a spec, renders to an equivalent manifest."""

from __future__ import annotations

from typing import Any

import yaml

from tests.k8s.harness import run_program, unwrap
from tests.k8s.schema import check_inference_service
from tests.k8s.specs import HERE
from vllm_fleet.k8s.render import rendered_manifests
from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import validate_spec

SEED = yaml.safe_load((HERE / "seed_000_inferenceservice.yaml").read_text())
SEED_CONTAINER = SEED["spec"]["predictor"]["containers"][0]

# The seed's fields, as the one spec says them; the bucket credentials are an existing Secret.
SPEC = {"services": [{
    "name": SEED["metadata"]["name"],
    "storage_uri": "s3://rasa-models/finetuned_model",
    "served_model_name": "finetuned-cmd-gen",
    "image": "kserve/vllmserver:latest",
    "gpus": 1,
    "storage": {"credentials": {"s3": {
        "access_key_id": {"k8s_secret": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
        "secret_access_key": {"k8s_secret": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    }}},
}]}

# Flags vLLM would assume anyway: the server binds every interface and uses 90% of GPU memory by default.
# --shutdown-timeout: vLLM aborts requests in flight on SIGTERM by default (0); the project drains them.
VLLM_DEFAULTS_MADE_EXPLICIT = {"--host": "0.0.0.0", "--gpu-memory-utilization": "0.9", "--shutdown-timeout": "30"}


def flag_values(args: list[str]) -> dict[str, str]:
    it = iter(args)
    return {flag: next(it) for flag in it}


def ours() -> dict[str, Any]:
    [isvc] = [m for m in rendered_manifests(validate_spec(SPEC, CLUSTER_TARGET)) if m["kind"] == "InferenceService"]
    return isvc


def test_same_image_command_args_storage_uri_and_gpu_limit() -> None:
    isvc = ours()
    assert isvc["metadata"]["name"] == SEED["metadata"]["name"]
    [c] = isvc["spec"]["predictor"]["containers"]
    assert c["image"] == SEED_CONTAINER["image"]
    assert c["command"] == SEED_CONTAINER["command"]
    seed_flags, our_flags = flag_values(SEED_CONTAINER["args"]), flag_values(c["args"])
    assert {f: our_flags[f] for f in seed_flags} == seed_flags
    assert {f: v for f, v in our_flags.items() if f not in seed_flags} == VLLM_DEFAULTS_MADE_EXPLICIT
    [seed_uri] = [e for e in SEED_CONTAINER["env"] if e["name"] == "STORAGE_URI"]
    assert seed_uri in c["env"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == SEED_CONTAINER["resources"]["limits"]["nvidia.com/gpu"]


def test_the_one_deliberate_difference_is_the_container_name() -> None:
    """KServe injects the storage initializer for STORAGE_URI into the container named kserve-container."""
    [c] = ours()["spec"]["predictor"]["containers"]
    assert SEED_CONTAINER["name"] == "main"
    assert c["name"] == "kserve-container"


def test_both_pass_the_schema_check_and_the_program_registers_the_same() -> None:
    assert check_inference_service(SEED) == []
    assert check_inference_service(ours()) == []
    run = run_program(SPEC)
    [isvc] = [unwrap(r.inputs) for r in run.custom if r.typ.endswith(":InferenceService")]
    assert isvc == ours()
