"""The sandbox networks: created once however many hosts start side by side (Docker itself lets two creates of one
name both succeed, and the name is then ambiguous to every `network connect`)."""

from __future__ import annotations

import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from vllm_fleet.sandbox.hosts import ensure_network

pytestmark = pytest.mark.world


def networks_named(name: str) -> list[str]:
    found = subprocess.run(["docker", "network", "ls", "--quiet", "--filter", f"name=^{name}$"],
                           capture_output=True, text=True, check=True)
    return found.stdout.split()


def test_hosts_starting_side_by_side_create_one_network_and_twins_are_removed(world: str) -> None:
    name = f"vf-net-race-{uuid.uuid4().hex[:6]}"
    try:
        # Twins, as unlocked creates side by side leave them (Docker 20.10 makes one per create while none exists),
        # are removed by the next caller.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: subprocess.run(["docker", "network", "create", name], capture_output=True,
                                                   check=False), range(4)))
        assert len(networks_named(name)) >= 2
        ensure_network(name)
        assert len(networks_named(name)) == 1
        subprocess.run(["docker", "network", "rm", name], capture_output=True, check=True)
        # Through ensure_network, callers side by side create it once.
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda _: ensure_network(name), range(6)))
        assert len(networks_named(name)) == 1
    finally:
        for net in networks_named(name):
            subprocess.run(["docker", "network", "rm", net], capture_output=True, check=False)
