"""The test world's apt cache: sandbox hosts fetch Debian's archive through it, a second fetch is served from it,
and the production roles know nothing about it."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vllm_fleet.sandbox import aptcache

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.world
def test_a_package_crosses_the_network_once(sandbox_hosts) -> None:
    first, second = sandbox_hosts(2, prefix="apt")
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)  # log times have one-second resolution: nothing from before `since` can count
    fetch = "cd /tmp && apt-get update -qq && apt-get download -qq hello && ls hello_*.deb"
    for host in (first, second):
        proc = subprocess.run(["docker", "exec", host, "sh", "-c", fetch], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        setting = subprocess.run(["docker", "exec", host, "cat", aptcache.APT_CONF], capture_output=True, text=True,
                                 check=True).stdout
        assert f"Acquire::http::Proxy::{aptcache.ARCHIVE_HOST}" in setting
    lines = [line.split(" ") for line in aptcache.ACCESS_LOG.read_text().splitlines() if line >= since]
    hello = [fields[1] for fields in lines if "/hello_" in fields[-1] and fields[-1].endswith(".deb")]
    # The first host's download may already be a HIT from an earlier run on this machine; the second is always one.
    assert len(hello) == 2 and hello[1] == "HIT", hello


def test_no_role_carries_an_apt_proxy_setting() -> None:
    for path in (REPO / "roles").rglob("*"):
        if path.is_file() and "molecule" not in path.parts:
            text = path.read_text(errors="replace")
            assert "Acquire::http::Proxy" not in text and str(aptcache.PORT) not in text, path
