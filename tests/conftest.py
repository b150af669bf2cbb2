"""Shared fixtures: the test world (a Docker engine, the host image) and sandbox container hosts."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))


def _collection_on_path() -> None:
    """Tests import the collection's plugins under their collection name, through the link in .collections."""
    from vllm_fleet.vm.paths import ensure_collection_link

    ensure_collection_link()
    collections = str(REPO / ".collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)


_collection_on_path()


@pytest.fixture(scope="session")
def world() -> str:
    """A running Docker engine and the Debian 12 systemd host image; returns the image tag."""
    from vllm_fleet.sandbox.engine import ensure_engine
    from vllm_fleet.sandbox.hostimage import ensure_host_image
    from vllm_fleet.vm.paths import ensure_collection_link

    ensure_collection_link()
    ensure_engine()
    tag, _ = ensure_host_image()
    return tag


@pytest.fixture
def sandbox_hosts(world: str) -> Iterator[Callable[..., list[str]]]:
    """Start container hosts on demand; every one is removed after the test."""
    from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up

    started: list[str] = []

    def start(count: int = 1, prefix: str = "t", **kwargs: object) -> list[str]:
        names = []
        for _ in range(count):
            name = f"vf-{prefix}-{uuid.uuid4().hex[:6]}"
            started.append(name)
            host_up(HostSpec(name=name, image=world, **kwargs))  # type: ignore[arg-type]
            names.append(name)
        return names

    yield start
    for name in started:
        host_down(name)


def write_inventory(path: Path, hosts: list[str], spec: dict, **host_vars: object) -> Path:
    import yaml

    inv = {
        "vllm_hosts": {
            "hosts": {
                h: {"ansible_connection": "community.docker.docker_api", "ansible_user": "root", **host_vars}
                for h in hosts
            },
            "vars": {"vllm_fleet_spec": spec},
        }
    }
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path
