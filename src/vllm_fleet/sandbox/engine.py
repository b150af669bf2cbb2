"""Make sure a Docker engine answers, installing and starting one when none does.

The machines this project runs on have no systemd as PID 1, so the daemon is
started in the background and its log kept beside the state directory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

DOCKERD_LOG = Path("/var/log/vllm-fleet-dockerd.log")


class EngineError(RuntimeError):
    pass


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def _install_engine() -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], check=True, env=env)


def ensure_engine(timeout: float = 60.0) -> str:
    """Return how the engine was found: 'running', 'started' or 'installed'."""
    if engine_answers():
        return "running"
    how = "started"
    if shutil.which("dockerd") is None:
        _install_engine()
        how = "installed"
        if engine_answers():
            return how
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(
            ["dockerd"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers():
            return how
        time.sleep(0.5)
    raise EngineError(f"dockerd did not answer within {timeout:.0f}s; see {DOCKERD_LOG}")
