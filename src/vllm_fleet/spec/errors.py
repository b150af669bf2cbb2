"""Spec errors that name the field path, the bad value and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

# Field names whose values are shown redacted in every message.
SECRET_FIELDS = frozenset({"api_key", "hf_token", "token", "access_key_id", "secret_access_key",
                           "session_token", "application_credentials", "password"})

_MAX_VALUE = 80


def fail(problem: str, fix: str) -> PydanticCustomError:
    """An error a validator raises; the formatter adds the path and the value."""
    return PydanticCustomError("vllm_fleet", "{problem}", {"problem": problem, "fix": fix})


def path_text(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(spec)"


_SECRET_FLAG = re.compile(r"key|token|secret|password", re.IGNORECASE)


def redact_args(args: list[Any]) -> list[Any]:
    """Hide the values of secret-looking flags (--api-key X, --hf-token=X)."""
    out: list[Any] = []
    hide_next = False
    for arg in args:
        text = str(arg)
        if hide_next:
            out.append("<redacted>")
            hide_next = False
        elif text.startswith("-") and _SECRET_FLAG.search(text.split("=", 1)[0]):
            out.append(text.split("=", 1)[0] + "=<redacted>" if "=" in text else text)
            hide_next = "=" not in text
        else:
            out.append(arg)
    return out


def show_value(value: Any, loc: Sequence[str | int] = ()) -> str:
    if any(isinstance(p, str) and p in SECRET_FIELDS for p in loc) and isinstance(value, str):
        return f"<a literal string of {len(value)} characters, redacted>"
    if isinstance(value, list):
        value = redact_args(value)
    elif isinstance(value, dict):
        value = {k: ("<redacted>" if k in SECRET_FIELDS or _SECRET_FLAG.search(str(k)) else v)
                 for k, v in value.items()}
    text = repr(value)
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 3] + "..."
    return text


@dataclass(frozen=True)
class SpecIssue:
    path: str
    value: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} (got {self.value}). Fix: {self.fix}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "value": self.value, "problem": self.problem, "fix": self.fix}


class SpecError(ValueError):
    """One or more problems with a spec; nothing has been contacted yet."""

    def __init__(self, issues: Iterable[SpecIssue], source: str = "spec") -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.issues)} problem(s) found; nothing was changed:"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


# Fixes for pydantic's own error types, keyed by type.
_GENERIC_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove this field or check its spelling against the spec reference in README.md",
    "int_type": "give a whole number",
    "int_parsing": "give a whole number",
    "float_type": "give a number",
    "float_parsing": "give a number",
    "bool_type": "give true or false",
    "bool_parsing": "give true or false",
    "string_type": "give a string",
    "list_type": "give a list",
    "dict_type": "give a mapping",
    "model_type": "give a mapping",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "greater_than": "give a larger value",
    "greater_than_equal": "give a larger value",
    "less_than": "give a smaller value",
    "less_than_equal": "give a smaller value",
    "string_pattern_mismatch": "match the documented format",
    "too_short": "give at least one item",
}


def issues_from_validation_error(err: ValidationError, prefix: Sequence[str | int] = ()) -> list[SpecIssue]:
    issues = []
    for e in err.errors(include_url=False):
        loc = [*prefix, *[p for p in e["loc"] if not _is_union_tag(p)]]
        ctx = e.get("ctx") or {}
        if e["type"] == "vllm_fleet":
            problem, fix = ctx["problem"], ctx["fix"]
        else:
            problem = e["msg"]
            fix = _GENERIC_FIXES.get(e["type"], "see the spec reference in README.md")
        issues.append(SpecIssue(path_text(loc), show_value(e.get("input"), loc), problem, fix))
    return _dedupe(issues)


def _is_union_tag(part: str | int) -> bool:
    # pydantic inserts the member type name ("int", "list[int]", "function-after[...]") into locs.
    return isinstance(part, str) and ("[" in part or part in {"int", "str", "float", "bool"})


def _dedupe(issues: list[SpecIssue]) -> list[SpecIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        key = (issue.path, issue.problem)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
