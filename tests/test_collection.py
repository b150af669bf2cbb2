"""The repo root is an installable Ansible collection."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_collection_builds_with_roles_and_plugins(tmp_path: Path) -> None:
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    proc = subprocess.run([str(galaxy), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (archive,) = tmp_path.glob("vllmfleet-fleet-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert "plugins/action/fleet_plan.py" in names
    assert any(n.startswith("roles/") for n in names)
    assert not any(n.startswith((".venv", ".collections", "tests/", "src/")) for n in names)
