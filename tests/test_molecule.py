"""Every role's Molecule scenarios: create, converge, idempotence, verify, destroy — offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(REPO.glob("roles/*/molecule/*/molecule.yml"))

pytestmark = [pytest.mark.world, pytest.mark.molecule, pytest.mark.slow, pytest.mark.timeout(1800)]


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
    with_scenario = {p.parents[2].name for p in SCENARIOS}
    assert roles and set(roles) <= with_scenario, f"roles without a Molecule scenario: {set(roles) - with_scenario}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{p.parents[2].name}:{p.parent.name}" for p in SCENARIOS])
def test_scenario(world: str, scenario: Path) -> None:
    role_dir = scenario.parents[2]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario.parent.name],
        cwd=role_dir, env=env, capture_output=True, text=True, check=False, timeout=1500,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"molecule test failed for {role_dir.name}:{scenario.parent.name}\n{tail}"
    assert "idempotence" in (proc.stdout + proc.stderr).lower()
