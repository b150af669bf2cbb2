"""The real-vLLM world shared by the whole session: the vLLM CPU image, tiny models and one sandbox host with
Docker inside (fixtures registered in tests/conftest.py), and helpers to deploy specs onto it."""


from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

KEY = "e2e-key-7c41d0"
MODELS_MOUNT = "/srv/vllm-fleet/seed-models"
IMAGES_MOUNT = "/srv/vllm-fleet/images"


def service(name: str, task: str, port: int, *, model: str | None = None, **engine: Any) -> dict[str, Any]:
    return {
        "name": name, "task": task, "storage_uri": f"file://{MODELS_MOUNT}/{model or name}",
        "served_model_name": name, "image": "vllm-fleet/vllm-cpu:0.32.0", "accelerator": "cpu", "gpus": 0,
        "port": port, "shm_size": "1g", "api_key": {"env": "E2E_VLLM_KEY"},
        "engine": {"max_model_len": 128, "gpu_memory_utilization": 0.1, "enforce_eager": True, **engine},
    }


@dataclass
class ServingHost:
    name: str
    address: str
    workdir: Path

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command on the host itself."""
        return subprocess.run(["docker", "exec", self.name, *args], capture_output=True, text=True, check=check)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", self.name, "docker", *args], capture_output=True, text=True,
                              check=check)

    def started_at(self, container: str) -> str:
        return self.docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()

    def containers(self) -> list[str]:
        return sorted(self.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())

    def deploy(self, spec: dict[str, Any], *, extra_vars: dict[str, Any] | None = None,
               tags: str | None = "serve,smoke", key: str | None = KEY, timeout: int = 3600,
               verbose: int = 0, artifacts: Path | None = None) -> dict[str, Any]:
        inv = self.workdir / f"inv-{uuid.uuid4().hex[:6]}.yml"
        host_vars = {"ansible_connection": "community.docker.docker_api", "ansible_user": "root",
                     "vllm_fleet_address": self.address, "vllm_server_image_source": "archive",
                     "vllm_server_image_archive_remote": f"{IMAGES_MOUNT}/vllm-cpu-0.32.0.tar",
                     # CPU host: the prepare stage skips the NVIDIA roles and installs Debian's Docker.
                     "vllm_fleet_nvidia": False, "docker_source": "distribution",
                     **(extra_vars or {})}
        inv.write_text(yaml.safe_dump({"vllm_hosts": {"hosts": {self.name: host_vars},
                                                      "vars": {"vllm_fleet_spec": spec}}}))
        env = {k: v for k, v in os.environ.items() if k != "E2E_VLLM_KEY"}
        if key:
            env["E2E_VLLM_KEY"] = key
        cmd = [sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inv), "--json"]
        if tags:
            cmd += ["--tags", tags]
        if verbose:
            cmd.append("-" + "v" * verbose)
        if artifacts is not None:
            cmd += ["--artifacts", str(artifacts)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=timeout)
        try:
            payload = json.loads(proc.stdout)
        except json.JSONDecodeError:
            payload = {"ok": False, "raw": proc.stdout[-4000:]}
        payload["rc"] = proc.returncode
        payload["output"] = proc.stdout + proc.stderr
        return payload



@pytest.fixture(scope="session")
def vllm_world(world: str) -> tuple[str, Path, Path]:
    """(host image tag, tiny models dir, image archive): built once, cached across runs."""
    from vllm_fleet.sandbox.tiny_models import generate
    from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive

    image, _ = ensure_vllm_image()
    return world, generate(image), save_archive(image)


@pytest.fixture(scope="session")
def serving_host(vllm_world: tuple[str, Path, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServingHost]:
    """The real-vLLM world of the whole session: one sandbox host with Docker inside, the tiny models and the vLLM
    image archive mounted. Every area that needs real vLLM (serving, and later gateway, monitoring, adapters)
    deploys onto it and changes it step by step, instead of starting a world of its own."""
    from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up

    tag, models, archive = vllm_world
    name = f"vf-serving-{uuid.uuid4().hex[:6]}"
    try:
        address, _ = host_up(HostSpec(name=name, image=tag, shm_size="2g", mounts=(
            f"{models}:{MODELS_MOUNT}:ro", f"{archive.parent}:{IMAGES_MOUNT}:ro")))
        # Test setup standing in for the prepare stage on a CPU host: Debian's Docker engine.
        subprocess.run(["docker", "exec", name, "bash", "-c",
                        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io "
                        ">/dev/null && systemctl is-active docker"], check=True, capture_output=True, timeout=600)
        yield ServingHost(name, address, tmp_path_factory.mktemp("serving"))
    finally:
        host_down(name)
