"""The shared spec: what it accepts, how it normalises, and the arguments it renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_fleet.cli import app
from vllm_fleet.engine_args import render_engine_args
from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import SpecError, parse_storage_uri, validate_spec
from vllm_fleet.spec.uri import UriError
from vllm_fleet.vm.planning.rules import VM_TARGET

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = sorted(p for p in (REPO / "inventories").iterdir() if p.is_dir())


def one(**fields: object) -> dict:
    return {"services": [{"name": "chat", "storage_uri": "hf://Qwen/Qwen2.5-7B-Instruct", **fields}]}


@pytest.mark.parametrize("inventory", INVENTORIES, ids=[p.name for p in INVENTORIES])
def test_example_inventories_validate(inventory: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "-i", str(inventory), "--json"])
    assert result.exit_code == 0, result.output
    assert '"ok": true' in result.stdout


@pytest.mark.parametrize(
    ("raw", "scheme", "authority", "path", "revision", "kserve"),
    [
        ("hf://Qwen/Qwen2.5-7B-Instruct", "hf", "Qwen", "Qwen2.5-7B-Instruct", None, "hf://Qwen/Qwen2.5-7B-Instruct"),
        ("hf://meta-llama/Llama-3.1-8B:abc123", "hf", "meta-llama", "Llama-3.1-8B", "abc123",
         "hf://meta-llama/Llama-3.1-8B:abc123"),
        ("ms://qwen/Qwen2.5-72B-Instruct-GPTQ-Int8", "ms", "qwen", "Qwen2.5-72B-Instruct-GPTQ-Int8", None,
         "modelscope://qwen/Qwen2.5-72B-Instruct-GPTQ-Int8"),
        ("modelscope://qwen/Qwen2.5-7B:v1", "ms", "qwen", "Qwen2.5-7B", "v1", "modelscope://qwen/Qwen2.5-7B:v1"),
        ("s3://models/finetuned/v3", "s3", "models", "finetuned/v3", None, "s3://models/finetuned/v3"),
        ("gs://bucket-1/llm", "gs", "bucket-1", "llm", None, "gs://bucket-1/llm"),
        ("https://mirror.lan/m/qwen.tar.gz", "https", "mirror.lan", "/m/qwen.tar.gz", None,
         "https://mirror.lan/m/qwen.tar.gz"),
        ("file:///data/models/qwen/", "file", "", "/data/models/qwen", None, "file:///data/models/qwen/"),
        ("pvc://model-cache/qwen", "pvc", "model-cache", "qwen", None, "pvc://model-cache/qwen"),
    ],
)
def test_uri_parsing_matches_kserve(raw, scheme, authority, path, revision, kserve) -> None:
    uri = parse_storage_uri(raw)
    assert (uri.scheme, uri.authority, uri.path, uri.revision) == (scheme, authority, path, revision)
    assert uri.kserve_uri() == kserve


def test_credentials_in_a_uri_are_refused_without_being_echoed() -> None:
    with pytest.raises(UriError, match="credentials in the URL"):
        parse_storage_uri("https://user:s3cret@mirror.lan:8443/m.tar.gz")
    with pytest.raises(SpecError) as err:
        validate_spec(one(storage_uri="https://user:s3cret@mirror.lan:8443/m.tar.gz"), VM_TARGET)
    assert "s3cret" not in str(err.value) and "https://<redacted>@mirror.lan:8443/m.tar.gz" in str(err.value)


@pytest.mark.parametrize("raw", ["hf://a", "hf://a/b/c", "s3://", "http://", "file://rel/x", "pvc://Bad/x", "x"])
def test_bad_uris(raw: str) -> None:
    with pytest.raises(UriError):
        parse_storage_uri(raw)


def test_scheme_rules_differ_by_target() -> None:
    validate_spec(one(storage_uri="pvc://cache/qwen"), CLUSTER_TARGET)
    with pytest.raises(SpecError, match="pvc://"):
        validate_spec(one(storage_uri="pvc://cache/qwen"), VM_TARGET)
    validate_spec(one(storage_uri="file:///data/qwen"), VM_TARGET)
    with pytest.raises(SpecError, match="file://"):
        validate_spec(one(storage_uri="file:///data/qwen"), CLUSTER_TARGET)


def test_every_problem_is_reported_at_once() -> None:
    spec = {"services": [
        {"name": "a", "storage_uri": "pvc://x/y", "gpus": 3, "tensor_parallel_size": 2},
        {"name": "a", "task": "embed", "storage_uri": "hf://o/r", "engine": {"tool_call_parser": "hermes"}},
    ]}
    with pytest.raises(SpecError) as exc:
        validate_spec(spec, VM_TARGET)
    paths = {i.path for i in exc.value.issues}
    assert {"services[0].gpus", "services[0].storage_uri", "services[1].name",
            "services[1].engine.tool_call_parser", "services[1].port"} <= paths


def test_seed_compose_llm_renders_the_seed_flags() -> None:
    dep = validate_spec(one(
        storage_uri="ms://qwen/Qwen2.5-72B-Instruct-GPTQ-Int8", served_model_name="gpt-4", gpus=2,
        tensor_parallel_size=2,
        engine={"enable_prefix_caching": True, "tool_call_parser": "hermes", "quantization": "gptq",
                "extra_args": ["--distributed-executor-backend", "ray"]},
    ), VM_TARGET)
    args = render_engine_args(dep.services[0])
    assert args[:8] == ["--model", "/mnt/models", "--served-model-name", "gpt-4", "--host", "0.0.0.0",
                        "--port", "8000"]
    joined = " ".join(args)
    for piece in ("--tensor-parallel-size 2", "--enable-prefix-caching", "--enable-auto-tool-choice",
                  "--tool-call-parser hermes", "--quantization gptq", "--distributed-executor-backend ray"):
        assert piece in joined
    assert "--pipeline-parallel-size" not in joined


@pytest.mark.parametrize(("task", "convert"), [("embed", "embed"), ("score", "classify")])
def test_pooling_services_use_the_pooling_runner(task: str, convert: str) -> None:
    dep = validate_spec(one(task=task), VM_TARGET)
    args = render_engine_args(dep.services[0])
    i = args.index("--runner")
    assert args[i: i + 4] == ["--runner", "pooling", "--convert", convert]


def test_generate_service_has_no_pooling_runner() -> None:
    assert "--runner" not in render_engine_args(validate_spec(one(), VM_TARGET).services[0])


def test_secret_refs_are_listed_by_path() -> None:
    dep = validate_spec({"services": [{
        "name": "chat", "storage_uri": "s3://models/x", "api_key": {"vault": "vault_key"},
        "storage": {"credentials": {"s3": {"access_key_id": {"env": "AK"}, "secret_access_key": {"env": "SK"}}}},
    }]}, VM_TARGET)
    refs = dep.services[0].secret_refs()
    assert set(refs) == {"api_key", "storage.credentials.s3.access_key_id", "storage.credentials.s3.secret_access_key"}
    assert refs["api_key"].kind == "vault"


def test_validate_inventory_checks_flags_against_the_pinned_vllm(tmp_path: Path) -> None:
    from tests.worlds import write_inventory

    spec = one(engine={"extra_args": ["--enable-prefix-cachin"]})
    inv = write_inventory(tmp_path / "hosts.yml", ["gpu-a"], spec)
    result = CliRunner().invoke(app, ["validate", "-i", str(inv), "--json"])
    assert result.exit_code == 2, result.output
    assert "services[0].engine.extra_args[0]" in result.stdout
    assert "--enable-prefix-caching" in result.stdout  # the suggested fix


def test_field_errors_and_cross_field_rules_are_reported_in_one_pass() -> None:
    bad_utilization = {"name": "a", "storage_uri": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": [0],
                       "engine": {"gpu_memory_utilization": 1.5}}
    twin = {"name": "b", "storage_uri": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": [1], "port": 8001}
    with pytest.raises(SpecError) as err:
        validate_spec({"services": [bad_utilization, twin, {**twin, "gpus": [2]}]}, VM_TARGET)
    paths = {i.path for i in err.value.issues}
    assert paths == {"services[0].engine.gpu_memory_utilization", "services[2].name", "services[2].port"}
    assert any("services[1] (b)" in i.problem for i in err.value.issues if i.path == "services[2].port")
