"""The test world's connection plugin (a test double's helper, tests/ansible_plugins/connection): it repeats only
the read-or-make commands whose output docker was seen to lose, asks the API again only where that runs nothing,
returns every other result as it came, and records each anomaly without the command's input or output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleConnectionFailure

PLUGIN = Path(__file__).resolve().parents[1] / "ansible_plugins" / "connection" / "sandbox_docker_api.py"


@pytest.fixture
def plugin() -> Any:
    spec = importlib.util.spec_from_file_location("sandbox_docker_api_under_test", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def no_pause(plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(plugin, "PAUSE", 0)
    monkeypatch.setenv(plugin.LOG_ENV, str(tmp_path / "connection.log"))


def run(plugin: Any, monkeypatch: pytest.MonkeyPatch, cmd: bytes, answers: list[Any],
        in_data: bytes | None = None) -> tuple:
    """exec_command over docker_api's, which gives each answer in turn (an exception is raised)."""
    calls: list[bytes] = []

    def parent_exec(self: Any, cmd: bytes, in_data: bytes | None = None, sudoable: bool = False) -> tuple:
        calls.append(cmd)
        answer = answers[len(calls) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(plugin.docker_api.Connection, "exec_command", parent_exec)
    connection = plugin.Connection.__new__(plugin.Connection)  # exec_command reads no state of its own
    return connection.exec_command(cmd, in_data=in_data), calls


# Ansible's temporary-directory command, as ansible-core 2.19 sends it.
MKDTEMP = (b"( umask 77 && mkdir -p \"` echo ~/.ansible/tmp `\"&& mkdir \"` echo "
           b"~/.ansible/tmp/ansible-tmp-1-2-3 `\" && echo ansible-tmp-1-2-3=\"` echo "
           b"~/.ansible/tmp/ansible-tmp-1-2-3 `\" ) && sleep 0")


def test_a_lost_output_of_a_harmless_command_is_asked_for_again(plugin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = b"id -u && id -g"
    result, calls = run(plugin, monkeypatch, cmd, [(0, b"", b""), (0, b"0\n0\n", b"")])
    assert result == (0, b"0\n0\n", b"") and calls == [cmd, cmd]


def test_the_temporary_directory_command_is_asked_again_so_that_a_first_run_that_made_it_does_not_fail_it(
        plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Seen in CI: the first run made the directory and docker lost its output; the repeat, run as it was, failed
    with exit code 1 twice (`mkdir` of a directory that exists). Run in a real shell: the first run as sent, then
    the command the plugin sends again, which finds the same directory and prints it."""
    import subprocess

    result, calls = run(plugin, monkeypatch, MKDTEMP, [(0, b"", b""), (0, b"ansible-tmp-1-2-3=/x\n", b"")])
    assert result == (0, b"ansible-tmp-1-2-3=/x\n", b"") and calls[0] == MKDTEMP
    assert calls[1] == MKDTEMP.replace(b'&& mkdir "', b'&& mkdir -p "') != MKDTEMP
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(["sh", "-c", calls[0]], env=env, capture_output=True, check=False)
    as_sent = subprocess.run(["sh", "-c", calls[0]], env=env, capture_output=True, check=False)
    again = subprocess.run(["sh", "-c", calls[1]], env=env, capture_output=True, check=False)
    made = tmp_path / ".ansible/tmp/ansible-tmp-1-2-3"
    assert first.returncode == 0 and made.is_dir() and oct(made.stat().st_mode & 0o777) == "0o700"
    assert as_sent.returncode == 1  # what CI saw
    assert again.returncode == 0 and again.stdout.decode().strip() == f"ansible-tmp-1-2-3={made}"


def test_it_gives_up_after_three_attempts_and_returns_what_docker_said(plugin: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run(plugin, monkeypatch, b"id -u && id -g", [(0, b"", b"")] * 3)
    assert result == (0, b"", b"") and len(calls) == 3


def test_a_raw_command_runs_once_even_with_no_output(plugin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    result, calls = run(plugin, monkeypatch, b"systemctl is-active docker", [(0, b"", b""), (0, b"x", b"")])
    assert result == (0, b"", b"") and len(calls) == 1


def test_a_modules_run_with_no_output_at_all_runs_once_more_and_no_third_time(
        plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = b"ANSIBALLZ with the secret s3cr3t"
    result, calls = run(plugin, monkeypatch, b"/usr/bin/python3 && sleep 0",
                        [(0, b"", b""), (0, b'{"changed": false, "msg": "ok"}', b"")], in_data=module)
    assert len(calls) == 2 and result[0] == 0 and result[2] == b""
    # The first run's effect is unknown: the second run's result counts as changed, and says why.
    again = json.loads(result[1])
    assert again["changed"] is True and again["msg"] == "ok" and "ran again" in again["warnings"][0]
    result, calls = run(plugin, monkeypatch, b"/usr/bin/python3 && sleep 0", [(0, b"", b"")] * 3, in_data=module)
    assert result == (0, b"", b"") and len(calls) == 2
    result, calls = run(plugin, monkeypatch, b"/usr/bin/python3 && sleep 0", [(1, b"", b"")] * 3, in_data=module)
    assert result == (1, b"", b"") and len(calls) == 1
    assert "s3cr3t" not in (tmp_path / "connection.log").read_text()


def test_a_failing_exit_code_or_api_error_of_a_harmless_command_is_asked_for_again(
        plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    failure = AnsibleConnectionFailure("An unexpected Docker error occurred")
    result, calls = run(plugin, monkeypatch, b"echo ~ && sleep 0", [(1, b"", b"x"), failure, (0, b"/root\n", b"")])
    assert result == (0, b"/root\n", b"") and len(calls) == 3
    log = (tmp_path / "connection.log").read_text()
    assert "exit code 1 (attempt 1)" in log and "unexpected Docker error occurred (attempt 2)" in log


def test_a_modules_run_that_fails_to_start_is_recorded_without_its_input_and_not_run_again(
        plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    failure = AnsibleConnectionFailure("The container has been paused")
    with pytest.raises(AnsibleConnectionFailure):
        run(plugin, monkeypatch, b"/usr/bin/python3 && sleep 0", [failure, (0, b"{}", b"")],
            in_data=b"ANSIBALLZ with the secret s3cr3t")
    log = (tmp_path / "connection.log").read_text()
    assert "a module's run" in log and "has been paused" in log
    assert "s3cr3t" not in log and "python3" not in log


def test_reading_an_exec_is_asked_again_but_a_missing_container_fails_at_once(plugin: Any) -> None:
    from requests.models import Response

    def api_error(cls: type, status: int) -> Exception:
        response = Response()
        response.status_code = status
        return cls("docker said no", response=response)

    asked: list[str] = []

    def answers(*errors: Exception) -> Any:
        def call(pathfmt: str, *args: Any) -> Any:
            asked.append(pathfmt)
            if len(asked) <= len(errors):
                raise errors[len(asked) - 1]
            return {"ExitCode": 0}
        return call

    read = plugin._asking_again(answers(api_error(plugin.docker_api.NotFound, 404),
                                        api_error(plugin.docker_api.APIError, 500)), "reading:")
    assert read("/exec/{0}/json", "abc") == {"ExitCode": 0} and len(asked) == 3

    asked.clear()
    inspect = plugin._asking_again(answers(api_error(plugin.docker_api.NotFound, 404)), "reading:")
    with pytest.raises(plugin.docker_api.NotFound):
        inspect("/containers/{0}/json", "gone")
    assert len(asked) == 1


def test_a_missing_container_is_unreachable_at_once_and_not_recorded(plugin: Any, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    gone = AnsibleConnectionFailure('Could not find container "vf-gone" (404 Client Error: Not Found)')
    with pytest.raises(AnsibleConnectionFailure):
        run(plugin, monkeypatch, b"id -u && id -g", [gone, (0, b"0\n0\n", b"")])
    assert not (tmp_path / "connection.log").exists()
