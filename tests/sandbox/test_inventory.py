"""The one sandbox-inventory writer the tests and benchmarks share: what Ansible reads back from its file."""

from __future__ import annotations

from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from vllm_fleet.sandbox.inventory import cpu_host, write_inventory


def read(path: Path) -> tuple[InventoryManager, VariableManager]:
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(path)])
    return inv, VariableManager(loader=loader, inventory=inv)


def test_serving_gateway_and_monitoring_groups_with_their_variables_reach_ansible(tmp_path: Path) -> None:
    spec = {"services": [{"name": "chat", "storage_uri": "file:///m"}]}
    path = write_inventory(tmp_path / "hosts.yml", {"a": cpu_host("10.0.0.1", "192.168.0.1", image_archive="/i.tar"),
                                                    "b": {"vllm_fleet_spec": {"services": []}}}, spec,
                           connection="sandbox_docker_api", gateways={"a": None, "vars": {"gateway_pki_dir": "/p"}},
                           monitoring={"b": None}, vllm_fleet_nvidia=False)
    inv, variables = read(path)
    assert [h.name for h in inv.get_hosts("vllm_hosts")] == ["a", "b"]
    assert [h.name for h in inv.get_hosts("vllm_gateways")] == ["a"]
    assert [h.name for h in inv.get_hosts("vllm_monitoring")] == ["b"]
    a = variables.get_vars(host=inv.get_host("a"), include_hostvars=False)
    b = variables.get_vars(host=inv.get_host("b"), include_hostvars=False)
    assert a["ansible_connection"] == "sandbox_docker_api" and a["ansible_user"] == "root"
    assert (a["vllm_fleet_address"], a["vllm_fleet_backend_address"]) == ("10.0.0.1", "192.168.0.1")
    assert (a["vllm_server_image_source"], a["vllm_server_image_archive_remote"]) == ("archive", "/i.tar")
    assert a["vllm_fleet_spec"] == spec and a["gateway_pki_dir"] == "/p" and a["vllm_fleet_nvidia"] is False
    # A host's own variables win over the group's and over the keyword variables of every host.
    assert b["vllm_fleet_spec"] == {"services": []} and "gateway_pki_dir" not in b


def test_a_cpu_host_without_an_archive_takes_the_image_already_present() -> None:
    host = cpu_host()
    assert host == {"vllm_fleet_nvidia": False, "docker_source": "distribution", "vllm_server_image_source": "present"}
