"""Unit tests: hub URIs and pins, patterns vs KServe, filters, prune, headers (hf:// against a served hub layout is in
test_hub_gcs_tls.py)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

from tests.weights.conftest import spec_for
from tests.weights.origins import make_model, write_safetensors

from ansible_collections.vllmfleet.fleet.plugins.filter.weights import weights_paths, weights_secret_refs  # isort: skip
from ansible_collections.vllmfleet.fleet.plugins.module_utils import weights_fetch as wf  # isort: skip
from ansible_collections.vllmfleet.fleet.plugins.module_utils import weights_sources as ws  # isort: skip

PATHS = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "README.md",
         "original/consolidated.pth", "tokenizer.json", "onnx/model.onnx", "sub/dir/config.json"]
PATTERNS = [([], []), (["*.json", "*.safetensors"], []), ([], ["original/*", "*.pth"]),
            (["*.json"], ["sub/*"]), (["model-*"], ["*00002*"])]


@pytest.mark.parametrize(("allow", "ignore"), PATTERNS)
def test_patterns_mean_what_kserve_and_huggingface_hub_mean(allow, ignore):
    from huggingface_hub.utils import filter_repo_objects
    from kserve_storage.kserve_storage import _should_download

    ours = [p for p in PATHS if ws.should_download(p, allow or None, ignore or None)]
    assert ours == [p for p in PATHS if _should_download(p, allow or None, ignore or None)]
    assert ours == list(filter_repo_objects(PATHS, allow_patterns=allow or None, ignore_patterns=ignore or None))


@pytest.mark.parametrize(("uri", "revision", "want"), [
    ("hf://Qwen/Qwen2.5-0.5B", None, ("Qwen/Qwen2.5-0.5B", None)),
    ("hf://Qwen/Qwen2.5-0.5B:v1.0", None, ("Qwen/Qwen2.5-0.5B", "v1.0")),
    ("hf://Qwen/Qwen2.5-0.5B:v1.0", "main", ("Qwen/Qwen2.5-0.5B", "main")),
    ("ms://qwen/Qwen2-7B:master", None, ("qwen/Qwen2-7B", "master")),
])
def test_hub_uri_and_revision(uri, revision, want):
    assert ws.hub_repo(uri, revision) == want


def test_hf_commit_pin_needs_no_network(tmp_path):
    from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure

    commit = "0123456789abcdef0123456789abcdef01234567"
    spec = spec_for(f"hf://org/model:{commit}")
    model = make_model(tmp_path / "models" / "svc" / commit)
    entries = wf.verify_tree(str(model), None, {}, True)
    wf.write_manifest(str(model), {"source": spec["display_uri"], "revision": commit, "files": entries})

    class NoNetwork(ws.HfSource):
        def resolve(self):
            raise AssertionError("a pinned, complete revision must not reach the hub")

    out = ensure(str(tmp_path / "models"), "svc", spec, {}, source=NoNetwork(spec, {}, spec["display_uri"]))
    assert out["changed"] is False and out["path"] == str(model)


def test_safetensors_header_checks(tmp_path):
    good = tmp_path / "good.safetensors"
    write_safetensors(good, {"a": ([2, 2], bytes(16)), "b": ([4], bytes(16))})
    wf.check_safetensors(str(good))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(wf.VerifyError, match="unreadable safetensors header"):
        wf.check_safetensors(str(bad))
    padded = tmp_path / "padded.safetensors"
    padded.write_bytes(good.read_bytes() + b"\0" * 8)
    with pytest.raises(wf.VerifyError, match="tensors cover 32 bytes but the file holds 40"):
        wf.check_safetensors(str(padded))


def test_preflight_message(tmp_path):
    with pytest.raises(wf.WeightsError, match=rf"^needs [0-9.]+ GiB at {tmp_path}, has [0-9.]+ GiB free"):
        wf.preflight(str(tmp_path), 1 << 60, 0)
    wf.preflight(str(tmp_path), 1024, 0)


def test_prune_keeps_active_and_newest(tmp_path):
    service = tmp_path / "svc"
    for i, rev in enumerate(["r1", "r2", "r3", "r4"]):
        d = service / rev
        d.mkdir(parents=True)
        (d / wf.MANIFEST).write_text(json.dumps({"files": []}))
        os.utime(d / wf.MANIFEST, (time.time() - 100 + i, time.time() - 100 + i))
    (service / ".staging-r9").mkdir()
    (service / ".staging-r1").mkdir()

    removed = wf.prune(str(tmp_path), "svc", keep=2, active="r1")

    assert removed == [".staging-r9", "r2", "r3"]
    assert sorted(p.name for p in service.iterdir() if not p.name.startswith(".")) == ["r1", "r4"]
    assert (service / ".staging-r1").exists()  # the active revision's staging is never touched


def test_secret_refs_filter_gives_each_named_reference_as_its_module_parameter():
    from vllm_fleet.vm.planning.fleet import plan_for_host

    items = plan_for_host({"services": [{
        "name": "a", "storage_uri": "s3://models/a", "accelerator": "cpu", "gpus": 0, "api_key": {"env": "K"},
        "storage": {"credentials": {"hf_token": {"env": "HF"}, "s3": {
            "access_key_id": {"env": "S3K"}, "secret_access_key": {"vault": "s3s"}}}},
        "adapters": [{"name": "a-lora", "storage_uri": "hf://acme/lora",
                      "storage": {"credentials": {"hf_token": {"env": "LORA_HF"}}}}]}]}, "h").model_dump()["weights"]
    assert [(i["name"], i["kind"], i["directory"]) for i in items] == [("a", "model", "a"),
                                                                        ("a@a-lora", "adapter", "a-lora")]
    # Each entry is fetched with its own credentials; the service's key is no storage credential.
    assert weights_secret_refs(items) == [
        {"service": "a", "param": "hf_token", "ref": {"env": "HF"}},
        {"service": "a", "param": "s3_access_key_id", "ref": {"env": "S3K"}},
        {"service": "a", "param": "s3_secret_access_key", "ref": {"vault": "s3s"}},
        {"service": "a@a-lora", "param": "hf_token", "ref": {"env": "LORA_HF"}}]


def test_every_named_storage_secret_is_a_no_log_parameter_of_the_weights_module():
    """The plan's StorageSecrets fields are the model_weights module's parameters by name: a field the module does
    not take would fail the fetch, and one it took without no_log would print the value."""
    from ansible_collections.vllmfleet.fleet.plugins.modules import model_weights  # isort: skip

    from vllm_fleet.vm.planning.plan import StorageSecrets

    assert set(StorageSecrets.model_fields) == set(model_weights.SECRET_OPTIONS)


def test_paths_filter_shapes_the_fact_and_refuses_a_missing_service():
    from ansible.errors import AnsibleFilterError

    from vllm_fleet.vm.planning.fleet import plan_for_host

    svc = plan_for_host({"services": [{"name": "chat", "storage_uri": "s3://models/p", "accelerator": "cpu",
                                       "gpus": 0}]}, "h").model_dump()["weights"][0]
    res = {"svc": svc, "path": "/m/chat/r-1", "revision": "r-1", "manifest": "/m/chat/r-1/.m", "changed": True}
    assert weights_paths([res, {"svc": svc, "skipped": True}]) == {
        "chat": {"path": "/m/chat/r-1", "revision": "r-1", "manifest": "/m/chat/r-1/.m", "source": "s3://models/p",
                 "changed": True}}
    with pytest.raises(AnsibleFilterError, match="no completed weights for service chat"):
        weights_paths([{"svc": svc, "failed": True, "msg": "boom"}])


def test_existing_directory_from_another_uri_is_refused(tmp_path):
    pub = wf.Publisher(str(tmp_path), "svc", "s3://b/new")
    d = Path(pub.final_dir("r-1"))
    make_model(d)
    wf.write_manifest(str(d), {"source": "s3://b/old", "revision": "r-1",
                               "files": wf.verify_tree(str(d), None, {}, True)})
    with pytest.raises(wf.WeightsError, match="holds revision r-1 of s3://b/old"):
        pub.existing("r-1")


def test_source_plan_is_what_the_role_reads():
    from vllm_fleet.spec import validate_spec
    from vllm_fleet.vm.planning.plan import service_plan
    from vllm_fleet.vm.planning.rules import VM_TARGET

    dep = validate_spec({"services": [{
        "name": "chat", "storage_uri": "s3://bucket/models/chat", "accelerator": "cpu", "gpus": 0,
        "storage": {"allow_patterns": ["*.json"], "timeout_seconds": 30, "retries": 1, "credentials": {"s3": {
            "access_key_id": {"env": "K"}, "secret_access_key": {"env": "S"}, "endpoint": "http://minio:9000"}}}}]},
        VM_TARGET, source="test")
    assert service_plan(dep.services[0], "h").source.model_dump() == {
        "uri": "s3://bucket/models/chat", "display_uri": "s3://bucket/models/chat", "scheme": "s3", "revision": None,
        "endpoint": None, "allow_patterns": ["*.json"], "ignore_patterns": [], "sha256": {}, "timeout_seconds": 30,
        "retries": 1, "s3": {"region": None, "endpoint": "http://minio:9000", "verify_ssl": True}}
