"""Before `make test`: is there memory for the test world, with whatever else this machine runs?

The test world's peak (two serving hosts with up to five vLLM engines, Molecule instances and origins beside them)
was measured at about 11 GiB on 2 cores. The demo's host (`make demo`) keeps three engines running after it
finishes; where the two cannot both fit, the run says so at once, with the command that frees the memory, instead
of failing half an hour in.

    python -m vllm_fleet.sandbox.memory [--need-gib 12]     (exit 1, and why, when the memory is short)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from vllm_fleet.sandbox.hosts import LABEL

# The test world's measured peak, with a margin.
NEED_GIB = 12.0


def available_gib(meminfo: str) -> float:
    """MemAvailable of /proc/meminfo, in GiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    raise ValueError("no MemAvailable in /proc/meminfo")


def running_sandbox_hosts() -> dict[str, float]:
    """{name: GiB in use} of the sandbox hosts running now (the demo's among them), from docker stats."""
    names = subprocess.run(["docker", "ps", "--filter", f"label={LABEL}", "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=False).stdout.split()
    if not names:
        return {}
    stats = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
                           capture_output=True, text=True, check=False).stdout
    used = {}
    for line in stats.splitlines():
        name, usage = line.split(" ", 1)
        used[name] = _gib(usage.split("/")[0].strip())
    return used


def _gib(size: str) -> float:
    units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
    for unit in sorted(units, key=len, reverse=True):
        if size.endswith(unit):
            return float(size[: -len(unit)]) * units[unit] / 1024**3
    return 0.0


def shortage(available: float, need: float, hosts: dict[str, float]) -> str | None:
    """Why the run cannot start, with the fix; None when the memory is there."""
    if available >= need:
        return None
    held = ", ".join(f"{name} ({gib:.1f} GiB)" for name, gib in sorted(hosts.items(), key=lambda kv: -kv[1]))
    fix = ("; remove them first: " + " && ".join(f"vllm-fleet sandbox down {name}" for name in sorted(hosts))
           if hosts else "; stop what else uses it first")
    return (f"make test needs about {need:.0f} GiB of free memory for its test world, and this machine has "
            f"{available:.1f} GiB available" + (f"; sandbox hosts running now hold some: {held}" if hosts else "")
            + fix + " (the demo's host is vllm-fleet-sandbox-0; `make demo` brings it back)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--need-gib", type=float, default=NEED_GIB)
    args = parser.parse_args()
    available = available_gib(Path("/proc/meminfo").read_text())
    why = shortage(available, args.need_gib, running_sandbox_hosts() if available < args.need_gib else {})
    if why:
        print(why, file=sys.stderr)
        return 1
    print(f"memory: {available:.1f} GiB available, the test world needs about {args.need_gib:.0f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
