"""Where the project's playbooks live, and the link that makes the repo an installed collection."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("VLLM_FLEET_ROOT", Path(__file__).resolve().parents[2]))
COLLECTIONS_DIR = PROJECT_ROOT / ".collections"
COLLECTION_LINK = COLLECTIONS_DIR / "ansible_collections" / "vllmfleet" / "fleet"


def ensure_collection_link() -> Path:
    """Point .collections/ansible_collections/vllmfleet/fleet at the repo root (ansible.cfg looks there)."""
    if COLLECTION_LINK.is_symlink() and COLLECTION_LINK.resolve() == PROJECT_ROOT.resolve():
        return COLLECTION_LINK
    COLLECTION_LINK.parent.mkdir(parents=True, exist_ok=True)
    if COLLECTION_LINK.is_symlink() or COLLECTION_LINK.exists():
        COLLECTION_LINK.unlink()
    COLLECTION_LINK.symlink_to(os.path.relpath(PROJECT_ROOT, COLLECTION_LINK.parent))
    return COLLECTION_LINK
