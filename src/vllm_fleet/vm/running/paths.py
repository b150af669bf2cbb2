"""Where the collection's playbooks are: a source checkout (the repo root is the collection), or the installed
collection `vllmfleet.fleet` beside a pip-installed vllm-fleet."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

COLLECTION = "vllmfleet.fleet"


class CollectionNotFound(RuntimeError):
    """Neither a source checkout nor an installed vllmfleet.fleet collection was found."""


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parents[4]
    return root if (root / "galaxy.yml").is_file() and (root / "playbooks").is_dir() else None


@lru_cache(maxsize=1)
def collection_root() -> Path:
    """VLLM_FLEET_ROOT if set, else the source checkout this package runs from, else the installed collection."""
    if os.environ.get("VLLM_FLEET_ROOT"):
        return Path(os.environ["VLLM_FLEET_ROOT"])
    checkout = _checkout()
    if checkout is not None:
        return checkout
    from ansible import constants

    namespace, name = COLLECTION.split(".")
    for base in constants.COLLECTIONS_PATHS:  # where ansible-playbook itself looks, in its order
        candidate = Path(base).expanduser() / "ansible_collections" / namespace / name
        if (candidate / "playbooks").is_dir():
            return candidate
    raise CollectionNotFound(
        f"the Ansible collection {COLLECTION} is not installed where ansible looks (ANSIBLE_COLLECTIONS_PATH); "
        "install it with `ansible-galaxy collection install vllmfleet-fleet-<version>.tar.gz`, or set "
        "VLLM_FLEET_ROOT to a checkout of vllm-fleet")


def playbook(name: str) -> Path:
    return collection_root() / "playbooks" / name


def ansible_config() -> Path | None:
    """The checkout's ansible.cfg (collections path, callbacks); an installed collection uses the user's own."""
    cfg = collection_root() / "ansible.cfg"
    return cfg if cfg.is_file() else None


def ensure_collection_link() -> Path | None:
    """In a checkout, point .collections/ansible_collections/vllmfleet/fleet at the repo root (ansible.cfg
    looks there). An installed collection needs no link."""
    root = _checkout() if not os.environ.get("VLLM_FLEET_ROOT") else Path(os.environ["VLLM_FLEET_ROOT"])
    if root is None:
        return None
    link = root / ".collections" / "ansible_collections" / "vllmfleet" / "fleet"
    if link.is_symlink() and link.resolve() == root.resolve():
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(root, link.parent))
    return link
