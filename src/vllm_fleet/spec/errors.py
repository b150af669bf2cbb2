"""Spec errors that name the field path, the bad value and the fix."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

# Field names whose values are shown redacted in every message, and the shape of a secret-bearing name.
SECRET_FIELDS = frozenset({"api_key", "hf_token", "modelscope_token", "token", "access_key_id", "secret_access_key",
                           "session_token", "application_credentials", "password", "credentials", "key",
                           "webhook_url"})
_SECRET_NAME = re.compile(r"(^|[_-])(api[_-]?key|token|secret|secret[_-]access[_-]key|access[_-]key[_-]id|password|"
                          r"passwd|credentials?)$", re.IGNORECASE)
# Prefixes of well-known credential formats: OpenAI-style, Hugging Face, AWS, GitHub, GitLab, Slack, Google.
_SECRET_PREFIXES = ("sk-", "hf_", "AKIA", "ASIA", "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-",
                    "ya29.", "AIza")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """A field or variable name that holds a secret (api_key, HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...)."""
    return name in SECRET_FIELDS or bool(_SECRET_NAME.search(name))


def looks_like_secret(text: str) -> bool:
    """A value shaped like a credential rather than a name, a path or a URL: a known token prefix, the shape of an
    AWS secret key, or a long unbroken mixed-case string with digits or of high entropy (names are UPPER_SNAKE or
    lower-case; model ids, paths and URLs have separators)."""
    t = text.strip()
    if len(t) >= 12 and t.startswith(_SECRET_PREFIXES):
        return True
    mixed = any(c.islower() for c in t) and any(c.isupper() for c in t) and any(c.isdigit() for c in t)
    if mixed and re.fullmatch(r"[A-Za-z0-9/+]{40}", t):
        return True
    if re.search(r"[\s/:.@-]", t):
        return False
    if len(t) >= 20 and mixed:
        return True
    if len(t) >= 32:
        counts = Counter(t)
        return -sum(n / len(t) * math.log2(n / len(t)) for n in counts.values()) >= 4.5
    return False


def url_has_credentials(text: str) -> bool:
    return bool(_URL_USERINFO.search(text))


def redact_url(text: str) -> str:
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}<redacted>@", text)

_MAX_VALUE = 80


def fail(problem: str, fix: str) -> PydanticCustomError:
    """An error a validator raises; the formatter adds the path and the value."""
    return PydanticCustomError("vllm_fleet", "{problem}", {"problem": problem, "fix": fix})


def matching(pattern: re.Pattern[str], problem: str, fix: str, *, max_length: int | None = None) -> AfterValidator:
    """A field validator (for Annotated[str, ...]) that refuses a value the pattern does not match, or longer than
    max_length, with the problem and its fix."""

    def check(value: str) -> str:
        if (max_length is not None and len(value) > max_length) or not pattern.match(value):
            raise fail(problem, fix)
        return value

    return AfterValidator(check)


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


def _redacted(value: Any) -> Any:
    """The value with everything secret-shaped hidden: URL credentials, token-like strings, secret-named keys."""
    if isinstance(value, str):
        if looks_like_secret(value):
            return f"<a string of {len(value)} characters that looks like a secret, redacted>"
        return redact_url(value)
    if isinstance(value, list):
        return [_redacted(v) for v in redact_args(value)]
    if isinstance(value, dict):
        return {k: ("<redacted>" if isinstance(v, str) and is_secret_name(str(k)) else _redacted(v))
                for k, v in value.items()}
    return value


def show_value(value: Any, loc: Sequence[str | int] = ()) -> str:
    """How a value appears in an error: never a secret, whatever field it was given in."""
    if any(isinstance(p, str) and is_secret_name(p) for p in loc) and isinstance(value, str):
        return f"<a literal string of {len(value)} characters, redacted>"
    text = repr(_redacted(value))
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


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through Optional, list[...] and dict[..., ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model that sits at `loc` under `model` (list indexes and dict keys skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            current = _model_in(field.annotation)
    return list(current.model_fields) if current is not None else []


def issues_from_validation_error(err: ValidationError, prefix: Sequence[str | int] = (),
                                 model: type[BaseModel] | None = None) -> list[SpecIssue]:
    """One issue per pydantic error; with the validated `model`, a misspelled key is answered with the nearest
    field's name."""
    import difflib

    issues = []
    for e in err.errors(include_url=False):
        own = [p for p in e["loc"] if not _is_union_tag(p)]
        loc = [*prefix, *own]
        ctx = e.get("ctx") or {}
        if e["type"] == "vllm_fleet":
            problem, fix = ctx["problem"], ctx["fix"]
        else:
            problem = e["msg"]
            fix = _GENERIC_FIXES.get(e["type"], "see the spec reference in README.md")
        if e["type"] == "extra_forbidden" and model is not None and own and isinstance(own[-1], str):
            close = difflib.get_close_matches(own[-1], _fields_at(model, own[:-1]), n=1, cutoff=0.6)
            if close:
                fix = f"did you mean {close[0]}?"
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
