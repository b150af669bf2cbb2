"""Fetch, verify, manifest, idempotence, corruption and preflight against real origins on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.weights.conftest import S3_KEYS, spec_for
from tests.weights.origins import make_model, write_safetensors

from ansible_collections.vllmfleet.fleet.plugins.module_utils import weights_fetch as wf  # isort: skip
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure  # isort: skip

NO_CREDS: dict[str, str | None] = {}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible_entries(service_dir: Path) -> list[str]:
    return sorted(p.name for p in service_dir.iterdir() if not p.name.startswith("."))


def tarball(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname="tiny-model")
    return dest


def test_https_tarball_is_fetched_unpacked_verified_and_not_reread(https_origin, tmp_path):
    model = make_model(tmp_path / "src", weight_bytes=256 * 1024)
    archive = tarball(model, https_origin.root / "tiny.tar.gz")
    root = tmp_path / "models"
    spec = spec_for(f"{https_origin.url}/tiny.tar.gz")

    first = ensure(str(root), "chat", spec, NO_CREDS)

    assert first["changed"] is True
    final = Path(first["path"])
    assert final.parent == root / "chat" and final.name == first["revision"]
    manifest = json.loads((final / wf.MANIFEST).read_text())
    assert manifest["source"] == spec["display_uri"] and manifest["revision"] == first["revision"]
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        name: sha(model / name) for name in ("config.json", "tokenizer_config.json", "model.safetensors")}
    assert https_origin.body_bytes("GET") == archive.stat().st_size
    assert visible_entries(root / "chat") == [first["revision"]]
    assert not list((root / "chat").glob(wf.STAGING_PREFIX + "*"))

    https_origin.reset_log()
    second = ensure(str(root), "chat", spec, NO_CREDS)

    assert second["changed"] is False and second["path"] == first["path"]
    assert https_origin.body_bytes("GET") == 0
    assert [r["method"] for r in https_origin.requests()] == ["HEAD"]


def test_changed_object_lands_in_a_new_revision_directory(https_origin, tmp_path):
    root = tmp_path / "models"
    make_model(https_origin.root / "m", seed=1)
    tarball(https_origin.root / "m", https_origin.root / "m.tgz")
    spec = spec_for(f"{https_origin.url}/m.tgz")
    old = ensure(str(root), "svc", spec, NO_CREDS)
    os.utime(https_origin.root / "m.tgz", (1_900_000_000, 1_900_000_000))  # new Last-Modified and ETag

    new = ensure(str(root), "svc", spec, NO_CREDS)

    assert new["changed"] and new["revision"] != old["revision"]
    assert Path(old["path"]).is_dir() and Path(new["path"]).is_dir()


def test_single_file_with_spec_sha256_and_corruption_publishes_nothing(https_origin, tmp_path):
    weights = https_origin.root / "w.safetensors"
    write_safetensors(weights, {"w": ([8, 8], bytes(256))})
    good = sha(weights)
    root = tmp_path / "models"
    spec = spec_for(f"{https_origin.url}/w.safetensors", sha256={"w.safetensors": good})

    ok = ensure(str(root), "single", spec, NO_CREDS, require_config=False)
    assert ok["changed"] and sha(Path(ok["path"]) / "w.safetensors") == good

    weights.write_bytes(weights.read_bytes()[:-4] + b"\xff\xff\xff\xff")  # the origin now serves corrupt bytes
    os.utime(weights, (1_900_000_000, 1_900_000_000))
    with pytest.raises(wf.WeightsError, match=r"w\.safetensors has sha256 [0-9a-f]{64}, expected " + good):
        ensure(str(root), "single", spec, NO_CREDS, require_config=False)
    assert visible_entries(root / "single") == [ok["revision"]]  # only the earlier good revision
    assert not list((root / "single").glob(wf.STAGING_PREFIX + "*"))


def test_truncated_safetensors_at_origin_fails_and_publishes_nothing(https_origin, tmp_path):
    model = make_model(tmp_path / "src")
    blob = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(blob[:-100])
    tarball(model, https_origin.root / "bad.tar.gz")
    root = tmp_path / "models"

    with pytest.raises(wf.WeightsError, match=r"model\.safetensors: tensor"):
        ensure(str(root), "bad", spec_for(f"{https_origin.url}/bad.tar.gz"), NO_CREDS)
    assert visible_entries(root / "bad") == []


def test_missing_config_json_is_refused(https_origin, tmp_path):
    write_safetensors(https_origin.root / "only.safetensors", {"w": ([2], bytes(8))})
    with pytest.raises(wf.WeightsError, match=r"no config\.json"):
        ensure(str(tmp_path / "m"), "x", spec_for(f"{https_origin.url}/only.safetensors"), NO_CREDS)


def test_disk_full_preflight_fails_before_any_byte(https_origin, tmp_path):
    huge = https_origin.root / "huge.tar"
    with open(huge, "wb") as fh:  # sparse: the origin announces 8 TiB without storing them
        fh.truncate(8 << 40)
    root = tmp_path / "models"

    with pytest.raises(wf.WeightsError, match=r"^needs [0-9.]+ GiB at .*/models/big, has [0-9.]+ GiB free"):
        ensure(str(root), "big", spec_for(f"{https_origin.url}/huge.tar"), NO_CREDS)
    assert https_origin.body_bytes("GET") == 0
    assert all(r["method"] == "HEAD" for r in https_origin.requests())


def test_error_names_the_uri(https_origin, tmp_path):
    with pytest.raises(wf.WeightsError, match=f"{https_origin.url}/nope.tar.gz answered HTTP 404"):
        ensure(str(tmp_path / "m"), "x", spec_for(f"{https_origin.url}/nope.tar.gz"), NO_CREDS)


def _upload_model(client, bucket: str, prefix: str, model: Path) -> None:
    client.create_bucket(Bucket=bucket)
    for f in sorted(model.iterdir()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{f.name}", Body=f.read_bytes(), ChecksumAlgorithm="SHA256")
    client.put_object(Bucket=bucket, Key=f"{prefix}/subdir/", Body=b"")  # a "directory" marker KServe skips


def test_s3_prefix_fetch_uses_origin_checksums_and_is_not_reread(s3_origin, tmp_path):
    origin, client = s3_origin
    model = make_model(tmp_path / "src", weight_bytes=128 * 1024)
    _upload_model(client, "weights", "models/tiny", model)
    spec = spec_for("s3://weights/models/tiny", s3={"endpoint": origin.url, "region": "us-east-1",
                                                     "verify_ssl": True})
    root = tmp_path / "models"
    origin.reset_log()

    first = ensure(str(root), "s3svc", spec, S3_KEYS)

    assert first["changed"]
    manifest = json.loads((Path(first["path"]) / wf.MANIFEST).read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {f.name: sha(f) for f in model.iterdir()}
    served = origin.body_bytes("GET")
    weights_size = sum(f.stat().st_size for f in model.iterdir())
    assert weights_size <= served < weights_size + 16_384  # the objects once, plus small listing XML

    origin.reset_log()
    second = ensure(str(root), "s3svc", spec, S3_KEYS)

    assert second["changed"] is False
    object_gets = [r for r in origin.requests() if r["method"] == "GET" and r["uri"].startswith("/weights/models/")]
    assert object_gets == []
    assert origin.body_bytes("GET") < 4096  # the one bucket listing


def _kserve_download_s3(uri: str, out: Path, allow: list[str], ignore: list[str], env: dict[str, str]) -> None:
    """KServe's storage initializer, in a process of its own, as KServe runs it.

    Storage._download_s3 forks a multiprocessing pool; forked from pytest (a process with threads) a worker
    can inherit a held lock and hang forever, so it runs in a fresh interpreter with a deadline.
    """
    code = ("import json, sys; from kserve_storage import Storage; a = json.loads(sys.argv[1]); "
            "Storage._download_s3(a[0], a[1], a[2] or None, a[3] or None)")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([uri, str(out), allow, ignore])],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_s3_layout_matches_kserve_storage_initializer(s3_origin, tmp_path):
    origin, client = s3_origin
    model = make_model(tmp_path / "src")
    _upload_model(client, "kserve-layout", "a/b", model)
    client.put_object(Bucket="kserve-layout", Key="a/b/nested/extra.json", Body=b"{}")
    client.put_object(Bucket="kserve-layout", Key="a/b/README.md", Body=b"# readme")
    env = {"AWS_ENDPOINT_URL": origin.url, "AWS_ACCESS_KEY_ID": S3_KEYS["s3_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": S3_KEYS["s3_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    for allow, ignore in (([], []), (["*.json", "*.safetensors"], ["nested/*"])):
        kserve_dir = tmp_path / f"kserve-{len(allow)}"
        kserve_dir.mkdir()
        _kserve_download_s3("s3://kserve-layout/a/b", kserve_dir, allow, ignore, env)
        ours = ensure(str(tmp_path / "models"), f"ks{len(allow)}",
                      spec_for("s3://kserve-layout/a/b", allow_patterns=allow, ignore_patterns=ignore,
                               s3={"endpoint": origin.url, "region": "us-east-1", "verify_ssl": True}), S3_KEYS)
        assert sorted(wf.walk_files(ours["path"])) == sorted(wf.walk_files(str(kserve_dir)))
        assert (kserve_dir / "model.safetensors").is_file()


def test_s3_spec_sha256_mismatch_publishes_nothing(s3_origin, tmp_path):
    origin, client = s3_origin
    model = make_model(tmp_path / "src")
    _upload_model(client, "corrupt", "m", model)
    spec = spec_for("s3://corrupt/m", sha256={"model.safetensors": "0" * 64},
                    s3={"endpoint": origin.url, "region": "us-east-1", "verify_ssl": True})
    with pytest.raises(wf.WeightsError, match=r"model\.safetensors has sha256"):
        ensure(str(tmp_path / "models"), "c", spec, S3_KEYS)
    assert visible_entries(tmp_path / "models" / "c") == []


def test_file_uri_is_verified_in_place(tmp_path):
    model = make_model(tmp_path / "nfs" / "m")
    out = ensure(str(tmp_path / "models"), "local", spec_for(f"file://{model}"), NO_CREDS)
    assert out == {"changed": False, "path": str(model), "revision": "local", "manifest": None, "files": 3,
                   "total_bytes": sum(f.stat().st_size for f in model.iterdir()), "bytes_downloaded": 0}
    assert not (tmp_path / "models").exists()
    (model / "config.json").unlink()
    with pytest.raises(wf.WeightsError, match=r"has no config\.json"):
        ensure(str(tmp_path / "models"), "local", spec_for(f"file://{model}"), NO_CREDS)
