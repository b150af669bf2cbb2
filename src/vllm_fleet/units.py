"""Sizes and quantities, each in the meaning of the place it is written.

A spec size (`shm_size: 16g`) means what Docker means: every letter is a power of 1024, in any case, with an
optional `i` or `b` (`16g`, `16G`, `16GiB`). A Kubernetes quantity means what Kubernetes means: `m` is milli,
`k M G T P E` are powers of 1000 and `Ki Mi Gi Ti Pi Ei` powers of 1024.
"""

from __future__ import annotations

import re

_SPEC_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT])?(?:i?[bB]|i)?$")
_SPEC_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_K8S_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_K8S_FACTOR = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
               "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}


def spec_size_bytes(text: str) -> int:
    """Bytes in a spec size ('16g', '512m', '1GiB', '2048'); ValueError if it is not one."""
    m = _SPEC_SIZE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size such as 16g or 512m")
    return int(float(m.group(1)) * 1024 ** _SPEC_POWER[(m.group(2) or "").lower()])


def spec_size_mib(text: str) -> int:
    return spec_size_bytes(text) // 2**20


def k8s_quantity(text: str) -> float | None:
    """The value of a Kubernetes quantity ('16Gi', '500m', '1G'), or None if it is not one."""
    m = _K8S_QUANTITY.match(text.strip())
    return float(m.group(1)) * _K8S_FACTOR[m.group(2) or ""] if m else None


def k8s_size(size: str) -> str:
    """A spec size ('16g', '512m', '1GiB') as the Kubernetes quantity of the same bytes ('16Gi', '512Mi', '1Gi')."""
    m = _SPEC_SIZE.match(size.strip())
    if not m:
        return size
    number, unit = m.group(1), (m.group(2) or "").upper()
    return f"{number}{unit}i" if unit else number
