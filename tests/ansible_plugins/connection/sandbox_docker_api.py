"""The test world's connection to its sandbox hosts: community.docker.docker_api, plus retries and a record.

Seen in CI (Debian's docker.io 20.10, 2 busy cores): an exec came back with exit code 0 and no output at all
although the command had run. Twice the command was one that only reads or makes something and prints it, and the
empty output failed the task:
- Ansible's temporary-directory command ("failed to resolve remote temporary directory ... returned empty string");
- docker_api's own `id -u && id -g` before a file upload ("Error while determining user and group ID", reported as
  unreachable; under no_log, as in the task that writes a service's key file, with the message censored).
Once more a task under no_log came back unreachable with its message censored, and nothing in dockerd's log.

So this plugin:
- runs those harmless commands (and `echo ~`) again, at most twice, when docker returns no output, a failing exit
  code or a Docker API error for them (the temporary-directory command with `mkdir -p`, so that a first run whose
  output was lost, which made the directory, does not make the repeat fail: seen in CI as "exit code 1" twice);
- asks the Docker API again when creating an exec or reading an exec's exit code fails, which runs nothing twice;
- runs a module again, once, when docker returned nothing at all for it (a module always prints its result), as
  Ansible's own ssh connection retries a command whose connection broke (reconnection_retries), and reports that
  second run as changed (what the first did is unknown: a no-op check must not pass on a change it hid); a
  module's run that raised is reported as it came;
- appends every anomaly it sees (the kind of command, never its input or output) to the file that
  VLLM_FLEET_SANDBOX_CONNECTION_LOG names, and warns, so that a censored failure can still be explained.
Production inventories reach hosts over SSH.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from ansible.utils.display import Display
from ansible_collections.community.docker.plugins.connection import docker_api

# The config manager reads a plugin's options from this attribute at load time.
DOCUMENTATION = docker_api.DOCUMENTATION.replace("name: docker_api", "name: sandbox_docker_api", 1)

display = Display()
ATTEMPTS = 3
PAUSE = 0.5
LOG_ENV = "VLLM_FLEET_SANDBOX_CONNECTION_LOG"


def _text(cmd: Any) -> str:
    return cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)


def _harmless_to_repeat(cmd: Any) -> bool:
    text = _text(cmd).strip()
    return _makes_tmpdir(cmd) or text == "id -u && id -g" or text.startswith("echo ~")


def _makes_tmpdir(cmd: Any) -> bool:
    text = _text(cmd)
    return "mkdir" in text and "ansible-tmp-" in text and "echo" in text


def _again(cmd: Any) -> Any:
    """The command to run once more. Ansible's temporary-directory command makes a directory of a name unique to this
    task (time, pid, random) with a plain `mkdir`, which fails if a first run whose output was lost already made it:
    run again, it may find its own directory there (`mkdir -p`). Every other command is run again as it was."""
    if not _makes_tmpdir(cmd):
        return cmd
    if isinstance(cmd, bytes):
        return cmd.replace(b'&& mkdir "', b'&& mkdir -p "')
    return str(cmd).replace('&& mkdir "', '&& mkdir -p "')


def _conservative(stdout: bytes) -> bytes:
    """A module's result from its second run, after docker lost the first run's output: what the first run did is
    unknown, so the result says changed, and why. A no-op check (changed == 0) then cannot pass on a change the
    lost output hid; at worst it fails, with the reason in the run's warnings and the connection record."""
    try:
        result = json.loads(stdout)
    except ValueError:
        return stdout
    if not isinstance(result, dict):
        return stdout
    result["changed"] = True
    result["warnings"] = [*result.get("warnings", []), "sandbox_docker_api: docker lost this module's first output "
                          "and it ran again; what the first run changed is unknown, so the task counts as changed"]
    return json.dumps(result).encode()


def _kind(cmd: Any) -> str:
    """What the command is, without anything it carries: a module's run says only its interpreter."""
    text = _text(cmd).strip()
    if _harmless_to_repeat(cmd):
        return "the temporary-directory command" if "mkdir" in text else text.split("&&")[0].strip()
    return "a module's run or a raw task"


def record(message: str) -> None:
    display.warning(f"sandbox_docker_api: {message}")
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {message}\n")


def _asking_again(call: Callable[..., Any], what: str) -> Callable[..., Any]:
    """A client call that only asks the daemon something (it runs nothing in the container), asked up to ATTEMPTS
    times. A missing container is not asked about again: that is an unreachable host, and fails at once."""

    def wrapper(pathfmt: str, *args: Any, **kwargs: Any) -> Any:
        attempt = 1
        while True:
            try:
                return call(pathfmt, *args, **kwargs)
            except (docker_api.APIError, docker_api.DockerException, docker_api.RequestException) as exc:
                missing_container = isinstance(exc, docker_api.NotFound) and not pathfmt.startswith("/exec/")
                if missing_container or attempt == ATTEMPTS:
                    raise
                record(f"{what} {pathfmt} failed (attempt {attempt}): {exc}; asking again")
            attempt += 1
            time.sleep(PAUSE)

    return wrapper


class Connection(docker_api.Connection):
    transport = "sandbox_docker_api"

    def _connect(self, port: Any = None) -> Any:
        fresh = self.client is None
        result = super()._connect(port)
        if fresh and self.client is not None:
            # In docker_api these two only create an exec and read an exec's state; starting one is another call.
            self.client.post_json_to_json = _asking_again(self.client.post_json_to_json, "creating an exec:")
            self.client.get_json = _asking_again(self.client.get_json, "reading:")
        return result

    def exec_command(self, cmd: Any, in_data: bytes | None = None, sudoable: bool = False) -> tuple[int, bytes, bytes]:
        harmless = in_data is None and _harmless_to_repeat(cmd)
        module = in_data is not None
        attempt = 1
        while True:
            try:
                rc, stdout, stderr = super().exec_command(cmd if attempt == 1 else _again(cmd), in_data=in_data,
                                                          sudoable=sudoable)
            except Exception as exc:  # recorded, then raised as it came unless the command is harmless
                if "Could not find container" in str(exc):
                    raise  # a host that is gone: unreachable at once, as tests of that case expect
                record(f"{_kind(cmd)}: {type(exc).__name__}: {exc} (attempt {attempt})")
                if not harmless or attempt == ATTEMPTS:
                    raise
            else:
                lost = rc == 0 and not stdout and not stderr
                if module and attempt > 1 and not lost:
                    return rc, _conservative(stdout), stderr
                if not (harmless and (lost or rc != 0)) and not (module and lost):
                    return rc, stdout, stderr
                record(f"{_kind(cmd)}: " + ("docker returned no output" if lost else f"exit code {rc}")
                       + f" (attempt {attempt})")
                if attempt == (2 if module else ATTEMPTS):
                    return rc, stdout, stderr
            attempt += 1
