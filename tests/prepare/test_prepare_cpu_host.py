"""prepare-gpu-hosts.yml on a CPU-only sandbox host with the embedded default's switches
(inventories/local/group_vars/all.yml): Docker from Debian is installed and running, the NVIDIA roles are skipped,
and a re-run changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.worlds import write_inventory

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.world, pytest.mark.slow, pytest.mark.timeout(1800)]


def _play(inv: Path) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv),
                           "playbooks/prepare-gpu-hosts.yml"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def test_cpu_sandbox_gets_docker_and_skips_nvidia(sandbox_hosts, tmp_path):
    (host,) = sandbox_hosts(1, prefix="prepcpu")
    switches = yaml.safe_load((ROOT / "inventories/local/group_vars/all.yml").read_text())
    assert switches["vllm_fleet_nvidia"] is False
    inv = write_inventory(tmp_path / "hosts.yml", [host], {"services": []}, docker_install_compose=False, **switches)
    out = _play(inv)
    assert re.search(r"TASK \[Install the NVIDIA driver\][^\n]*\n+skipping: ", out), out[-3000:]
    assert re.search(r"TASK \[Install the NVIDIA Container Toolkit\][^\n]*\n+skipping: ", out), out[-3000:]
    state = subprocess.run(["docker", "exec", host, "systemctl", "is-active", "docker"], capture_output=True,
                           text=True, check=False)
    assert state.stdout.strip() == "active"
    version = subprocess.run(["docker", "exec", host, "docker", "version", "--format", "{{.Server.Version}}"],
                             capture_output=True, text=True, check=False)
    assert re.match(r"\d+\.\d+", version.stdout.strip()), version.stderr
    rerun = _play(inv)
    assert re.search(rf"{re.escape(host)}\s+: ok=\d+\s+changed=0\s", rerun), rerun[-2000:]
