"""The model_weights role on two sandbox container hosts, origins served from this machine's docker gateway.

Peer, direct and cache fan-out: the origin is read once per design; a second run changes nothing and reads nothing; a
-vvv run with an HF token and S3 keys in the environment leaves no trace of either in the output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.weights.conftest import REPO, S3_KEYS
from tests.weights.origins import make_adapter, make_model, sandbox_gateway, start_nginx
from tests.worlds import write_inventory
from vllm_fleet.sandbox.hosts import ssh_vars

pytestmark = [pytest.mark.world, pytest.mark.slow, pytest.mark.timeout(1800)]

HF_TOKEN = "hf_weightsWorldTestTokenDoNotLeak0123"


def weights_plan(spec: dict) -> dict:
    """vllm_fleet_plan as vllmfleet.fleet.fleet_plan sets it, from the shared code."""
    from vllm_fleet.vm.planning.fleet import plan_for_host

    return plan_for_host(spec, "h", source="test").model_dump(mode="json")


def run_playbook(inventory: Path, *extra: str, env: dict[str, str], json_out: bool = False
                 ) -> subprocess.CompletedProcess[str]:
    callbacks = ",".join(c for c in (os.environ.get("ANSIBLE_CALLBACKS_ENABLED"), "ansible.posix.profile_tasks") if c)
    run_env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_CALLBACKS_ENABLED=callbacks, **env)
    if json_out:
        run_env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    return subprocess.run([playbook, "-i", str(inventory), str(REPO / "tests/weights/deploy-weights.yml"),
                           *extra], cwd=REPO, env=run_env, capture_output=True, text=True, timeout=900)


def assert_manifests(hosts: list[str], service: str, model: Path) -> None:
    """Every host holds one completed revision of `service` whose manifest lists the model's files and sizes."""
    want = {f.name: f.stat().st_size for f in model.iterdir()}
    for host in hosts:
        manifest = subprocess.run(["docker", "exec", host, "sh", "-c",
                                   f"cat /var/lib/vllm-fleet/models/{service}/*/.vllm-fleet-manifest.json"],
                                  capture_output=True, text=True, check=True).stdout
        assert {f["path"]: f["size"] for f in json.loads(manifest)["files"]} == want


def assert_rerun_reads_nothing(inv: Path, origin: Any) -> None:
    """A second run changes nothing on any host and reads no byte from the origin."""
    origin.reset_log()
    second = run_playbook(inv, env={}, json_out=True)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    report, _ = json.JSONDecoder().raw_decode(second.stdout[second.stdout.index("{"):])
    assert all(stats["changed"] == 0 and stats["failures"] == 0 for stats in report["stats"].values())
    assert origin.body_bytes("GET") == 0


def test_peer_fanout_reads_origin_once_idempotent_and_leaks_nothing(sandbox_hosts, tmp_path, moto_server):
    import boto3

    hosts = sandbox_hosts(2, prefix="weights")
    gw = sandbox_gateway()
    www = tmp_path / "www"
    model = make_model(tmp_path / "src" / "tiny", weight_bytes=2 << 20, seed=-1)
    with tarfile.open(www.mkdir() or www / "tiny.tar.gz", "w:gz") as tf:
        tf.add(model, arcname="tiny")
    https = start_nginx(tmp_path / "nginx", www, host=gw)
    s3 = start_nginx(tmp_path / "nginx-s3", www, host=gw, proxy_to=moto_server)
    try:
        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1",
                              aws_access_key_id=S3_KEYS["s3_access_key_id"],
                              aws_secret_access_key=S3_KEYS["s3_secret_access_key"])
        client.create_bucket(Bucket="world")
        for f in model.iterdir():
            client.put_object(Bucket="world", Key=f"tiny/{f.name}", Body=f.read_bytes(), ChecksumAlgorithm="SHA256")
        adapter = make_adapter(tmp_path / "src" / "lora", width=128)  # fits the model's hidden size
        for f in adapter.iterdir():
            client.put_object(Bucket="world", Key=f"lora/{f.name}", Body=f.read_bytes(), ChecksumAlgorithm="SHA256")
        s3.reset_log()
        spec = {"services": [
            {"name": "tar", "storage_uri": f"{https.url}/tiny.tar.gz", "accelerator": "cpu", "gpus": 0,
             "storage": {"credentials": {"hf_token": {"env": "WEIGHTS_HF_TOKEN"}}, "timeout_seconds": 60}},
            {"name": "bucket", "storage_uri": "s3://world/tiny", "accelerator": "cpu", "gpus": 0, "port": 8001,
             "storage": {"credentials": {"s3": {"access_key_id": {"env": "WEIGHTS_S3_KEY"},
                                                "secret_access_key": {"env": "WEIGHTS_S3_SECRET"},
                                                "endpoint": s3.url, "region": "us-east-1"}}},
             # A LoRA adapter from the same bucket: fetched once for the fleet like the base weights.
             "adapters": [{"name": "bucket-lora", "storage_uri": "s3://world/lora", "storage": {"credentials": {
                 "s3": {"access_key_id": {"env": "WEIGHTS_S3_KEY"}, "secret_access_key": {"env": "WEIGHTS_S3_SECRET"},
                        "endpoint": s3.url, "region": "us-east-1"}}}}]},
        ]}
        inv = write_inventory(tmp_path / "hosts.yml", hosts, spec, vllm_fleet_plan=weights_plan(spec),
                              model_weights_fanout="peer",
                              model_weights_wheelhouse=str(Path.home() / ".cache/vllm-fleet/fetch-wheels-test"))
        env = {"WEIGHTS_HF_TOKEN": HF_TOKEN, "WEIGHTS_S3_KEY": S3_KEYS["s3_access_key_id"],
               "WEIGHTS_S3_SECRET": S3_KEYS["s3_secret_access_key"]}

        first = run_playbook(inv, "-vvv", env=env)

        output = first.stdout + first.stderr
        assert first.returncode == 0, output[-6000:]
        for secret in (HF_TOKEN, *S3_KEYS.values()):
            assert secret not in output
        assert https.body_bytes("GET") == (www / "tiny.tar.gz").stat().st_size  # the fleet read the origin once
        object_gets = [r for r in s3.requests() if r["method"] == "GET" and r["uri"].startswith("/world/tiny/")]
        assert sorted(r["uri"] for r in object_gets) == sorted(f"/world/tiny/{f.name}" for f in model.iterdir())
        adapter_gets = [r["uri"] for r in s3.requests() if r["method"] == "GET" and r["uri"].startswith("/world/lora/")]
        assert sorted(adapter_gets) == sorted(f"/world/lora/{f.name}" for f in adapter.iterdir())  # once per fleet
        for host in hosts:  # published in the service's adapters directory, the one its container mounts
            listing = subprocess.run(["docker", "exec", host, "sh", "-c",
                                      "cat /var/lib/vllm-fleet/adapters/bucket/bucket-lora/*/adapter_config.json"],
                                     capture_output=True, text=True, check=True).stdout
            assert json.loads(listing)["r"] == 8
        want = {f.name: f.stat().st_size for f in model.iterdir()}
        for host in hosts:
            for svc in ("tar", "bucket"):
                listing = subprocess.run(
                    ["docker", "exec", host, "sh", "-c",
                     f"cd /var/lib/vllm-fleet/models/{svc} && ls -A && cat */.vllm-fleet-manifest.json"],
                    capture_output=True, text=True, check=True).stdout
                names, manifest = listing.split("{", 1)
                assert not [n for n in names.split() if n.startswith(".staging-")]
                files = json.loads("{" + manifest)["files"]
                assert {f["path"]: f["size"] for f in files} == want

        https.reset_log()
        s3.reset_log()
        second = run_playbook(inv, env=env, json_out=True)

        assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
        report, _ = json.JSONDecoder().raw_decode(second.stdout[second.stdout.index("{"):])
        assert all(stats["changed"] == 0 and stats["failures"] == 0 for stats in report["stats"].values()), \
            report["stats"]
        assert https.body_bytes("GET") == 0
        assert [r for r in s3.requests()
                if r["method"] == "GET" and r["uri"].startswith(("/world/tiny/", "/world/lora/"))] == []
        facts = [t for t in report["plays"][0]["tasks"]
                 if t["task"]["name"] == "Show the fact the serving role consumes"]
        paths = facts[0]["hosts"][hosts[1]]["model_weights_paths"]
        assert set(paths) == {"tar", "bucket", "bucket@bucket-lora"}
        assert re.fullmatch(r"/var/lib/vllm-fleet/adapters/bucket/bucket-lora/r-[0-9a-f]{16}",
                            paths.pop("bucket@bucket-lora")["path"])
        for svc, entry in paths.items():
            assert re.fullmatch(rf"/var/lib/vllm-fleet/models/{svc}/r-[0-9a-f]{{16}}", entry["path"])
            assert entry["manifest"] == entry["path"] + "/.vllm-fleet-manifest.json"
            assert entry["changed"] is False
    finally:
        https.stop()
        s3.stop()


def test_direct_mode_every_host_reads_the_origin_once_and_a_rerun_reads_nothing(sandbox_hosts, tmp_path):
    """The role's default fan-out mode: each host fetches from the origin itself, exactly once."""
    hosts = sandbox_hosts(2, prefix="direct")
    www = tmp_path / "www"
    model = make_model(tmp_path / "src" / "tiny", weight_bytes=1 << 20, seed=-2)
    with tarfile.open(www.mkdir() or www / "tiny.tar.gz", "w:gz") as tf:
        tf.add(model, arcname="tiny")
    origin = start_nginx(tmp_path / "nginx", www, host=sandbox_gateway())
    try:
        spec = {"services": [{"name": "tar", "storage_uri": f"{origin.url}/tiny.tar.gz", "accelerator": "cpu",
                              "gpus": 0, "storage": {"timeout_seconds": 60}}]}
        inv = write_inventory(tmp_path / "hosts.yml", hosts, spec, vllm_fleet_plan=weights_plan(spec),
                              model_weights_fanout="direct",
                              model_weights_wheelhouse=str(Path.home() / ".cache/vllm-fleet/fetch-wheels-test"))
        first = run_playbook(inv, env={})
        assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
        archive = (www / "tiny.tar.gz").stat().st_size
        assert origin.body_bytes("GET") == len(hosts) * archive
        assert_manifests(hosts, "tar", model)
        assert_rerun_reads_nothing(inv, origin)
    finally:
        origin.stop()


def test_cache_mode_one_cache_host_reads_a_tls_origin_once_for_the_fleet(sandbox_hosts, tmp_path):
    """Cache mode: a host outside the serving group reads the origin (HTTPS, private CA given by
    model_weights_ca_bundle) and the serving hosts copy from it; a re-run reads nothing."""
    import trustme
    import yaml

    cache, *servers = sandbox_hosts(3, prefix="cache")
    gw = sandbox_gateway()
    ca = trustme.CA()
    cert = ca.issue_cert(gw)
    tls = tmp_path / "tls"
    tls.mkdir()
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tls / "chain.pem"))
    for host in (cache, *servers):  # the CA is distributed to the hosts, as a user's configuration would
        subprocess.run(["docker", "cp", str(tls / "ca.pem"), f"{host}:/etc/ssl/private-origin-ca.pem"], check=True)
    www = tmp_path / "www"
    model = make_model(tmp_path / "src" / "tiny", weight_bytes=1 << 20, seed=-3)
    with tarfile.open(www.mkdir() or www / "tiny.tar.gz", "w:gz") as tf:
        tf.add(model, arcname="tiny")
    origin = start_nginx(tmp_path / "nginx", www, host=gw, tls=(tls / "chain.pem", tls / "key.pem"))
    try:
        spec = {"services": [{"name": "tls", "storage_uri": f"{origin.url}/tiny.tar.gz", "accelerator": "cpu",
                              "gpus": 0, "storage": {"timeout_seconds": 60}}]}
        inv = write_inventory(tmp_path / "hosts.yml", servers, spec, vllm_fleet_plan=weights_plan(spec),
                              model_weights_fanout="cache", model_weights_cache_host=cache,
                              model_weights_ca_bundle="/etc/ssl/private-origin-ca.pem",
                              model_weights_wheelhouse=str(Path.home() / ".cache/vllm-fleet/fetch-wheels-test"))
        data = yaml.safe_load(inv.read_text())
        data["weights_cache"] = {"hosts": {cache: ssh_vars(cache)}}  # how the delegated tasks reach it
        inv.write_text(yaml.safe_dump(data, sort_keys=False))

        first = run_playbook(inv, env={})

        assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
        assert origin.scheme == "https"
        assert origin.body_bytes("GET") == (www / "tiny.tar.gz").stat().st_size  # once, by the cache host
        assert_manifests([cache, *servers], "tls", model)
        assert_rerun_reads_nothing(inv, origin)
    finally:
        origin.stop()
