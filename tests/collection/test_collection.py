"""The repo root is an installable Ansible collection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900, **kwargs)  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_and_collection_work_outside_the_checkout(tmp_path: Path) -> None:
    """Built wheel + built collection in a fresh venv, run from a directory that is not the checkout: the core
    alone renders cluster manifests without the Pulumi SDK; with the vm extra it validates an inventory, finds
    the deploy playbook in the installed collection and ansible-playbook accepts that playbook's syntax."""
    dist, outside, collections = tmp_path / "dist", tmp_path / "elsewhere", tmp_path / "collections"
    outside.mkdir()
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                  str(REPO)])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("vllm_fleet-*.whl")
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    assert _run([str(galaxy), "collection", "build", str(REPO), "--output-path", str(dist)]).returncode == 0
    (archive,) = dist.glob("vllmfleet-fleet-*.tar.gz")

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    pip, py, bin_dir = venv / "bin" / "pip", venv / "bin" / "python", venv / "bin"
    core = _run([str(pip), "install", "-q", str(wheel)])
    assert core.returncode == 0, core.stderr[-3000:]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_COLLECTIONS_PATH": str(collections)}
    assert _run([str(py), "-c", "import pulumi"], cwd=outside, env=env).returncode != 0
    rendered = _run([str(bin_dir / "vllm-fleet"), "k8s", "render", "--stack-config",
                     str(REPO / "pulumi" / "Pulumi.example.yaml")], cwd=outside, env=env)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: InferenceService" in rendered.stdout

    vm = _run([str(pip), "install", "-q", f"{wheel}[vm]"])
    assert vm.returncode == 0, vm.stderr[-3000:]
    installed = _run([str(bin_dir / "ansible-galaxy"), "collection", "install", str(archive), "-p", str(collections)],
                     cwd=outside, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    found = _run([str(py), "-c",
                  "from vllm_fleet.vm.running.paths import playbook; print(playbook('deploy-vllm.yml'))"],
                 cwd=outside, env=env)
    assert found.returncode == 0, found.stderr
    deploy = Path(found.stdout.strip())
    assert deploy.is_file() and collections in deploy.parents
    inventory = shutil.copytree(REPO / "inventories" / "gpu_hosts", outside / "inventory")
    valid = _run([str(bin_dir / "vllm-fleet"), "validate", "-i", str(inventory), "--json"], cwd=outside, env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert json.loads(valid.stdout)["ok"] is True
    syntax = _run([str(bin_dir / "ansible-playbook"), "--syntax-check", "-i", str(inventory), str(deploy)],
                  cwd=outside, env=env)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


def test_ansible_doc_lists_every_filter_the_collection_exports() -> None:
    import importlib

    from vllm_fleet.vm.running.paths import ensure_collection_link

    ensure_collection_link()
    exported = set()
    for path in (REPO / "plugins" / "filter").glob("*.py"):
        module = importlib.import_module(f"ansible_collections.vllmfleet.fleet.plugins.filter.{path.stem}")
        exported |= set(module.FilterModule().filters())
    doc = Path(sys.executable).parent / "ansible-doc"
    proc = _run([str(doc), "-t", "filter", "-l", "vllmfleet.fleet", "--json"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    listed = {name.removeprefix("vllmfleet.fleet.") for name in json.loads(proc.stdout)}
    assert exported and listed == exported


def test_a_checkout_is_found_as_the_collection_and_linked_where_ansible_cfg_looks(tmp_path: Path) -> None:
    """In a clean clone nothing is linked yet: the package finds its checkout by its own place in it, and links
    .collections/ansible_collections/vllmfleet/fleet to it (a copy of the tree, so the real link is not touched)."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "src", clone / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("galaxy.yml", "ansible.cfg"):
        shutil.copyfile(REPO / name, clone / name)
    (clone / "playbooks").mkdir()
    code = ("from vllm_fleet.vm.running.paths import collection_root, ensure_collection_link; "
            "print(ensure_collection_link()); print(collection_root())")
    env = {k: v for k, v in os.environ.items() if k != "VLLM_FLEET_ROOT"} | {"PYTHONPATH": str(clone / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    link, root = proc.stdout.split()
    assert Path(link) == clone / ".collections" / "ansible_collections" / "vllmfleet" / "fleet"
    assert Path(link).resolve() == clone.resolve() and Path(root) == clone
