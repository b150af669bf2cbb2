"""The options and the bad-input exit every VM command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vllm_fleet.cli.output import ExitStatus, emit_json, plain
from vllm_fleet.spec import SpecError

InventoryOpt = Annotated[Path, typer.Option("--inventory", "-i", help="Ansible inventory (file or directory)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
LimitOpt = Annotated[str | None, typer.Option("--limit", "-l", help="Ansible host pattern to limit the run to")]


def spec_failure(errors: list[SpecError], as_json: bool) -> None:
    """Print every problem (or, with --json, one document of them) and exit with the bad-input code."""
    if as_json:
        emit_json({"ok": False, "errors": [
            {"source": e.source, "issues": [i.as_dict() for i in e.issues]} for e in errors
        ]})
    else:
        for e in errors:
            plain(e.render())
    raise typer.Exit(ExitStatus.BAD_INPUT)
