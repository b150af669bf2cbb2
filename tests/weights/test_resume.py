"""Fault injection: kill the fetch at 10 points; every re-run resumes and nothing partial is ever published."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.weights.conftest import REPO, S3_KEYS, spec_for
from tests.weights.origins import make_model

from ansible_collections.vllmfleet.fleet.plugins.module_utils import weights_fetch as wf  # isort: skip

RUNNER = """
import json, sys
sys.path.insert(0, {collections!r})
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure
spec, creds, root = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(json.dumps(ensure(root, "svc", spec, creds)))
"""


class FinalPathWatcher(threading.Thread):
    """Polls <service>/ and records any revision directory seen without a complete manifest."""

    def __init__(self, service_dir: Path):
        super().__init__(daemon=True)
        self.service_dir = service_dir
        self.violations: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.service_dir.is_dir():
                for entry in self.service_dir.iterdir():
                    if entry.name.startswith(".") or not entry.is_dir():
                        continue
                    problem = wf.check_published(str(entry))
                    if problem:
                        self.violations.append(f"{entry.name} {problem}")
            time.sleep(0.005)


def _fetch_proc(spec: dict, creds: dict, root: Path) -> subprocess.Popen[str]:
    code = RUNNER.format(collections=str(REPO / ".collections"))
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(spec), json.dumps(creds), str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen[str], condition, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the kill point was never reached")


def _part_size(service_dir: Path) -> int:
    """Bytes downloaded so far into the staging area, finished files and .part files alike."""
    total = 0
    try:
        for path in service_dir.glob(f"{wf.STAGING_PREFIX}*/**/*"):
            if path.is_file():
                total += path.stat().st_size
    except FileNotFoundError:  # the fetch renamed or removed its staging directory while we looked
        pass
    return total


def _run_with_kills(spec: dict, creds: dict, root: Path, total: int, points: list[float],
                    after_download: Path | None) -> tuple[dict, list[str]]:
    service_dir = root / "svc"
    watcher = FinalPathWatcher(service_dir)
    watcher.start()
    kills = 0
    try:
        for i, fraction in enumerate(points):
            # Writes land in 1 MiB chunks and may jump past a point: each kill also waits for new bytes,
            # and leaves the remaining points their share of what is left.
            before = _part_size(service_dir)
            proc = _fetch_proc(spec, creds, root)
            share = before + (total - before) // (len(points) - i + 1)
            threshold = max(min(int(total * fraction), share), before + 1)
            killed = _kill_when(proc, lambda t=threshold: _part_size(service_dir) >= t)
            assert killed, f"the fetch finished before the kill point {fraction:.0%}: {proc.stdout.read()}"
            kills += 1
            assert not [e for e in service_dir.iterdir() if not e.name.startswith(".")]
        if after_download is not None:  # the 10th point: archive complete, killed while unpacking/verifying
            proc = _fetch_proc(spec, creds, root)
            killed = _kill_when(proc, lambda: any(service_dir.glob(f"{wf.STAGING_PREFIX}*/download/{after_download}")))
            kills += int(killed)
        proc = _fetch_proc(spec, creds, root)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        watcher.stop.set()
        watcher.join()
    assert kills == 10
    return json.loads(out), watcher.violations


@pytest.mark.slow
def test_https_archive_survives_ten_kills(slow_https_origin, tmp_path):
    model = make_model(tmp_path / "src", weight_bytes=12 << 20, seed=-1)
    archive = slow_https_origin.root / "big.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(model, arcname="big")
    size = archive.stat().st_size
    root = tmp_path / "models"

    result, violations = _run_with_kills(spec_for(f"{slow_https_origin.url}/big.tar"), {}, root, size,
                                         [i / 10 for i in range(1, 10)], after_download=Path("big.tar"))

    assert violations == []
    manifest = json.loads((Path(result["path"]) / wf.MANIFEST).read_text())
    want = {f.name: wf.sha256_file(str(f)).hexdigest() for f in model.iterdir()}
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == want
    ranged = [r for r in slow_https_origin.requests() if r["method"] == "GET" and r["range"].startswith("bytes=")]
    assert_resumed(ranged, size)
    assert not list((root / "svc").glob(wf.STAGING_PREFIX + "*"))


@pytest.mark.slow
def test_s3_objects_survive_ten_kills(s3_origin, tmp_path):
    origin, client = s3_origin
    model = make_model(tmp_path / "src", weight_bytes=12 << 20, seed=-1)
    client.create_bucket(Bucket="resume")
    for f in model.iterdir():
        client.put_object(Bucket="resume", Key=f"m/{f.name}", Body=f.read_bytes(), ChecksumAlgorithm="SHA256")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    origin.reset_log()
    # Slow the relay down so the kill points are reachable: nginx rate-limits what it passes on.
    origin.stop()
    from tests.weights.origins import start_nginx

    slow = start_nginx(tmp_path / "nginx-s3-slow", tmp_path, proxy_to=_moto_url(origin),
                       limit_rate="1m")
    try:
        spec = spec_for("s3://resume/m", s3={"endpoint": slow.url, "region": "us-east-1", "verify_ssl": True})
        size = sum(f.stat().st_size for f in model.iterdir())
        result, violations = _run_with_kills(spec, S3_KEYS, tmp_path / "models", size,
                                             [i / 11 for i in range(1, 11)], after_download=None)
        assert violations == []
        manifest = json.loads((Path(result["path"]) / wf.MANIFEST).read_text())
        assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
            f.name: wf.sha256_file(str(f)).hexdigest() for f in model.iterdir()}
        gets = [r for r in slow.requests() if r["method"] == "GET" and r["uri"] == "/resume/m/model.safetensors"]
        assert_resumed(gets[1:], (model / "model.safetensors").stat().st_size)
    finally:
        slow.stop()


def assert_resumed(gets: list[dict[str, str]], size: int) -> None:
    """Each re-run asked only for the rest (Range from further on), and the last one completed the file.

    Bytes sent per killed request are not compared: nginx counts what sat in socket buffers at the kill.
    """
    starts = [int(r["range"][len("bytes="):].split("-")[0]) for r in gets]
    assert len(starts) >= 9 and starts[0] > 0 and starts == sorted(set(starts)), starts
    last = gets[-1]
    if last["status"] == "416":  # a killed run had already received every byte: nothing left to ask for
        assert starts[-1] == size, (starts[-1], size)
    else:
        assert last["status"] == "206" and int(last["bytes"]) == size - starts[-1]


def _moto_url(origin) -> str:
    conf = (origin.prefix / "nginx.conf").read_text()
    return conf.split("proxy_pass ", 1)[1].split(";", 1)[0]
