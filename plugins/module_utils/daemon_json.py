"""Merge settings into Docker's daemon.json without losing what others put there (plain Python, unit-tested)."""



import copy
import json


class DaemonJsonError(ValueError):
    """The existing daemon.json is not a JSON object; it is never overwritten then."""


def load(text):
    """Parse daemon.json text; empty or whitespace-only text is an empty config."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        message = f"daemon.json is not valid JSON ({exc}); fix or remove it, it is left untouched"
        raise DaemonJsonError(message) from exc
    if not isinstance(data, dict):
        raise DaemonJsonError(f"daemon.json must hold a JSON object, found {type(data).__name__}")
    return data


def _deep_set(target, settings):
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_set(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _deep_default(target, defaults):
    for key, value in defaults.items():
        if key not in target:
            target[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            _deep_default(target[key], value)


def merge(current, settings=None, defaults=None, remove_if_equal=None):
    """Return a new config: ``settings`` deep-merged over ``current`` (they win), ``defaults`` only where absent,
    and each key of ``remove_if_equal`` dropped when its current value equals the given one.

    Nested objects are merged key by key; lists and scalars are replaced whole. Keys nobody mentions survive.
    """
    result = copy.deepcopy(current)
    for key, value in (remove_if_equal or {}).items():
        if key in result and result[key] == value:
            del result[key]
    _deep_set(result, settings or {})
    _deep_default(result, defaults or {})
    return result


def dump(config):
    """The text written to disk: stable, two-space indented, trailing newline."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
