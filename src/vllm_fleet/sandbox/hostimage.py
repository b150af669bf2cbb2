"""Debian 12 host images with systemd, built with debootstrap and `docker import`.

An image is tagged with a digest of its recipe, so it is rebuilt only when the
recipe changes, and `:latest` points at the newest build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vllm_fleet.sandbox import aptcache

REPOSITORY = "vllm-fleet/debian12-systemd"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

# What a freshly rented cloud VM has: an SSH server, python for Ansible, systemd, sudo, apt's gpg.
PACKAGES = (
    "python3",
    "python3-apt",
    "sudo",
    "systemd",
    "systemd-sysv",
    "dbus",
    "gnupg",
    "ca-certificates",
    "iproute2",
    "procps",
    "curl",
    "kmod",
    "openssh-server",
)

# Units that make no sense in a container host and would keep it "degraded".
MASKED_UNITS = (
    "systemd-remount-fs.service",
    "getty.target",
    "console-getty.service",
    "sys-kernel-config.mount",
    "systemd-modules-load.service",
)


@dataclass(frozen=True)
class Recipe:
    suite: str = SUITE
    mirror: str = MIRROR
    packages: tuple[str, ...] = PACKAGES
    masked: tuple[str, ...] = MASKED_UNITS
    extra: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        text = json.dumps(
            {
                "suite": self.suite,
                "mirror": self.mirror,
                "packages": sorted(self.packages),
                "masked": sorted(self.masked),
                "extra": self.extra,
                "builder": 2,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}:{self.digest()}"


def image_exists(ref: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode
        == 0
    )


def ensure_host_image(recipe: Recipe | None = None, log=print) -> tuple[str, bool]:
    """Return (image tag, built) for the recipe, building it only when missing."""
    recipe = recipe or Recipe()
    if image_exists(recipe.tag):
        subprocess.run(["docker", "tag", recipe.tag, f"{REPOSITORY}:latest"], check=True)
        return recipe.tag, False
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: run `make setup` (apt-get install debootstrap)")
    aptcache.ensure_apt_cache()
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {recipe.suite} into {rootfs} (about a minute)")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(rootfs),
                recipe.mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            # Through the apt cache, like the hosts: the image's packages cross the network once per machine.
            env={**os.environ, "http_proxy": aptcache.url()},
        )
        for unit in recipe.masked:
            link = rootfs / "etc/systemd/system" / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to("/dev/null")
        (rootfs / "etc/hostname").write_text("vllm-fleet-host\n")
        (rootfs / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
        for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [
                "docker",
                "import",
                "--change",
                'CMD ["/lib/systemd/systemd"]',
                "--change",
                "ENV container=docker",
                "-",
                recipe.tag,
            ],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap rootfs failed")
    subprocess.run(["docker", "tag", recipe.tag, f"{REPOSITORY}:latest"], check=True)
    return recipe.tag, True
