"""The cost ledger of a test run: per test area, its wall seconds, deploy runs, other playbook runs, vLLM engine
starts and benchmark requests, with the totals.

Every figure is recorded where it happens, as one JSON line in the file $VLLM_FLEET_LEDGER names:
- playbook runs, by the Ansible callback `tests/ansible_plugins/callback/vllm_fleet_ledger.py` (every
  ansible-playbook the tests start, directly, through the CLI or through Molecule);
- vLLM engine starts, from the sandbox hosts' own Docker events (`io.vllm-fleet.service` containers that started,
  `engine_starts` below): after each real-vLLM test for the serving world's hosts, and when any other sandbox host
  is removed;
- benchmark requests, from the benchmark gates' verdicts and `vllm-fleet bench` reports;
- seconds, by pytest's summary (setup, call and teardown of an area's tests; on parallel workers the sum).
A line names the test it belongs to through PYTEST_CURRENT_TEST, which pytest sets and every process it starts
inherits. `python -m vllm_fleet.sandbox.ledger` prints the table (`make test` does, at the end of every run).
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

LEDGER_ENV = "VLLM_FLEET_LEDGER"
KINDS = ("seconds", "deploys", "playbooks", "engine_starts", "bench_requests")
HEADINGS = {"seconds": "wall s", "deploys": "deploy runs", "playbooks": "other playbook runs",
            "engine_starts": "vLLM engine starts", "bench_requests": "benchmark requests"}
# Tests of these directories are one area per file: the serving world's steps differ too much to add up, and the
# roles' Molecule scenarios cost another order than their docs check.
SPLIT_BY_FILE = {"serving", "roles"}


def area_of(nodeid: str) -> str:
    """tests/serving/test_gateway_e2e.py::x -> serving:gateway_e2e; tests/weights/test_fetch.py::x -> weights;
    tests/roles/test_molecule.py::x -> roles:molecule; a file at the root (none now) -> its stem."""
    parts = nodeid.split("::", 1)[0].split("/")
    stem = parts[-1].removeprefix("test_").removesuffix(".py")
    if len(parts) > 2:
        return f"{parts[1]}:{stem}" if parts[1] in SPLIT_BY_FILE else parts[1]
    return stem


def current_test() -> str:
    """The node id of the test running now in this process or the pytest process that started it, if any."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").split(" ", 1)[0]


def record(kind: str, count: float, test: str | None = None, **detail: Any) -> None:
    """Append one figure to the ledger (nothing when no ledger is set: a run outside `make test`)."""
    path = os.environ.get(LEDGER_ENV)
    if not path or not count:
        return
    assert kind in KINDS, kind
    line = json.dumps({"kind": kind, "count": count, "test": test if test is not None else current_test(),
                       **detail})
    with open(path, "a") as out:  # one short write: lines of parallel workers do not interleave
        out.write(line + "\n")


def table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ledger at `path`: one row per area, most seconds first, and the totals."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
    for line in path.read_text().splitlines() if path.is_file() else []:
        entry = json.loads(line)
        area = entry.get("area") or (area_of(entry["test"]) if entry.get("test") else "(outside any test)")
        sums[area][entry["kind"]] += float(entry["count"])
    header = ["area", *(HEADINGS[k] for k in KINDS)]
    rows = [[area, *(f"{figures[k]:.0f}" for k in KINDS)]
            for area, figures in sorted(sums.items(), key=lambda kv: -kv[1]["seconds"])]
    rows.append(["total", *(f"{sum(f[k] for f in sums.values()):.0f}" for k in KINDS)])
    return header, rows


def render(path: Path) -> str:
    header, rows = table(path)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                       strict=True)))
             for row in [header, *rows]]
    return "\n".join(lines)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(LEDGER_ENV, ".cache/ledger.jsonl"))
    print("== cost ledger per test area (seconds of tests on parallel workers are summed) ==")
    print(render(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
