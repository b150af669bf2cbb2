"""prepare-gpu-hosts.yml rejects bad variables before any task touches a host.

The first play runs on the controller only (no facts, no connection use): argument_specs of all three roles, plus
the URL/version syntax argument_specs cannot express. Here it runs against localhost with a local connection, and
we check that the error names the variable and that the second play (which gathers facts) never started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_prepare(extra: dict) -> subprocess.CompletedProcess[str]:
    from vllm_fleet.vm.running.paths import ensure_collection_link

    ensure_collection_link()
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "playbooks/prepare-gpu-hosts.yml", "-e", "vllm_fleet_prepare_hosts=all", "-e", json.dumps(extra)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"docker_source": "snap"}, "docker_source must be one of: upstream, distribution"),
        ({"nvidia_driver_source": "ppa"}, "nvidia_driver_source must be one of: upstream, distribution"),
        ({"nvidia_driver_branch": "latest"}, "'nvidia_driver_branch' is of type str and we were unable to convert"),
        ({"nvidia_driver_flavor": "nouveau"}, "nvidia_driver_flavor must be one of: open, proprietary"),
        ({"nvidia_container_toolkit_repo_base_url": "nvidia.github.io/libnvidia-container"},
         "must be http(s) URLs"),
        ({"docker_repo_base_url": "ftp://mirror.local/docker"}, "must be http(s) URLs"),
        ({"nvidia_driver_version": "570"}, "a driver version such as 570.172.08"),
        ({"vllm_fleet_nvidia": "maybe"}, "vllm_fleet_nvidia must be true or false"),
    ],
)
def test_bad_value_rejected_before_any_host_task(bad, message):
    proc = run_prepare(bad)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert message in out, out[-3000:]
    assert "PLAY [Prepare GPU hosts]" not in out
    assert "Gathering Facts" not in out
    assert "changed=0" in out

