"""Prometheus's own tools, from Debian's package, for the rule and dashboard tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vllm_fleet.sandbox.vllm_image import cache_dir


def debian_prometheus() -> Path:
    """Debian 12's prometheus package unpacked under the cache (promtool and prometheus; nothing installed)."""
    root = cache_dir().parent / "debian-prometheus"
    tool = root / "usr" / "bin" / "promtool"
    if tool.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(["apt-get", "download", "prometheus"], cwd=root, capture_output=True, text=True)
    if download.returncode != 0:  # no package lists yet on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "download", "prometheus"], cwd=root, check=True, capture_output=True)
    deb = next(root.glob("prometheus_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    deb.unlink()
    return root


@pytest.fixture(scope="session")
def promtool() -> Path:
    return debian_prometheus() / "usr" / "bin" / "promtool"
