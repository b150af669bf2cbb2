"""A strict check of a manifest against the kserve SDK's models (and the kubernetes client's, which they use).

The SDK's own deserialisation drops keys it does not know; this walks `attribute_map`/`openapi_types`
and reports every unknown key and every value of the wrong type, with its path.
"""

from __future__ import annotations

import re
from typing import Any

import kserve
import kubernetes.client.models as k8s_models

_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\((?:str), (.+)\)|Dict\[str, (.+)\])$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (str, int, dict, list),
    "datetime": (str,), "date": (str,), "ResourceQuantity": (str, int),
}


def model_class(name: str) -> type:
    for module in (kserve, kserve.models, k8s_models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise LookupError(f"no model class {name}")


def check(value: Any, type_name: str, path: str = "") -> list[str]:
    """Every problem found in `value` as an instance of the OpenAPI type `type_name`."""
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list for {type_name}, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in check(v, m.group(1), f"{path}[{i}]")]
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping for {type_name}, got {type(value).__name__}"]
        inner = m.group(1) or m.group(2)
        return [p for k, v in value.items() for p in check(v, inner, f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name])
        if type_name == "int" and isinstance(value, bool):
            ok = False
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {type(value).__name__}"]
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        attr = by_json_key.get(key)
        if attr is None:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        problems += check(item, cls.openapi_types[attr], f"{path}.{key}" if path else key)
    return problems


def check_inference_service(manifest: dict[str, Any]) -> list[str]:
    return check(manifest, "V1beta1InferenceService")
