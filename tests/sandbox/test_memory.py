"""`make test`'s memory preflight (vllm_fleet.sandbox.memory): it stops at once, naming the hosts that hold memory
and the command that frees it, instead of failing half an hour in."""

from __future__ import annotations

import pytest

from vllm_fleet.sandbox.memory import _gib, available_gib, shortage


def test_available_memory_is_read_from_meminfo() -> None:
    meminfo = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:    8388608 kB\n"
    assert available_gib(meminfo) == 8.0
    with pytest.raises(ValueError, match="MemAvailable"):
        available_gib("MemTotal: 1 kB\n")


def test_docker_stats_sizes_are_read_in_their_units() -> None:
    assert _gib("1.5GiB") == 1.5 and _gib("512MiB") == 0.5 and _gib("0B") == 0.0
    assert _gib("2GB") == pytest.approx(2e9 / 1024**3)


def test_enough_memory_lets_the_run_start() -> None:
    assert shortage(20.0, 12.0, {"vllm-fleet-sandbox-0": 4.0}) is None


def test_a_shortage_names_the_demo_host_and_the_command_that_frees_its_memory() -> None:
    why = shortage(9.5, 12.0, {"vllm-fleet-sandbox-0": 4.2, "other": 0.3})
    assert why is not None
    assert "needs about 12 GiB of free memory" in why and "has 9.5 GiB available" in why
    assert "vllm-fleet-sandbox-0 (4.2 GiB), other (0.3 GiB)" in why
    assert "vllm-fleet sandbox down other && vllm-fleet sandbox down vllm-fleet-sandbox-0" in why
    assert shortage(9.5, 12.0, {}) is not None and "stop what else uses it" in str(shortage(9.5, 12.0, {}))
