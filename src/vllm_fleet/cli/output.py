"""What every `vllm-fleet` command prints through, and the exit codes it ends with.

Output never depends on a terminal's width when there is none (CI, pipes, `> log`): messages are not wrapped,
and tables are laid out at a fixed width.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console

NO_TERMINAL_WIDTH = 200


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1  # the run started and something on a host or cluster failed
    BAD_INPUT = 2  # the input was refused before anything was contacted


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else NO_TERMINAL_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


err = _console(stderr=True)
out = _console(stderr=False)


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def plain(text: str) -> None:
    """A message to stderr exactly as written: no markup, no highlighting, no wrapping."""
    err.print(text, markup=False, highlight=False)
