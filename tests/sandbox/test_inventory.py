"""The one sandbox-inventory writer the tests and benchmarks share: what Ansible reads back from its file, and a
sandbox host reached through it over SSH."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from vllm_fleet.sandbox.hosts import SSH_KEY, address
from vllm_fleet.sandbox.inventory import cpu_host, write_inventory, write_sandbox_inventory

REPO = Path(__file__).resolve().parents[2]


def read(path: Path) -> tuple[InventoryManager, VariableManager]:
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(path)])
    return inv, VariableManager(loader=loader, inventory=inv)


def test_serving_gateway_and_monitoring_groups_with_their_variables_reach_ansible(tmp_path: Path) -> None:
    spec = {"services": [{"name": "chat", "storage_uri": "file:///m"}]}
    path = write_inventory(tmp_path / "hosts.yml", {"a": cpu_host("10.0.0.1", "192.168.0.1", image_archive="/i.tar"),
                                                    "b": {"vllm_fleet_spec": {"services": []}}}, spec,
                           connection="ssh", gateways={"a": None, "vars": {"gateway_pki_dir": "/p"}},
                           monitoring={"b": None}, vllm_fleet_nvidia=False)
    inv, variables = read(path)
    assert [h.name for h in inv.get_hosts("vllm_hosts")] == ["a", "b"]
    assert [h.name for h in inv.get_hosts("vllm_gateways")] == ["a"]
    assert [h.name for h in inv.get_hosts("vllm_monitoring")] == ["b"]
    a = variables.get_vars(host=inv.get_host("a"), include_hostvars=False)
    b = variables.get_vars(host=inv.get_host("b"), include_hostvars=False)
    assert a["ansible_connection"] == "ssh" and a["ansible_user"] == "root"
    assert (a["vllm_fleet_address"], a["vllm_fleet_backend_address"]) == ("10.0.0.1", "192.168.0.1")
    assert (a["vllm_server_image_source"], a["vllm_server_image_archive_remote"]) == ("archive", "/i.tar")
    assert a["vllm_fleet_spec"] == spec and a["gateway_pki_dir"] == "/p" and a["vllm_fleet_nvidia"] is False
    # A host's own variables win over the group's and over the keyword variables of every host.
    assert b["vllm_fleet_spec"] == {"services": []} and "gateway_pki_dir" not in b


def test_a_cpu_host_without_an_archive_takes_the_image_already_present() -> None:
    host = cpu_host()
    assert host == {"vllm_fleet_nvidia": False, "docker_source": "distribution", "vllm_server_image_source": "present"}


@pytest.mark.world
def test_a_running_sandbox_host_is_reached_over_ssh_with_the_sandbox_key_and_a_missing_one_is_unreachable(
        sandbox_hosts: Callable[..., list[str]], tmp_path: Path) -> None:
    (host,) = sandbox_hosts(1, prefix="ssh")
    path = write_sandbox_inventory(tmp_path / "hosts.yml", [host, "vf-ssh-no-such-host"], {"services": []})
    inv, variables = read(path)
    reached = variables.get_vars(host=inv.get_host(host))
    assert reached["ansible_connection"] == "ssh" and reached["ansible_host"] == address(host)
    assert reached["ansible_ssh_private_key_file"] == str(SSH_KEY)
    assert "ansible_host" not in variables.get_vars(host=inv.get_host("vf-ssh-no-such-host"))
    adhoc = [str(Path(sys.executable).parent / "ansible"), "all", "-i", str(path),
             "-m", "ansible.builtin.command", "-a", "cat /etc/hostname"]
    ran = subprocess.run(adhoc, capture_output=True, text=True, check=False, timeout=120,
                         env=os.environ | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    assert f"{host} | CHANGED | rc=0" in ran.stdout and host in ran.stdout.split("rc=0", 1)[1], ran.stdout + ran.stderr
    assert "vf-ssh-no-such-host | UNREACHABLE!" in ran.stdout, ran.stdout
    # The only way in is the sandbox's key: root's authorised keys hold it and nothing else.
    keys = subprocess.run(["docker", "exec", host, "cat", "/root/.ssh/authorized_keys"], capture_output=True,
                          text=True, check=True).stdout
    assert keys == SSH_KEY.with_suffix(".pub").read_text()
