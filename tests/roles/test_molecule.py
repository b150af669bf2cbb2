"""Every role's Molecule scenarios: create, converge, idempotence, verify, destroy — offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(REPO.glob("roles/*/molecule/*/molecule.yml"))

pytestmark = [pytest.mark.world, pytest.mark.molecule, pytest.mark.slow, pytest.mark.timeout(1800)]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAILURE = re.compile(r"fatal: \[|failed: \[|FAILED!|UNREACHABLE!|Idempotence test failed")
# Molecule's line for a finished step: "INFO     default ➜ idempotence: Executed: Successful".
VERDICT = re.compile(r"^(?:INFO\s+)?\S+ ➜ (\w+): Executed: (\w+)$", re.MULTILINE)


def failure_excerpt(output: str) -> str:
    """What a failing scenario's output says about the failure: the task lines that failed, changed on the second
    run or were unreachable (each with its task's name and a few lines of its result), then the output's end."""
    lines = ANSI.sub("", output).splitlines()
    picked: list[str] = []
    for i, line in enumerate(lines):
        if FAILURE.search(line):
            task = next((lines[j] for j in range(i, max(i - 30, -1), -1) if "TASK [" in lines[j]), "")
            picked += ["...", task, *lines[i:i + 8]]
    return "\n".join([*picked[-120:], "--- the output's end:", *lines[-40:]])


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
    assert proc.returncode == 0, (f"molecule test failed for {role_dir.name}:{scenario.parent.name}\n"
                                  + failure_excerpt(proc.stdout + proc.stderr))
    # Molecule's own verdict on each step of the sequence, not the step's name somewhere in the output.
    verdicts = dict(VERDICT.findall(ANSI.sub("", proc.stdout + proc.stderr)))
    assert verdicts.get("idempotence") == "Successful" and verdicts.get("verify") == "Successful", verdicts
