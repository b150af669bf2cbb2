"""The test world's connection plugin (a test double's helper, tests/ansible_plugins/connection): it repeats only
the read-or-make commands whose output docker was seen to lose, and returns every other result as it came."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parent / "ansible_plugins" / "connection" / "sandbox_docker_api.py"


@pytest.fixture
def plugin() -> Any:
    spec = importlib.util.spec_from_file_location("sandbox_docker_api_under_test", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def run(plugin: Any, monkeypatch: pytest.MonkeyPatch, cmd: bytes, answers: list[tuple[int, bytes, bytes]]) -> tuple:
    calls: list[bytes] = []

    def parent_exec(self: Any, cmd: bytes, in_data: bytes | None = None, sudoable: bool = False) -> tuple:
        calls.append(cmd)
        return answers[len(calls) - 1]

    monkeypatch.setattr(plugin.docker_api.Connection, "exec_command", parent_exec)
    connection = plugin.Connection.__new__(plugin.Connection)  # exec_command reads no state of its own
    return connection.exec_command(cmd), calls


@pytest.mark.parametrize("cmd", [b"id -u && id -g",
                                 b"( umask 77 && mkdir -p \"` echo ~/.ansible/tmp `\"&& mkdir \"` echo "
                                 b"~/.ansible/tmp/ansible-tmp-1-2-3 `\" && echo ansible-tmp-1-2-3=\"` echo "
                                 b"~/.ansible/tmp/ansible-tmp-1-2-3 `\" ) && sleep 0"])
def test_a_lost_output_of_a_harmless_command_is_asked_for_again(plugin: Any, monkeypatch: pytest.MonkeyPatch,
                                                               cmd: bytes) -> None:
    result, calls = run(plugin, monkeypatch, cmd, [(0, b"", b""), (0, b"0\n0\n", b"")])
    assert result == (0, b"0\n0\n", b"") and calls == [cmd, cmd]


def test_it_gives_up_after_three_attempts_and_returns_what_docker_said(plugin: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run(plugin, monkeypatch, b"id -u && id -g", [(0, b"", b"")] * 3)
    assert result == (0, b"", b"") and len(calls) == 3


def test_any_other_command_runs_once_even_with_no_output(plugin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run(plugin, monkeypatch, b"/usr/bin/python3 && sleep 0", [(0, b"", b""), (0, b"x", b"")])
    assert result == (0, b"", b"") and len(calls) == 1
