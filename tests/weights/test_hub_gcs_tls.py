"""hf:// against the hub's HTTP layout served by nginx, gs:// against a GCS emulator, https:// over real TLS.

Each origin is a real server on loopback: nginx for the hub layout (tests/weights/hub.py) and for TLS (a CA and
certificate generated with trustme), gcp-storage-emulator for GCS. The fetch is the module's own code path.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.weights.conftest import spec_for
from tests.weights.hub import hub_repo_layout
from tests.weights.origins import Nginx, ServerProcess, make_model, start_gcs, start_nginx

from ansible_collections.vllmfleet.fleet.plugins.module_utils import weights_fetch as wf  # isort: skip
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure  # isort: skip

COMMIT = "3f2a9c1d0b8e7f6a5d4c3b2a1908f7e6d5c4b3a2"
HF_TOKEN = "hf_TestTokenForThePrivateRepo0123456789"


def files_of(tree: Path) -> dict[str, str]:
    return {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Nginx, Path]]:
    """A public repo org/tiny and a private repo org/private (needs HF_TOKEN), both at COMMIT."""
    www = tmp_path / "hub"
    model = make_model(tmp_path / "src", weight_bytes=192 * 1024)
    (model / "nested").mkdir()
    (model / "nested" / "extra.json").write_text("{}")
    locations = hub_repo_layout(www, "org/tiny", model, COMMIT)
    locations += "\n" + hub_repo_layout(www, "org/private", model, COMMIT, token=HF_TOKEN)
    origin = start_nginx(tmp_path / "nginx-hub", www, extra=locations)
    yield origin, model
    origin.stop()


def test_hf_branch_is_pinned_to_its_commit_fetched_verified_and_not_refetched(hub, tmp_path):
    origin, model = hub
    spec = spec_for("hf://org/tiny", endpoint=origin.url)

    first = ensure(str(tmp_path / "models"), "hf", spec, {})

    assert first["changed"] and first["revision"] == COMMIT
    assert files_of(Path(first["path"])) == files_of(model)
    manifest = json.loads((Path(first["path"]) / wf.MANIFEST).read_text())
    assert manifest["revision"] == COMMIT and manifest["source"] == "hf://org/tiny"
    resolved = sorted(r["uri"] for r in origin.requests() if r["method"] == "GET" and "/resolve/" in r["uri"])
    assert resolved == sorted(f"/org/tiny/resolve/{COMMIT}/{p}" for p in files_of(model))

    origin.reset_log()
    second = ensure(str(tmp_path / "models"), "hf", spec, {})

    assert second["changed"] is False and second["path"] == first["path"]
    assert [r["uri"] for r in origin.requests()] == ["/api/models/org/tiny/revision/main"]


def test_hf_allow_patterns_select_files_as_the_hub_client_does(hub, tmp_path):
    origin, _ = hub
    out = ensure(str(tmp_path / "models"), "hfp", spec_for("hf://org/tiny", endpoint=origin.url,
                                                          allow_patterns=["*.json"], ignore_patterns=["nested/*"]),
                 {}, require_config=True)
    assert sorted(files_of(Path(out["path"]))) == ["config.json", "tokenizer_config.json"]


def test_hf_private_repo_needs_the_token_which_never_reaches_the_error(hub, tmp_path):
    origin, model = hub
    spec = spec_for("hf://org/private", endpoint=origin.url)

    with pytest.raises(wf.WeightsError, match=r"gated, private or missing .*set storage.credentials.hf_token"):
        ensure(str(tmp_path / "models"), "priv", spec, {})
    with pytest.raises(wf.WeightsError) as wrong:
        ensure(str(tmp_path / "models"), "priv", spec, {"hf_token": "hf_NotTheRightToken000000000000000"})
    assert "hf_NotTheRightToken" not in str(wrong.value)

    out = ensure(str(tmp_path / "models"), "priv", spec, {"hf_token": HF_TOKEN})
    assert out["revision"] == COMMIT and files_of(Path(out["path"])) == files_of(model)


def test_hf_unknown_revision_is_named(hub, tmp_path):
    origin, _ = hub
    with pytest.raises(wf.WeightsError, match=r"revision 'v9' does not exist"):
        ensure(str(tmp_path / "models"), "rev", spec_for("hf://org/tiny:v9", endpoint=origin.url), {})


def test_hf_bytes_that_differ_from_the_hub_listing_publish_nothing(tmp_path):
    model = make_model(tmp_path / "src")
    blob = (model / "model.safetensors").read_bytes()
    corrupt = blob[:-4] + b"\xff\xff\xff\xff"
    www = tmp_path / "hub"
    origin = start_nginx(tmp_path / "nginx-hub", www, extra=hub_repo_layout(
        www, "org/tiny", model, COMMIT, serve={"model.safetensors": corrupt}))
    try:
        with pytest.raises(wf.WeightsError, match=r"model\.safetensors"):
            ensure(str(tmp_path / "models"), "bad", spec_for("hf://org/tiny", endpoint=origin.url, retries=0), {})
    finally:
        origin.stop()
    assert [p.name for p in (tmp_path / "models" / "bad").iterdir() if not p.name.startswith(".")] == []


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    server = start_gcs()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    yield server
    server.stop()


def _gcs_upload(bucket_name: str, prefix: str, model: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(bucket_name)
    for f in sorted(p for p in model.rglob("*") if p.is_file()):
        bucket.blob(f"{prefix}/{f.relative_to(model).as_posix()}").upload_from_filename(str(f))


def test_gs_prefix_is_fetched_verified_and_a_rerun_reads_no_object(gcs, tmp_path):
    model = make_model(tmp_path / "src", weight_bytes=320 * 1024)
    _gcs_upload("weights", "models/tiny", model)
    spec = spec_for("gs://weights/models/tiny", sha256={"model.safetensors": files_of(model)["model.safetensors"]})

    first = ensure(str(tmp_path / "models"), "gcs", spec, {})

    assert first["changed"] and first["bytes_downloaded"] == sum(f.stat().st_size for f in model.iterdir())
    assert files_of(Path(first["path"])) == files_of(model)
    second = ensure(str(tmp_path / "models"), "gcs", spec, {})
    assert second["changed"] is False and second["bytes_downloaded"] == 0 and second["path"] == first["path"]


def test_gs_layout_matches_kserve_storage_initializer(gcs, tmp_path):
    import subprocess
    import sys

    model = make_model(tmp_path / "src")
    (model / "nested").mkdir()
    (model / "nested" / "extra.json").write_text("{}")
    _gcs_upload("kserve-gcs", "a/b", model)
    kserve_dir = tmp_path / "kserve"
    kserve_dir.mkdir()
    proc = subprocess.run([sys.executable, "-c", "import sys; from kserve_storage import Storage; "
                           "Storage._download_gcs(sys.argv[1], sys.argv[2])", "gs://kserve-gcs/a/b", str(kserve_dir)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = ensure(str(tmp_path / "models"), "ks", spec_for("gs://kserve-gcs/a/b"), {})
    assert sorted(wf.walk_files(ours["path"])) == sorted(wf.walk_files(str(kserve_dir)))


def test_gs_missing_bucket_is_named(gcs, tmp_path):
    with pytest.raises(wf.WeightsError, match=r"gs://nowhere/m: GCS answered 404"):
        ensure(str(tmp_path / "models"), "gone", spec_for("gs://nowhere/m", retries=0), {})


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA PEM, server chain PEM, server key PEM) for 127.0.0.1, from a CA generated for this test."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "chain.pem"))
    return d / "ca.pem", d / "chain.pem", d / "key.pem"


@pytest.fixture
def tls_origin(tmp_path: Path, tls_ca: tuple[Path, Path, Path]) -> Iterator[Nginx]:
    www = tmp_path / "www"
    www.mkdir()
    model = make_model(tmp_path / "src")
    with tarfile.open(www / "tiny.tar.gz", "w:gz") as tf:
        tf.add(model, arcname="tiny")
    origin = start_nginx(tmp_path / "nginx-tls", www, tls=(tls_ca[1], tls_ca[2]))
    yield origin
    origin.stop()


def test_https_over_tls_verifies_against_the_given_ca(tls_origin, tls_ca, tmp_path):
    assert tls_origin.url.startswith("https://")
    out = ensure(str(tmp_path / "models"), "tls", spec_for(f"{tls_origin.url}/tiny.tar.gz", ca_bundle=str(tls_ca[0])),
                 {})
    assert out["changed"] and (Path(out["path"]) / "model.safetensors").is_file()


def test_https_certificate_from_an_untrusted_ca_fails_at_once_with_the_fix(tls_origin, tmp_path):
    """The host's trust store does not hold the generated CA: no byte is fetched, no retry, the fix is named."""
    spec = spec_for(f"{tls_origin.url}/tiny.tar.gz", retries=5)
    with pytest.raises(wf.WeightsError, match=r"TLS certificate did not verify .*model_weights_ca_bundle") as err:
        ensure(str(tmp_path / "models"), "untrusted", spec, {})
    assert "failed after" not in str(err.value)  # reported at once, not after five retries
    assert tls_origin.requests() == []  # the handshake failed: nginx logged no request


def test_a_ca_bundle_that_is_not_on_the_host_is_named(tls_origin, tmp_path):
    spec = spec_for(f"{tls_origin.url}/tiny.tar.gz", ca_bundle=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(wf.WeightsError, match=r"ca_bundle .*missing-ca.pem is not a file on this host"):
        ensure(str(tmp_path / "models"), "noca", spec, {})
