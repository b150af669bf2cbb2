"""Each role's README variable table says exactly what its meta/argument_specs.yml says, over all its entry
points."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if (p / "tasks").is_dir())


def spec_rows(role: Path) -> dict[str, tuple[str, str]]:
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    rows: dict[str, tuple[str, str]] = {}
    for entry, point in spec["argument_specs"].items():
        for name, opt in (point.get("options") or {}).items():
            default = "(required)" if opt.get("required") else _render_default(opt.get("default"))
            row = (opt.get("type", "str"), default)
            assert rows.setdefault(name, row) == row, f"{role.name}.{name}: entry point {entry} declares it otherwise"
            rows[name] = row
    return rows


def _render_default(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def readme_rows(role: Path) -> dict[str, tuple[str, str]]:
    text = (role / "README.md").read_text()
    rows = {}
    in_table = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells and cells[:4] == ["Variable", "Type", "Default", "Description"]:
            in_table = True
            continue
        if in_table and cells and set(cells[0]) <= {"-", ":", " "}:
            continue
        if in_table and cells:
            m = re.fullmatch(r"`([a-z0-9_]+)`", cells[0])
            assert m, f"{role.name}: variable cell {cells[0]!r} is not a `name`"
            default = cells[2].strip("`")
            rows[m.group(1)] = (cells[1].strip("`"), default)
        elif in_table:
            in_table = False
    return rows


def test_there_are_roles() -> None:
    assert ROLES, "no roles found"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_readme_table_matches_argument_specs(role: Path) -> None:
    assert (role / "meta" / "argument_specs.yml").is_file(), f"{role.name} has no meta/argument_specs.yml"
    spec, readme = spec_rows(role), readme_rows(role)
    assert set(readme) == set(spec), (
        f"{role.name}: only in README {sorted(set(readme) - set(spec))}, "
        f"only in argument_specs {sorted(set(spec) - set(readme))}"
    )
    for name, (typ, default) in spec.items():
        assert readme[name] == (typ, default), f"{role.name}.{name}: README {readme[name]} != spec {(typ, default)}"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_default_is_declared(role: Path) -> None:
    defaults_file = role / "defaults" / "main.yml"
    if not defaults_file.exists():
        return
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    spec = spec_rows(role)
    undeclared = sorted(set(defaults) - set(spec))
    assert not undeclared, f"{role.name}: defaults not in argument_specs: {undeclared}"
    for name in defaults:
        assert name.startswith(role.name + "_"), f"{role.name}: default {name} lacks the role prefix"
