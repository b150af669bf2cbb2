"""A bundle made with the real makers: the controller's wheels by pip, the image by `docker save`, and the
controller side installed from the bundle alone, in a fresh venv with no index."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.bundle.test_bundle import fleet, gpg, model_dir, service  # noqa: F401 - the gpg fixture
from vllm_fleet.sandbox import aptcache
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.vm.running.bundle import create, verify

pytestmark = [pytest.mark.world, pytest.mark.slow, pytest.mark.timeout(1200)]


def test_a_real_bundle_installs_the_controller_offline_and_carries_the_image_docker_saved_and_debian_packages(
        world: str, gpg: tuple[Path, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # Debian's archive through the test world's apt cache: its packages cross the network once per machine.
    aptcache.ensure_apt_cache()
    monkeypatch.setenv("http_proxy", aptcache.url())
    image, _ = ensure_host_image()  # a small image the engine has; the plan names it as the service's image
    plan = fleet(tmp_path, [service("chat", f"file://{model_dir(tmp_path / 'models', 'chat', b'w' * 1024)}",
                                    image=image)])
    out = tmp_path / "fleet.bundle"
    manifest, _ = create(plan, out, key=gpg[1], gnupg_home=gpg[0], log=lambda _: None)
    assert verify(out, gpg[2], plan=plan) == manifest
    wheels = sorted(i.path.rsplit("/", 1)[1] for i in manifest.items if i.kind == "wheel")
    assert any(w.startswith("vllm_fleet-") for w in wheels) and any(w.startswith("ansible_core-") for w in wheels)
    debs = {i.identity.split("_", 1)[0]: i.needed_by for i in manifest.items if i.kind == "deb"}
    assert debs["nftables"] == ["firewall"] and debs["docker.io"] == ["prepare (docker)"]
    assert debs["runc"] == debs["containerd"] == ["a dependency"]  # the closure, not only the names
    (img,) = [i for i in manifest.items if i.kind == "image"]
    image_id = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert img.identity == f"{image}#{image_id}" and img.needed_by == ["services.chat.image"]
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tf:
        tf.extractall(unpacked, filter="data")
    with tarfile.open(unpacked / img.path) as saved:
        saved_manifest = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert image in saved_manifest[0]["RepoTags"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                                str(unpacked / "items" / "wheels"), "vllm-fleet[vm]"], capture_output=True, text=True,
                               check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    ran = subprocess.run([str(venv / "bin" / "vllm-fleet"), "bundle", "verify", str(out), "--key", str(gpg[2])],
                         capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and "signature and" in ran.stderr, ran.stdout + ran.stderr
    print(f"bundle: {out.stat().st_size} bytes, {len(manifest.items)} items, {len(wheels)} wheels, "
          f"{len(debs)} Debian packages")
