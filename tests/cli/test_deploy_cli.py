"""`vllm-fleet deploy/plan` through ansible-runner against real container hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worlds import write_inventory

pytestmark = pytest.mark.world

SPEC = {
    "services": [
        {"name": "tiny-chat", "storage_uri": "file:///srv/models/tiny", "accelerator": "cpu", "gpus": 0,
         "port": 8000, "api_key": {"env": "VF_TEST_KEY"}},
        {"name": "tiny-embed", "task": "embed", "storage_uri": "file:///srv/models/embed", "accelerator": "cpu",
         "gpus": 0, "port": 8001},
    ]
}


def cli(*args: str, env_key: bool = True) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_key:
        env["VF_TEST_KEY"] = "test-key-3b1f"
    else:
        env.pop("VF_TEST_KEY", None)
    return subprocess.run([sys.executable, "-m", "vllm_fleet", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=600)


# A CPU sandbox host: the prepare stage installs Debian's Docker and skips the NVIDIA roles.
CPU_HOST = {"vllm_fleet_nvidia": False, "docker_source": "distribution"}


def has_dockerd(host: str) -> bool:
    return subprocess.run(["docker", "exec", host, "sh", "-c", "command -v dockerd"], capture_output=True,
                          check=False).returncode == 0


def test_deploy_json_runs_the_prepare_stage_on_a_reachable_host(sandbox_hosts, tmp_path: Path) -> None:
    (host,) = sandbox_hosts(prefix="cli")
    inv = write_inventory(tmp_path / "hosts.yml", [host], SPEC, vllm_fleet_address="127.0.0.1", **CPU_HOST)
    assert not has_dockerd(host)
    proc = cli("deploy", "-i", str(inv), "--tags", "prepare", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True and summary["status"] == "successful" and summary["rc"] == 0
    assert set(summary["hosts"]) == {host}
    assert summary["hosts"][host]["failed"] == 0 and summary["hosts"][host]["unreachable"] is False
    assert summary["hosts"][host]["changed"] > 0 and has_dockerd(host)
    rows = {(e["host"], e["service"]): e for e in summary["endpoints"]}
    assert set(rows) == {(host, "tiny-chat"), (host, "tiny-embed")}
    assert rows[(host, "tiny-chat")]["url"] == "http://127.0.0.1:8000/v1"
    assert rows[(host, "tiny-embed")]["task"] == "embed"
    assert "test-key-3b1f" not in proc.stdout + proc.stderr


def test_plan_reports_the_changes_of_the_prepare_stage_and_makes_none(sandbox_hosts, tmp_path: Path) -> None:
    (host,) = sandbox_hosts(prefix="cli")
    inv = write_inventory(tmp_path / "hosts.yml", [host], SPEC, **CPU_HOST)
    proc = cli("plan", "-i", str(inv), "--tags", "prepare", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"][host]["changed"] > 0  # Docker would be installed ...
    assert not has_dockerd(host)  # ... and check mode installed nothing


def test_deploy_against_an_unreachable_host_fails_clearly(world: str, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "hosts.yml", ["vf-cli-no-such-host"], SPEC)
    proc = cli("deploy", "-i", str(inv), "--tags", "prepare", "--json")
    assert proc.returncode != 0
    summary = json.loads(proc.stdout)
    assert summary["ok"] is False
    host = summary["hosts"]["vf-cli-no-such-host"]
    assert host["unreachable"] is True
    assert host["error"].startswith("unreachable")

    human = cli("deploy", "-i", str(inv), "--tags", "prepare")
    assert human.returncode != 0
    assert "FAILED vf-cli-no-such-host: unreachable" in human.stderr


def test_missing_secret_fails_before_any_host_is_contacted(world: str, tmp_path: Path) -> None:
    # The host does not exist: had the run contacted it, it would report it unreachable instead.
    inv = write_inventory(tmp_path / "hosts.yml", ["vf-cli-never-contacted"], SPEC)
    proc = cli("deploy", "-i", str(inv), "--json", env_key=False)
    assert proc.returncode == 2
    payload = json.loads(proc.stdout)
    issue = payload["errors"][0]["issues"][0]
    assert issue["path"] == "services[0].api_key"
    assert "VF_TEST_KEY" in issue["problem"]
    assert "hosts" not in payload


def test_kept_runner_artifacts_hold_no_secret_of_the_environment(world: str, tmp_path: Path) -> None:
    """ansible-runner records the run's whole environment in artifacts/<id>/command; the key must not be there."""
    inv = write_inventory(tmp_path / "hosts.yml", ["vf-cli-artifacts"], SPEC)
    proc = cli("deploy", "-i", str(inv), "--json", "-vvv", "--artifacts", str(tmp_path / "runs"))
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert proc.returncode != 0 and any(p.name == "command" for p in files) and len(files) > 5
    assert [p.name for p in files if "test-key-3b1f" in p.read_text(errors="replace")] == []


def test_a_hub_adapter_trained_on_another_model_stops_the_deploy_before_any_host_is_contacted(
        world: str, tmp_path: Path) -> None:
    from tests.weights.hub import hub_repo_layout
    from tests.weights.origins import make_adapter, start_nginx

    www = tmp_path / "www"
    hub = start_nginx(tmp_path / "nginx", www, extra=hub_repo_layout(
        www, "acme/other-lora", make_adapter(tmp_path / "lora", base="other/model"), "c0" * 20))
    try:
        spec = {"services": [{
            "name": "chat", "storage_uri": "hf://org/base", "accelerator": "cpu", "gpus": 0, "port": 8000,
            "storage": {"endpoint": hub.url},
            "adapters": [{"name": "chat-lora", "storage_uri": "hf://acme/other-lora",
                          "storage": {"endpoint": hub.url}}],
        }]}
        # The host does not exist: had the run contacted it, it would report it unreachable instead.
        inv = write_inventory(tmp_path / "hosts.yml", ["vf-cli-never-contacted"], spec)
        proc = cli("deploy", "-i", str(inv), "--json")
    finally:
        hub.stop()
    payload = json.loads(proc.stdout)
    host = payload["hosts"]["vf-cli-never-contacted"]
    assert proc.returncode != 0 and host["unreachable"] is False
    assert ("adapter chat@chat-lora (hf://acme/other-lora) does not fit its service: it was trained on other/model, "
            "and the service serves org/base. Nothing was changed on any host.") in host["error"]


def test_an_unreachable_repository_stops_the_deploy_before_any_host_changes(sandbox_hosts, tmp_path: Path) -> None:
    """Docker's repository (docker_source upstream, the default) and Grafana's (monitoring_grafana, the default) are
    out of reach from the sandbox: the run stops right after reaching the host, naming both with the variables
    that fix them, and the host got nothing: no Docker, no Prometheus."""
    (host,) = sandbox_hosts(prefix="cli")
    inv = write_inventory(tmp_path / "hosts.yml", [host], SPEC | {"monitoring": {}}, monitoring={host: None},
                          vllm_fleet_nvidia=False)
    proc = cli("deploy", "-i", str(inv), "--json")
    assert proc.returncode != 0, proc.stdout[-3000:]
    outcome = json.loads(proc.stdout)["hosts"][host]
    error = outcome["error"]
    assert outcome["changed"] == 0 and outcome["unreachable"] is False, outcome
    assert ("2 repository(ies) this run installs from cannot be reached from this host; nothing was changed on any "
            "host") in error
    assert "Docker's package repository (its signing key) (https://download.docker.com/linux/debian/gpg)" in error
    assert "Grafana's apt repository (its signing key) (https://apt.grafana.com/gpg.key)" in error
    assert "docker_source: distribution" in error and "monitoring_grafana: false" in error
    assert not has_dockerd(host)
    assert subprocess.run(["docker", "exec", host, "dpkg", "-s", "prometheus"], capture_output=True,
                          check=False).returncode != 0
