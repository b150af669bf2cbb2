"""The gateway block on a cluster: Envoy AI Gateway routes, Envoy Gateway's policies on the routes AI Gateway
generates, a NetworkPolicy per predictor and the listener's limits. Each object is checked against its published
schema: Envoy Gateway's with npm @kubernetes-models/envoy-gateway (pinned in tests/k8s/schemas/package.json, run
with Node), AI Gateway's against its CRDs' v1beta1 schemas (tests/k8s/schemas/ai-gateway/, from the v1.1.0 tag),
the NetworkPolicy against the kubernetes client's model. No Envoy runs here: what Envoy would do with a request is
worked out from the rendered objects by `EnvoyReading` below, a model of Envoy Gateway's filter order."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.k8s.harness import FAKE_SECRETS, run_program, unwrap
from tests.k8s.schema import check
from tests.k8s.specs import load
from vllm_fleet.k8s.gateway import CLIENT_HEADER, MODEL_HEADER, RULES_PER_ROUTE, route_names
from vllm_fleet.k8s.render import rendered_manifests
from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import validate_spec

HERE = Path(__file__).parent
SPEC = HERE / "good_specs" / "gateway-envoy.yaml"
SCHEMAS = HERE / "schemas"
AI_GATEWAY_SCHEMAS = SCHEMAS / "ai-gateway" / "v1.1.0.json"
ENVOY_GATEWAY_KINDS = {"SecurityPolicy", "BackendTrafficPolicy", "Backend", "ClientTrafficPolicy"}
AI_GATEWAY_KINDS = {"AIGatewayRoute", "AIServiceBackend", "BackendSecurityPolicy"}
GATEWAY_KINDS = ENVOY_GATEWAY_KINDS | AI_GATEWAY_KINDS | {"NetworkPolicy"}
# The clients of the spec and the Secret key each one's key is stored under (its client id).
KEYS = {"search": ("llm-client-keys", "search"), "batch": ("llm-batch-keys", "batch"),
        "legal": ("llm-client-keys", "legal")}


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


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused (a structural schema prunes them; `kubectl apply` with strict field
    validation refuses them, and a pruned field is a setting that silently does nothing)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_closed(v) if k not in ("properties",) else {n: _closed(s) for n, s in v.items()})
           for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    schema = _closed(json.loads(AI_GATEWAY_SCHEMAS.read_text())["schemas"][manifest["kind"]])
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def objects(spec: Any = None) -> list[dict[str, Any]]:
    dep = validate_spec(load(SPEC) if spec is None else spec, CLUSTER_TARGET)
    return [m for m in rendered_manifests(dep) if m["kind"] in GATEWAY_KINDS
            or (m["kind"] == "Secret" and m["metadata"]["name"].endswith("-gateway-credential"))]


def by(kind: str, name: str, rendered: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return next(m for m in rendered or objects() if m["kind"] == kind and m["metadata"]["name"] == name)


def test_every_envoy_gateway_object_matches_its_published_schema(validator: Path) -> None:
    rendered = [m for m in objects() if m["kind"] in ENVOY_GATEWAY_KINDS]
    assert {m["kind"] for m in rendered} == ENVOY_GATEWAY_KINDS
    results = validate(validator, rendered)
    assert len(results) == len(rendered) and [r for r in results if r["error"]] == []


def test_every_ai_gateway_object_matches_the_published_crd_schema_and_its_rules() -> None:
    rendered = [m for m in objects() if m["kind"] in AI_GATEWAY_KINDS]
    assert {m["kind"] for m in rendered} == AI_GATEWAY_KINDS
    assert {m["metadata"]["name"]: crd_errors(m) for m in rendered} == {m["metadata"]["name"]: [] for m in rendered}
    # The CEL rules (x-kubernetes-validations) jsonschema does not run, on the fields set here, read by their meaning.
    schemas = json.loads(AI_GATEWAY_SCHEMAS.read_text())["schemas"]
    backend_rule = schemas["AIServiceBackend"]["properties"]["spec"]["properties"]["backendRef"][
        "x-kubernetes-validations"][0]["rule"]
    assert "self.kind == 'Backend'" in backend_rule and "self.group == 'gateway.envoyproxy.io'" in backend_rule
    parent_rule = schemas["AIGatewayRoute"]["properties"]["spec"]["properties"]["parentRefs"][
        "x-kubernetes-validations"][0]["rule"]
    assert parent_rule == "self.all(match, match.kind == 'Gateway')"
    for m in rendered:
        if m["kind"] == "AIServiceBackend":
            assert (m["spec"]["backendRef"]["kind"], m["spec"]["backendRef"]["group"]) == (
                "Backend", "gateway.envoyproxy.io")
        if m["kind"] == "AIGatewayRoute":
            assert all(p["kind"] == "Gateway" for p in m["spec"]["parentRefs"])
            assert len(m["spec"]["rules"]) <= RULES_PER_ROUTE
        if m["kind"] == "BackendSecurityPolicy":
            assert m["spec"]["type"] == "APIKey" and set(m["spec"]) == {"targetRefs", "type", "apiKey"}


def test_the_network_policy_matches_the_kubernetes_model() -> None:
    policies = [m for m in objects() if m["kind"] == "NetworkPolicy"]
    assert len(policies) == 3 and [p for m in policies for p in check(m, "V1NetworkPolicy")] == []


def test_the_schema_checks_catch_a_wrong_value(validator: Path) -> None:
    policy = copy.deepcopy(by("SecurityPolicy", "chat-gateway-clients"))
    del policy["spec"]["apiKeyAuth"]["extractFrom"]
    assert "apiKeyAuth must have required property extractFrom" in validate(validator, [policy])[0]["error"]
    route = copy.deepcopy(by("AIGatewayRoute", "chat-gateway"))
    route["spec"]["rules"][0]["matches"][0]["path"] = {"type": "Exact", "value": "/v1/chat/completions"}
    route["spec"]["rules"][0]["matches"][0]["headers"][0]["type"] = "Exactly"
    errors = crd_errors(route)
    assert any("Additional properties are not allowed ('path'" in e for e in errors), errors
    assert any(e.startswith("spec/rules/0/matches/0/headers/0/type: 'Exactly' is not one of") for e in errors), errors
    backend = copy.deepcopy(by("AIServiceBackend", "chat-gateway-backend"))
    backend["spec"]["schema"]["name"] = "vLLM"
    assert any("'vLLM' is not one of" in e for e in crd_errors(backend))
    netpol = copy.deepcopy(by("NetworkPolicy", "chat-predictor-ingress"))
    netpol["spec"]["ingress"][0]["ports"][0]["portNumber"] = 8000
    assert check(netpol, "V1NetworkPolicy") == [
        "spec.ingress[0].ports[0].portNumber: unknown field of V1NetworkPolicyPort"]


@dataclass
class EnvoyReading:
    """A model of what Envoy Gateway's filter chain does with one request on the rendered objects (a test double of
    Envoy, which cannot run here). Its order is Envoy Gateway's: the route first matched by the request's headers;
    API-key authentication (order 4) with that route's SecurityPolicy; AI Gateway's processor (inserted before the
    RBAC, local rate-limit and other Envoy Gateway filters), which overwrites MODEL_HEADER with the body's model and
    clears the route cache; the route matched again; the authorization (RBAC, order 301) of the route now matched."""

    rendered: list[dict[str, Any]]

    def routes(self) -> list[dict[str, Any]]:
        return [m for m in self.rendered if m["kind"] == "AIGatewayRoute"]

    def match(self, headers: dict[str, str]) -> dict[str, Any] | None:
        """The route whose rule matches the headers; with none, the first route's catch-all (AI Gateway adds one to
        every generated route, and Gateway API prefers the oldest route: the first rendered)."""
        for route in self.routes():
            for rule in route["spec"]["rules"]:
                if any(all(headers.get(h["name"]) == h["value"] for h in m["headers"]) for m in rule["matches"]):
                    return route
        return self.routes()[0] if self.routes() else None

    def policy(self, route: dict[str, Any]) -> dict[str, Any]:
        name = route["metadata"]["name"]
        return next(m["spec"] for m in self.rendered if m["kind"] == "SecurityPolicy"
                    and m["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                                     "name": name}])

    def send(self, client: str, body_model: str, client_headers: dict[str, str]) -> tuple[bool, str | None]:
        """(allowed, the Envoy Gateway Backend the request would reach) for a client's key and a body's model."""
        first = self.match(client_headers)
        if first is None:
            return False, None
        secret, client_id = KEYS[client]
        auth = self.policy(first)["apiKeyAuth"]
        if secret not in {ref["name"] for ref in auth["credentialRefs"]}:
            return False, None  # 401 at the first route
        headers = {**client_headers, MODEL_HEADER: body_model, auth["forwardClientIDHeader"]: client_id}
        final = self.match(headers)
        rule = next((r for r in final["spec"]["rules"] for m in r["matches"]
                     if all(headers.get(h["name"]) == h["value"] for h in m["headers"])), None) if final else None
        if rule is None:
            return False, None  # 404: no rule holds the body's model
        allowed = any(all(headers.get(h["name"]) in h["values"] for h in r["principal"]["headers"])
                      for r in self.policy(final)["authorization"]["rules"] if r["action"] == "Allow")
        backend = next(m for m in self.rendered if m["kind"] == "AIServiceBackend"
                       and m["metadata"]["name"] == rule["backendRefs"][0]["name"])
        return allowed, backend["spec"]["backendRef"]["name"]


def test_a_client_sent_model_header_changes_neither_the_route_nor_the_scope() -> None:
    """For every client, every model name in the body and every model header a client could send (none, each
    routed name, an unrouted one): the verdict and the backend are those of the body's model alone, and a client is
    allowed exactly the names its scope holds."""
    envoy = EnvoyReading(objects())
    scopes = {"search": {"qwen-7b", "embed"}, "batch": {"embed", "rerank"}, "legal": {"acme/legal"}}
    backends = {"qwen-7b": "chat-gateway-backend", "acme/legal": "chat-gateway-backend",
                "embed": "embed-gateway-backend", "rerank": "rerank-gateway-backend", "support-tone": None}
    sent = [{}, *({MODEL_HEADER: m} for m in backends), {MODEL_HEADER: "QWEN-7B"}]
    verdicts = 0
    for client, body_model, headers in itertools.product(KEYS, backends, sent):
        allowed, backend = envoy.send(client, body_model, headers)
        want = body_model in scopes[client]
        assert (allowed, backend if allowed else None) == (want, backends[body_model] if want else None), (
            client, body_model, headers)
        verdicts += 1
    assert verdicts == 3 * 5 * 7
    # Every header routing or authorization reads is one the Gateway sets itself.
    read = {h["name"] for r in envoy.routes() for rule in r["spec"]["rules"] for m in rule["matches"]
            for h in m["headers"]}
    read |= {h["name"] for m in envoy.rendered if m["kind"] == "SecurityPolicy"
             for r in m["spec"]["authorization"]["rules"] for h in r["principal"]["headers"]}
    assert read == {MODEL_HEADER, CLIENT_HEADER}
    policies = [m["spec"] | {"targetRefs": None} for m in envoy.rendered if m["kind"] == "SecurityPolicy"]
    assert len(policies) == 3 and all(p == policies[0] for p in policies)


def test_the_envoy_reading_refuses_a_key_its_first_route_does_not_know() -> None:
    """The model of Envoy is not vacuous: with a policy that forgets a client's Secret on the route first matched,
    that client is refused although its scope holds the body's model (the reason every policy knows every key)."""
    rendered = objects()
    broken = copy.deepcopy(rendered)
    first = next(m for m in broken if m["kind"] == "SecurityPolicy")
    first["spec"]["apiKeyAuth"]["credentialRefs"] = [
        r for r in first["spec"]["apiKeyAuth"]["credentialRefs"] if r["name"] != "llm-batch-keys"]
    assert EnvoyReading(rendered).send("batch", "embed", {}) == (True, "embed-gateway-backend")
    assert EnvoyReading(broken).send("batch", "embed", {}) == (False, None)


def test_each_rule_matches_only_the_model_header_and_reaches_the_predictor_through_its_backend() -> None:
    rendered = objects()
    chat = by("AIGatewayRoute", "chat-gateway", rendered)["spec"]
    header = [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": name}]}
              for name in ("qwen-7b", "acme/legal")]
    assert [r["matches"] for r in chat["rules"]] == [[h] for h in header]
    assert all(r["backendRefs"] == [{"name": "chat-gateway-backend"}] for r in chat["rules"])
    assert chat["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg",
                                   "namespace": "envoy-gateway-system"}] and chat["hostnames"] == ["llm.example.com"]
    backend = by("Backend", "chat-gateway-backend", rendered)["spec"]
    assert backend == {"endpoints": [{"fqdn": {"hostname": "chat-predictor.llm.svc.cluster.local", "port": 80}}]}
    assert by("AIServiceBackend", "chat-gateway-backend", rendered)["spec"]["schema"] == {"name": "OpenAI"}
    # A score model is reached through AI Gateway's Cohere v2 rerank endpoint, which vLLM also serves.
    assert by("AIServiceBackend", "rerank-gateway-backend", rendered)["spec"]["schema"] == {
        "name": "Cohere", "version": "v2"}


def test_only_clients_in_scope_are_allowed_and_rates_apply_per_client_and_model() -> None:
    policy = by("SecurityPolicy", "embed-gateway-clients")["spec"]
    assert [r["name"] for r in policy["apiKeyAuth"]["credentialRefs"]] == ["llm-batch-keys", "llm-client-keys"]
    assert policy["authorization"]["defaultAction"] == "Deny" and policy["apiKeyAuth"]["sanitize"] is True
    assert {r["name"]: [h["values"] for h in r["principal"]["headers"]] for r in policy["authorization"]["rules"]} == {
        "search": [["search"], ["embed", "qwen-7b"]], "batch": [["batch"], ["embed", "rerank"]],
        "legal": [["legal"], ["acme/legal"]]}
    chat_rates = by("BackendTrafficPolicy", "chat-gateway-rates")["spec"]["rateLimit"]["local"]["rules"]
    assert chat_rates == [{"clientSelectors": [{"headers": [
        {"type": "Exact", "name": "x-vllm-fleet-client", "value": "search"},
        {"type": "Exact", "name": "x-ai-eg-model", "value": "qwen-7b"}]}],
        "limit": {"requests": 600, "unit": "Minute"}}]
    assert [m["metadata"]["name"] for m in objects() if m["kind"] == "BackendTrafficPolicy"] == [
        "chat-gateway-rates", "embed-gateway-rates"]  # no client of rerank has a rate


def test_the_backend_key_reaches_only_the_credential_secrets_as_secret_outputs() -> None:
    run = run_program(load(SPEC))
    assert run.error is None
    key = FAKE_SECRETS["vllmApiKey"]
    credentials = [r for r in run.mocks.resources if r.name.endswith("-gateway-credential")
                   and r.typ == "kubernetes:core/v1:Secret"]
    assert [unwrap(r.inputs)["stringData"] for r in credentials] == [{"apiKey": key}] * 3
    elsewhere = [r.name for r in run.mocks.resources if r.typ != "kubernetes:core/v1:Secret"
                 and key in json.dumps(unwrap(r.inputs))]
    assert elsewhere == []


def test_a_model_name_no_client_may_call_has_no_rule_and_a_service_without_any_has_no_route() -> None:
    rendered = objects()
    rules = [h["value"] for m in rendered if m["kind"] == "AIGatewayRoute" for r in m["spec"]["rules"]
             for match in r["matches"] for h in match["headers"]]
    assert sorted(rules) == ["acme/legal", "embed", "qwen-7b", "rerank"] and "support-tone" not in rules
    spec = load(SPEC)
    spec["gateway"]["clients"][1]["models"] = ["embed"]  # no client may call rerank now
    alone = objects(spec)
    assert [m["kind"] for m in alone if m["metadata"]["labels"].get("vllm-fleet/service") == "rerank"] == [
        "NetworkPolicy"]  # closed, and unreachable: the Gateway answers 404 for it


def test_more_than_15_model_names_are_split_into_routes_of_at_most_15_rules_with_the_same_policy() -> None:
    spec = load(SPEC)
    chat = spec["services"][0]
    chat["adapters"] = [{"name": f"team-{i:02d}", "storage_uri": f"pvc://lora-adapters/team-{i:02d}"}
                        for i in range(20)]
    spec["gateway"]["clients"][2]["models"] = ["*"]
    rendered = objects(spec)
    routes = [m for m in rendered if m["kind"] == "AIGatewayRoute" and m["metadata"]["labels"][
        "vllm-fleet/service"] == "chat"]
    assert [(r["metadata"]["name"], len(r["spec"]["rules"])) for r in routes] == [
        ("chat-gateway", 15), ("chat-gateway-2", 6)]
    svc = validate_spec(spec, CLUSTER_TARGET).services[0]
    from vllm_fleet.spec.gateway import Gateway
    assert route_names(svc, Gateway.model_validate(spec["gateway"])) == ["chat-gateway", "chat-gateway-2"]
    assert all(crd_errors(r) == [] for r in routes)
    envoy = EnvoyReading(rendered)
    assert envoy.send("legal", "team-19", {}) == (True, "chat-gateway-backend")
    assert envoy.send("search", "team-19", {MODEL_HEADER: "qwen-7b"}) == (False, "chat-gateway-backend")


def test_each_predictor_admits_only_the_gateways_proxies_and_the_listed_namespaces_on_its_port() -> None:
    policy = by("NetworkPolicy", "chat-predictor-ingress")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "chat"}}
    assert policy["policyTypes"] == ["Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
         "podSelector": {"matchLabels": {"gateway.envoyproxy.io/owning-gateway-name": "eg",
                                         "gateway.envoyproxy.io/owning-gateway-namespace": "envoy-gateway-system"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_the_listener_limits_the_body_it_buffers_and_the_time_to_send_it() -> None:
    (limits,) = [m for m in objects() if m["kind"] == "ClientTrafficPolicy"]
    assert limits["metadata"]["namespace"] == "envoy-gateway-system"
    assert limits["spec"] == {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"}],
        "connection": {"bufferLimit": "1024Ki"}, "timeout": {"http": {"requestReceivedTimeout": "30s"}}}
    spec = load(SPEC)
    spec["gateway"]["kubernetes"].update(max_body_kib=None)
    assert [m for m in objects(spec) if m["kind"] == "ClientTrafficPolicy"] == []


def test_the_stack_exports_every_model_name_a_client_can_call_adapters_included() -> None:
    run = run_program(load(SPEC))
    assert run.error is None
    assert run.exports["models"] == ["acme/legal", "embed", "qwen-7b", "rerank", "support-tone"]
    assert len(run.exports["served_model_names"]) == 3  # Outputs: their values are the components' (test_program)
