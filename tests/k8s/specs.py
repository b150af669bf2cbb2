"""The spec files the k8s tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
REPO = HERE.parents[1]
GOOD = sorted((HERE / "good_specs").glob("*.yaml"))
BAD = sorted((HERE / "bad_specs").glob("*.yaml"))
EXAMPLE_STACK = REPO / "pulumi" / "Pulumi.example.yaml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


