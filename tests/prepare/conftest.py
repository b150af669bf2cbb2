"""Shared helpers for the GPU host preparation tests (issue 3)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_module_utils(name: str) -> ModuleType:
    """Import plugins/module_utils/<name>.py as a plain module (it has no Ansible imports)."""
    path = ROOT / "plugins" / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_vllm_fleet_test_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gpu_smi() -> ModuleType:
    return load_module_utils("gpu_smi")


@pytest.fixture(scope="session")
def daemon_json() -> ModuleType:
    return load_module_utils("daemon_json")
