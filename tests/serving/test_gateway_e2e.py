"""The gateway (HAProxy, from Debian, on the serving host) in front of real vLLM CPU services.

Runs after test_e2e_vllm.py on the same host and the session's `fleet`. In order: one HTTPS URL for chat,
embeddings and rerank (openai client and curl, verified against the generated CA); a probe of every route vLLM
serves with no key, a wrong key, a key in and out of scope; backends unreachable from another sandbox host; a per-key
rate limit; and, last of the session, a full -vvv deploy searched for every secret in use.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.worlds import CLIENT_KEYS, FLEET_SPEC, KEY, MODELS_MOUNT, ServingHost

pytestmark = [pytest.mark.world, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(3600)]

APP, CHAT_ONLY, LIMITED = (CLIENT_KEYS[k] for k in ("E2E_CLIENT_APP", "E2E_CLIENT_CHAT", "E2E_CLIENT_LIMITED"))
ALLOWED = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/rerank", "/v1/score",
           "/score", "/v1/models"}
# Routes vLLM 0.32 serves without listing them in /openapi.json, or that the ENVIRONMENT notes found open.
UNLISTED = ["/invocations", "/tokenize", "/detokenize", "/pooling", "/classify", "/generative_scoring",
            "/scale_elastic_ep", "/is_scaling_elastic_ep", "/metrics", "/load", "/kv_event_sources", "/version",
            "/ping", "/docs", "/redoc", "/openapi.json", "/server_info", "/reset_prefix_cache", "/sleep", "/wake_up",
            "/collective_rpc", "/v1/responses", "/v1/messages", "/v1/audio/transcriptions", "/v1/load_lora_adapter"]
# Storage credentials of the last step (test values, searched for in everything the deploy leaves).
HF_TOKEN = "hf_e2eHubTokenNeverPrinted0123456789"
S3_KEY = "AKIAE2ESERVINGWORLD01"
S3_SECRET = "e2e-s3-secret-5d4c3b2a1f0e"


def ca(host: ServingHost) -> str:
    return str(host.pki / "ca.pem")


def gw(host: ServingHost, path: str, body: dict | None = None, key: str | None = APP, method: str | None = None,
       timeout: float = 120) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = requests.request(method or ("POST" if body is not None else "GET"), host.gateway_url + path, json=body,
                            headers=headers, verify=ca(host), timeout=timeout)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


def body_for(path: str) -> dict[str, Any]:
    if "chat" in path:
        return {"model": "tiny-chat", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
    if "embeddings" in path:
        return {"model": "tiny-embed", "input": "a cat"}
    if "rerank" in path:
        return {"model": "tiny-rerank", "query": "capital of France", "documents": ["Paris.", "A fox."]}
    if "score" in path:
        return {"model": "tiny-rerank", "text_1": "a", "text_2": "b"}
    return {"model": "tiny-chat", "prompt": "Hi", "max_tokens": 2}


def haproxy_log(host: ServingHost, since: str) -> list[str]:
    out = host.exec("journalctl", "-q", "--no-pager", "-o", "cat", "-t", "haproxy", "--since", since, check=False)
    return [ln for ln in out.stdout.splitlines() if " client=" in ln]


def journal_now(host: ServingHost) -> str:
    return host.exec("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()


@pytest.fixture(scope="module")
def gateway(serving_host: ServingHost, fleet: dict[str, Any]) -> ServingHost:
    assert fleet["gateway"]["urls"] == [f"{serving_host.gateway_url}/v1"]
    assert fleet["gateway"]["ca"] == ca(serving_host)
    return serving_host


def test_one_https_url_serves_chat_embeddings_and_rerank_by_model_name(gateway: ServingHost) -> None:
    import httpx
    import openai

    trust = ssl.create_default_context(cafile=ca(gateway))
    client = openai.OpenAI(base_url=f"{gateway.gateway_url}/v1", api_key=APP, http_client=httpx.Client(verify=trust))
    assert sorted(m.id for m in client.models.list()) == ["tiny-chat", "tiny-embed", "tiny-rerank"]
    reply = client.chat.completions.create(model="tiny-chat", max_tokens=4,
                                           messages=[{"role": "user", "content": "Hello"}])
    assert reply.model == "tiny-chat" and reply.choices[0].message.content is not None
    vectors = client.embeddings.create(model="tiny-embed", input=["a cat", "a dog"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 128
    chat_only = openai.OpenAI(base_url=f"{gateway.gateway_url}/v1", api_key=CHAT_ONLY,
                              http_client=httpx.Client(verify=trust))
    assert [m.id for m in chat_only.models.list()] == ["tiny-chat"]
    with pytest.raises(openai.PermissionDeniedError):
        chat_only.embeddings.create(model="tiny-embed", input="x")

    curl = subprocess.run(["curl", "-sS", "--fail-with-body", "--cacert", ca(gateway), "-H",
                           "Content-Type: application/json", "-H", "@-", "-d",
                           json.dumps(body_for("/v1/rerank")), f"{gateway.gateway_url}/v1/rerank"],
                          input=f"Authorization: Bearer {APP}\n", capture_output=True, text=True, check=False)
    assert curl.returncode == 0, curl.stderr + curl.stdout
    assert sorted(r["index"] for r in json.loads(curl.stdout)["results"]) == [0, 1]
    untrusted = subprocess.run(["curl", "-sS", f"{gateway.gateway_url}/health"], capture_output=True, text=True,
                               check=False)
    assert untrusted.returncode == 60, untrusted.stderr  # the certificate verifies only against the fleet's CA


def test_every_route_vllm_serves_is_refused_unless_allowlisted_and_the_key_is_in_scope(
        gateway: ServingHost) -> None:
    openapi = requests.get(f"http://{gateway.backend_address}:8000/openapi.json", timeout=30).json()
    routes = sorted({(p, m.upper()) for p, ops in openapi["paths"].items() for m in ops} |
                    {(p, "POST") for p in UNLISTED} | {(p, "GET") for p in UNLISTED} |
                    {(p, "POST") for p in ALLOWED - {"/v1/models"}})
    assert len(routes) > 40
    since = journal_now(gateway)
    seen: dict[tuple[str, str, str], int] = {}
    for path, method in routes:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        body = body_for(concrete) if method == "POST" else None
        for who, key in (("none", None), ("wrong", "not-a-client-key"), ("app", APP), ("chat-only", CHAT_ONLY)):
            seen[(concrete, method, who)] = gw(gateway, concrete, body, key=key, method=method)[0]
    for (path, method, who), status in seen.items():
        if path == "/health" and method == "GET":
            assert status == 200  # the gateway's own health route, answered without a key
        elif path not in ALLOWED or (path == "/v1/models" and method != "GET"):
            assert status in (404, 405), (path, method, who, status)
        elif method != "POST" and path != "/v1/models":
            assert status in (401, 405), (path, method, who, status)
        elif who in ("none", "wrong"):
            assert status == 401, (path, method, who, status)
        elif who == "chat-only" and path not in ("/v1/chat/completions", "/v1/completions", "/v1/models"):
            assert status == 403, (path, method, who, status)
        else:
            assert status == 200, (path, method, who, status)
    time.sleep(1)
    reached = {ln.split()[-1] for ln in haproxy_log(gateway, since) if " pool_" in ln}
    print(f"probed {len(routes)} routes x 4 keys = {len(seen)} requests; reached vLLM: {sorted(reached)}")
    assert reached and reached <= ALLOWED - {"/v1/models"}


def test_backends_refuse_other_sandbox_hosts_while_the_gateway_answers_them(gateway: ServingHost,
                                                                             sandbox_hosts) -> None:
    (probe,) = sandbox_hosts(1, prefix="probe")

    def connect(host: str, port: int) -> str:
        """How a TCP connection from the probe host ends: ok, ConnectionRefusedError, TimeoutError, ..."""
        code = ("import socket, sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()"
                "\n print('ok')\nexcept OSError as e:\n print(type(e).__name__)")
        return subprocess.run(["docker", "exec", probe, "python3", "-c", code, host, str(port)],
                              capture_output=True, text=True, check=True).stdout.strip()

    def curl(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", probe, "curl", "-sS", "-k", "-m", "5", "-o", "/dev/null", "-w",
                               "%{http_code}", url], capture_output=True, text=True, check=False)

    for port in (8000, 8001, 8002, 8404):
        assert connect(gateway.address, port) == "ConnectionRefusedError", port
        assert connect(gateway.backend_address, port) != "ok", port  # the internal network is not its network
    assert connect(gateway.address, 8443) == "ok"
    assert curl(f"{gateway.gateway_url}/health").stdout == "200"


def test_requests_beyond_a_keys_rate_limit_get_429_and_others_200(gateway: ServingHost) -> None:
    limited = [gw(gateway, "/v1/models", key=LIMITED)[0] for _ in range(9)]
    allowed = limited.count(200)
    assert 3 <= allowed <= 5 and limited == [200] * allowed + [429] * (9 - allowed), limited
    assert [gw(gateway, "/v1/models", key=APP)[0] for _ in range(9)] == [200] * 9


@pytest.fixture(scope="module")
def moto_origin() -> Iterator[str]:
    from tests.weights.origins import start_moto

    server = start_moto()
    yield server.url
    server.stop()


def test_a_full_vvv_deploy_leaks_no_client_key_backend_key_hf_token_or_s3_key(
        gateway: ServingHost, vllm_world: tuple[str, Path, Path], moto_origin: str, tmp_path: Path) -> None:
    """The session's last step. Every stage at -vvv, with every kind of secret in use: the gateway's client keys
    and the backend key, the embed model from a private hub repo (HF token), the rerank model from S3 (access key
    and secret). The CLI output, the ansible-runner artifacts, `docker inspect` of every container, `ps` and the
    journal (HAProxy's log included) on the host hold none of them."""
    import boto3

    from tests.weights.hub import hub_repo_layout
    from tests.weights.origins import sandbox_gateway, start_nginx

    if {s["name"] for s in FLEET_SPEC["services"]} != {"tiny-chat", "tiny-embed", "tiny-rerank"}:
        pytest.skip("VLLM_FLEET_E2E_ONLY leaves out services this step fetches")
    models = vllm_world[1]
    origin_host = sandbox_gateway()
    www = tmp_path / "hub"
    hub = start_nginx(tmp_path / "nginx-hub", www, host=origin_host, extra=hub_repo_layout(
        www, "e2e/tiny-embed", models / "tiny-embed", "0e2e" + "0" * 36, token=HF_TOKEN))
    s3 = start_nginx(tmp_path / "nginx-s3", tmp_path, host=origin_host, proxy_to=moto_origin)
    try:
        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id=S3_KEY,
                              aws_secret_access_key=S3_SECRET)
        client.create_bucket(Bucket="e2e")
        for f in sorted(p for p in (models / "tiny-rerank").rglob("*") if p.is_file()):
            client.put_object(Bucket="e2e", Key=f"tiny-rerank/{f.relative_to(models / 'tiny-rerank')}",
                              Body=f.read_bytes())
        spec = copy.deepcopy(FLEET_SPEC)
        by_name = {s["name"]: s for s in spec["services"]}
        by_name["tiny-embed"] |= {"storage_uri": "hf://e2e/tiny-embed", "storage": {
            "endpoint": hub.url, "credentials": {"hf_token": {"env": "E2E_HF_TOKEN"}}}}
        by_name["tiny-rerank"] |= {"storage_uri": "s3://e2e/tiny-rerank", "storage": {"credentials": {"s3": {
            "access_key_id": {"env": "E2E_S3_KEY"}, "secret_access_key": {"env": "E2E_S3_SECRET"},
            "endpoint": s3.url, "region": "us-east-1"}}}}
        result = gateway.deploy(
            spec, tags=None, verbose=3, artifacts=tmp_path / "runner",
            env={"E2E_HF_TOKEN": HF_TOKEN, "E2E_S3_KEY": S3_KEY, "E2E_S3_SECRET": S3_SECRET},
            extra_vars={"model_weights_wheelhouse": str(Path.home() / ".cache/vllm-fleet/fetch-wheels-test")})
        assert result["ok"], result["output"][-6000:]
    finally:
        hub.stop()
        s3.stop()
    assert gw(gateway, "/v1/embeddings", {"model": "tiny-embed", "input": ["from the hub"]})[0] == 200
    assert gw(gateway, "/v1/score", {"model": "tiny-rerank", "text_1": "a", "text_2": "b"})[0] == 200
    mounts = json.loads(gateway.docker("inspect", "-f", "{{json .Mounts}}", "vllm-tiny-rerank").stdout)
    source = next(m["Source"] for m in mounts if m["Destination"] == "/mnt/models")
    assert source.startswith("/var/lib/vllm-fleet/models/tiny-rerank/")  # served from the fetched S3 copy
    assert not source.startswith(MODELS_MOUNT)

    places: dict[str, str] = {"CLI output": result["output"]}
    artifacts = [p for p in (tmp_path / "runner").rglob("*") if p.is_file()]
    places |= {f"runner artifact {p.relative_to(tmp_path)}": p.read_text(errors="replace") for p in artifacts}
    assert "ESTABLISH" in result["output"] or any("Using module file" in t for t in places.values()), \
        "the run was not verbose"
    for host in (gateway,):
        for container in host.containers():
            places[f"docker inspect {container} on {host.name}"] = host.docker("inspect", container).stdout
        places[f"ps on {host.name}"] = host.exec("ps", "-eo", "args").stdout
        places[f"journal of {host.name}"] = host.exec("journalctl", "--no-pager", "-q", check=False).stdout
    places["haproxy's log"] = "\n".join(haproxy_log(gateway, "2000-01-01"))
    assert places["haproxy's log"], "HAProxy logged nothing"
    secrets = {"backend key": KEY, **{f"client key {k}": v for k, v in CLIENT_KEYS.items()}, "HF token": HF_TOKEN,
               "S3 access key": S3_KEY, "S3 secret": S3_SECRET}
    leaks = [f"{what} in {where}" for where, text in places.items() for what, value in secrets.items()
             if value in text]
    print(f"searched {len(places)} places ({len(artifacts)} runner artifacts) for {len(secrets)} secrets: "
          f"{len(leaks)} hits")
    assert len(artifacts) > 10 and leaks == []
