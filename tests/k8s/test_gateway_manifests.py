"""The gateway block on a cluster: Gateway API routes and Envoy Gateway policies, checked against the published
schemas of those resources (npm @kubernetes-models/gateway-api and @kubernetes-models/envoy-gateway, pinned in
tests/k8s/schemas/package.json, run with Node), with the scopes and rates the spec gives."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.harness import FAKE_SECRETS, run_program, unwrap
from tests.k8s.specs import load
from vllm_fleet.k8s.render import rendered_manifests
from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import validate_spec

HERE = Path(__file__).parent
SPEC = HERE / "good_specs" / "gateway-envoy.yaml"
SCHEMAS = HERE / "schemas"
GATEWAY_KINDS = {"HTTPRoute", "HTTPRouteFilter", "SecurityPolicy", "BackendTrafficPolicy"}


@pytest.fixture(scope="module")
def validator() -> Path:
    """The pinned schema packages, installed once per lock file into the user's cache with `npm ci`."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "Node.js and npm are needed (make setup installs them)"
    lock = (SCHEMAS / "package-lock.json").read_bytes()
    cache = Path.home() / ".cache" / "vllm-fleet" / f"k8s-schemas-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (cache / "node_modules" / ".package-lock.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SCHEMAS / name, cache / name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=cache, check=True, timeout=600)
    shutil.copyfile(SCHEMAS / "validate.mjs", cache / "validate.mjs")
    return cache


def validate(cache: Path, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(["node", str(cache / "validate.mjs")], input="\n".join(json.dumps(m) for m in manifests),
                          capture_output=True, text=True, check=True, timeout=120)
    return list(json.loads(proc.stdout))


def gateway_objects() -> list[dict[str, Any]]:
    dep = validate_spec(load(SPEC), CLUSTER_TARGET)
    return [m for m in rendered_manifests(dep) if m["kind"] in GATEWAY_KINDS]


def by(kind: str, name: str) -> dict[str, Any]:
    return next(m for m in gateway_objects() if m["kind"] == kind and m["metadata"]["name"] == name)


def test_every_gateway_object_matches_its_published_schema(validator: Path) -> None:
    objects = gateway_objects()
    assert {m["kind"] for m in objects} == GATEWAY_KINDS
    results = validate(validator, objects)
    assert len(results) == len(objects) and [r for r in results if r["error"]] == []


def test_the_schema_check_catches_a_wrong_value(validator: Path) -> None:
    route = copy.deepcopy(by("HTTPRoute", "chat-gateway"))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Exactly"
    policy = copy.deepcopy(by("SecurityPolicy", "chat-gateway-clients"))
    del policy["spec"]["apiKeyAuth"]["extractFrom"]
    errors = [r["error"] for r in validate(validator, [route, policy])]
    assert "path/type must be equal to one of the allowed values" in errors[0]
    assert "apiKeyAuth must have required property extractFrom" in errors[1]


def test_each_route_allows_only_its_tasks_routes_for_its_model() -> None:
    chat = by("HTTPRoute", "chat-gateway")["spec"]
    matches = chat["rules"][0]["matches"]
    assert [m["path"] for m in matches] == [{"type": "Exact", "value": "/v1/chat/completions"},
                                            {"type": "Exact", "value": "/v1/completions"}]
    assert all(m["headers"] == [{"type": "Exact", "name": "x-ai-eg-model", "value": "qwen-7b"}] for m in matches)
    assert chat["rules"][0]["backendRefs"] == [{"name": "chat-predictor", "port": 80}]
    embed = by("HTTPRoute", "embed-gateway")["spec"]
    assert [m["path"]["value"] for m in embed["rules"][0]["matches"]] == ["/v1/embeddings"]


def test_only_clients_in_scope_are_allowed_and_rates_apply_per_client() -> None:
    chat = by("SecurityPolicy", "chat-gateway-clients")["spec"]
    assert [r["name"] for r in chat["apiKeyAuth"]["credentialRefs"]] == ["llm-client-keys"]
    assert chat["authorization"]["rules"][0]["principal"]["headers"][0]["values"] == ["search"]
    assert chat["authorization"]["defaultAction"] == "Deny" and chat["apiKeyAuth"]["sanitize"] is True
    embed = by("SecurityPolicy", "embed-gateway-clients")["spec"]
    assert embed["authorization"]["rules"][0]["principal"]["headers"][0]["values"] == ["batch", "search"]
    rates = by("BackendTrafficPolicy", "chat-gateway-rates")["spec"]["rateLimit"]["local"]["rules"]
    assert rates == [{"clientSelectors": [{"headers": [{"type": "Exact", "name": "x-vllm-fleet-client",
                                                        "value": "search"}]}],
                      "limit": {"requests": 600, "unit": "Minute"}}]


def test_the_backend_key_reaches_only_the_credential_secret_as_a_secret_output() -> None:
    run = run_program(load(SPEC))
    assert run.error is None
    key = FAKE_SECRETS["vllmApiKey"]
    credential = next(r for r in run.mocks.resources if r.name == "secret-llm-chat-gateway-credential")
    assert unwrap(credential.inputs)["stringData"] == {"credential": f"Bearer {key}"}
    elsewhere = [r.name for r in run.mocks.resources if r.typ != "kubernetes:core/v1:Secret"
                 and key in json.dumps(unwrap(r.inputs))]
    assert elsewhere == []


def test_each_adapter_name_has_its_own_route_and_only_its_scoped_clients_pass() -> None:
    """A key scoped to an adapter reaches the base model's predictor through the adapter's name only: the base
    route does not admit it, and the adapter's route admits no one else; a name no client may call gets no route."""
    objects = gateway_objects()
    routes = {m["metadata"]["name"]: m["spec"] for m in objects if m["kind"] == "HTTPRoute"}
    legal = routes["chat-gateway-acme-legal-a1195d7a"]
    assert {h["value"] for m in legal["rules"][0]["matches"] for h in m["headers"]} == {"acme/legal"}
    assert legal["rules"][0]["backendRefs"] == routes["chat-gateway"]["rules"][0]["backendRefs"]
    assert legal["rules"][0]["filters"] == routes["chat-gateway"]["rules"][0]["filters"]  # one backend credential
    policy = by("SecurityPolicy", "chat-gateway-acme-legal-a1195d7a-clients")["spec"]
    assert policy["authorization"]["rules"][0]["principal"]["headers"][0]["values"] == ["legal"]
    base = by("SecurityPolicy", "chat-gateway-clients")["spec"]
    assert "legal" not in base["authorization"]["rules"][0]["principal"]["headers"][0]["values"]
    assert not any(h["value"] == "support-tone" for r in routes.values() for m in r["rules"][0]["matches"]
                   for h in m["headers"])
    assert [m["metadata"]["name"] for m in objects if m["kind"] == "HTTPRouteFilter"] == [
        "chat-gateway-credential", "embed-gateway-credential"]


def test_adapter_route_names_are_dns_labels_and_distinct_for_names_that_fold_alike() -> None:
    from vllm_fleet.k8s.gateway import route_name

    svc = validate_spec(load(SPEC), CLUSTER_TARGET).services[0]
    names = {route_name(svc, m) for m in ("acme/legal", "acme-legal", "ACME.legal", "support-tone")}
    assert len(names) == 4 and route_name(svc, "support-tone") == "chat-gateway-support-tone"
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names)
    assert route_name(svc, svc.model_name) == route_name(svc) == "chat-gateway"


def test_the_stack_exports_every_model_name_a_client_can_call_adapters_included() -> None:
    run = run_program(load(SPEC))
    assert run.error is None
    assert run.exports["models"] == ["acme/legal", "embed", "qwen-7b", "support-tone"]
    assert len(run.exports["served_model_names"]) == 2  # Outputs: their values are the components' (test_program)
