"""The layering contracts in pyproject.toml hold for the code, and each one breaks when a wrong-way import is
planted in a copy of the package (so a contract that can never fail would show here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


# Where a copy of the collection's plugins sits beside the copied package, as .collections links the checkout.
PLUGINS = Path("collections/ansible_collections/vllmfleet/fleet/plugins")


def copy_code(tmp_path: Path) -> Path:
    """The package and the collection's plugins, copied, to plant imports in."""
    shutil.copytree(REPO / "src" / "vllm_fleet", tmp_path / "vllm_fleet")
    shutil.copytree(REPO / "plugins", tmp_path / PLUGINS)
    return tmp_path


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{package_parent}{os.pathsep}{package_parent / 'collections'}"}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=package_parent, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_code_keeps_every_contract(tmp_path: Path) -> None:
    proc = lint_imports(copy_code(tmp_path))
    assert proc.returncode == 0, proc.stdout
    assert "7 kept, 0 broken" in proc.stdout


# Each contract, and a wrong-way import planted in a module of a copy of the package that must break it.
PLANTED = {
    "The shared core imports no target": "spec/rules.py: import vllm_fleet.k8s.validation",
    "The product never imports the test world": "vllm_flags.py: import vllm_fleet.sandbox.vllm_image",
    "Only the CLI layer imports typer and rich": "vm/running/runner.py: import rich",
    "The VM and cluster wings do not import each other": "k8s/render.py: import vllm_fleet.vm.planning.plan",
    "CLI above the sandbox above the target wings": "sandbox/hosts.py: import vllm_fleet.cli.output",
    "VM rooms: running above play-time helpers": "vm/planning/plan.py: import vllm_fleet.vm.play.container",
    "Plugins import the spec and the VM wing's planning": "@plugins/filter/summary.py: import vllm_fleet.vm.running",
}


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_a_planted_wrong_way_import_breaks_its_contract(tmp_path: Path, contract: str) -> None:
    module, planted = PLANTED[contract].split(": ", 1)
    copy_code(tmp_path)
    target = (tmp_path / PLUGINS / module.removeprefix("@plugins/") if module.startswith("@plugins/")
              else tmp_path / "vllm_fleet" / module)
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    broken = [line for line in proc.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), proc.stdout



CYCLES = """
import json, sys
import grimp

graph = grimp.build_graph("vllm_fleet", cache_dir=None, exclude_type_checking_imports=True)
cycles = set()
for importer in graph.modules:
    for imported in graph.find_modules_directly_imported_by(importer):
        back = graph.find_shortest_chain(importer=imported, imported=importer)
        if back:
            ring = (importer, *back[:-1])
            start = ring.index(min(ring))
            cycles.add(ring[start:] + ring[:start])
print(json.dumps(sorted(cycles)))
"""


def import_cycles(package_parent: Path) -> list[tuple[str, ...]]:
    """Every import cycle in the package at package_parent, from import-linter's own graph (grimp), in a process
    of its own so that it reads that copy: for each direct import a -> b, the shortest chain back from b to a.
    Imports inside functions count (they run, later); imports under TYPE_CHECKING never run and do not (the spec's
    models name each other's types that way, and spec/__init__ resolves the references)."""
    import json

    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    proc = subprocess.run([sys.executable, "-c", CYCLES], cwd=package_parent, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return [tuple(c) for c in json.loads(proc.stdout)]


def test_the_package_has_no_import_cycle() -> None:
    assert import_cycles(REPO / "src") == []


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "vllm_fleet", tmp_path / "vllm_fleet")
    target = tmp_path / "vllm_fleet" / "vm" / "planning" / "plan.py"
    planted = "\n\ndef _planted() -> None:\n    import vllm_fleet.vm.planning.checks  # noqa\n"
    target.write_text(target.read_text() + planted)
    assert ("vllm_fleet.vm.planning.checks", "vllm_fleet.vm.planning.plan") in import_cycles(tmp_path)
