"""Print a role's README variable table from its meta/argument_specs.yml (run: python tests/prepare/role_table.py ROLE).

Uses the same default rendering as tests/roles/test_role_docs.py, so a regenerated table always matches.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def render_default(opt: dict) -> str:
    if opt.get("required"):
        return "(required)"
    value = opt.get("default")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (list, dict)):
        return "`" + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip() + "`"
    return f"`{value}`" if str(value) else ""


def table(role: str) -> str:
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, opt in spec["argument_specs"]["main"]["options"].items():
        raw = opt.get("description", "")
        desc = raw if isinstance(raw, str) else " ".join(raw)
        if opt.get("choices"):
            desc += " One of " + ", ".join(f"`{c}`" for c in opt["choices"]) + "."
        desc = re.sub(r"C\(([^)]*)\)", r"`\1`", desc)
        lines.append(f"| `{name}` | {opt.get('type', 'str')} | {render_default(opt)} | {desc.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1]))
