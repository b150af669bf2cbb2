"""Cluster-only rules on top of the shared spec."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_fleet.spec.errors import SpecIssue
from vllm_fleet.spec.model import Deployment


def cluster_rules(dep: Deployment) -> Iterator[SpecIssue]:
    yield from ()
