"""The test world's connection to its sandbox hosts: community.docker.docker_api, plus one retry.

Seen once in CI (Debian's docker.io 20.10, 2 busy cores): an exec of Ansible's temporary-directory command came back
with exit code 0 and no output at all, and the task failed with "failed to resolve remote temporary directory ...
returned empty string" although the command had run. That command only creates a directory and prints its name, so
running it again is harmless; this plugin does so (at most twice, with a warning) and changes nothing else. Any other
command's result, empty or not, is returned as it came. Production inventories reach hosts over SSH.
"""

from __future__ import annotations

from typing import Any

from ansible.utils.display import Display
from ansible_collections.community.docker.plugins.connection import docker_api

# The config manager reads a plugin's options from this attribute at load time.
DOCUMENTATION = docker_api.DOCUMENTATION.replace("name: docker_api", "name: sandbox_docker_api", 1)

display = Display()
TMPDIR_ATTEMPTS = 3


def _makes_ansible_tmpdir(cmd: Any) -> bool:
    text = cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)
    return "mkdir" in text and "ansible-tmp-" in text and "echo" in text


class Connection(docker_api.Connection):
    transport = "sandbox_docker_api"

    def exec_command(self, cmd: Any, in_data: bytes | None = None, sudoable: bool = False) -> tuple[int, bytes, bytes]:
        attempt = 1
        while True:
            rc, stdout, stderr = super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
            lost = rc == 0 and not stdout and not stderr and in_data is None and _makes_ansible_tmpdir(cmd)
            if not lost or attempt == TMPDIR_ATTEMPTS:
                return rc, stdout, stderr
            display.warning(f"sandbox_docker_api: docker returned no output for the temporary-directory command "
                            f"(attempt {attempt}); running it again")
            attempt += 1
