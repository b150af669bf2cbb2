"""The spec's gateway block on a cluster: Envoy AI Gateway routes on the user's Gateway, Envoy Gateway's policies on
the routes it generates, and a NetworkPolicy that closes each predictor to everything but the Gateway's proxies.

Why AI Gateway: Gateway API matches headers, never bodies, and a route that requires a model header a client may
set lets the client choose its route and its scope. Envoy AI Gateway's external processor reads the body's `model`
(and overwrites `x-ai-eg-model` with it, whatever the client sent), but only on the routes the controller generates
from its own `AIGatewayRoute`s. So, per service:
- a `Secret`, Envoy Gateway `Backend`, `AIServiceBackend` and AI Gateway `BackendSecurityPolicy`: the predictor's
  address and the backend key (the service's `api_key`, from Pulumi config) that AI Gateway injects;
- one `AIGatewayRoute` per 15 model names (the CRD's limit) that at least one client may call (the served model
  and each LoRA adapter), one rule per name, matching `x-ai-eg-model`. The controller generates an `HTTPRoute` of
  the same name, plus a catch-all rule of its own;
- on that generated route, an Envoy Gateway `SecurityPolicy`: API-key authentication against every client's Secret
  (the Secret's key is the client id, forwarded in `x-vllm-fleet-client`, the key removed) and an authorization
  that allows a client only for the model names in its scope. Envoy Gateway orders its filters so that API-key
  authentication runs before AI Gateway's processor, on whichever route matched first (a catch-all when the
  client sends no model header), and the authorization (RBAC) after it, on the route the body's model chose. Every
  route's policy therefore holds every client and every client's whole scope: whichever route Envoy matched
  first, the same keys are known, and the scope is checked against the model the processor read from the body;
- for clients with `requests_per_minute`, a `BackendTrafficPolicy` on the generated route: a local rate limit per
  client and model name (it runs after the processor too);
- a `NetworkPolicy` on the predictor's pods admitting only the Gateway's Envoy pods (and `admit_namespaces`) on
  the server's port.
Once per Gateway (deployment-level): a `ClientTrafficPolicy` with the listener's body buffer limit and the time a
client has to send its request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vllm_fleet.k8s.manifests import MANAGED_BY, ConfigSecret, Manifest, object_meta, predictor_service, server_port
from vllm_fleet.k8s.model import GatewayClusterSettings, GatewayParent
from vllm_fleet.k8s.validation import cluster_settings
from vllm_fleet.spec import Service
from vllm_fleet.spec.gateway import Gateway, GatewayClient, callable_models, client_scope

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"
ENVOY_GATEWAY = f"{ENVOY_GATEWAY_GROUP}/v1alpha1"
AI_GATEWAY_GROUP = "aigateway.envoyproxy.io"
AI_GATEWAY = f"{AI_GATEWAY_GROUP}/v1beta1"
# AI Gateway's processor sets this header from the body's model field, overwriting a client's (a constant of it).
MODEL_HEADER = "x-ai-eg-model"
CLIENT_HEADER = "x-vllm-fleet-client"
# AI Gateway's BackendSecurityPolicy of type APIKey reads this key of its Secret.
CREDENTIAL_KEY = "apiKey"
# An AIGatewayRoute holds at most 15 rules (the generated HTTPRoute's 16th is the controller's catch-all).
RULES_PER_ROUTE = 15
# The labels Envoy Gateway puts on the Envoy pods of a Gateway.
OWNING_GATEWAY_NAME = "gateway.envoyproxy.io/owning-gateway-name"
OWNING_GATEWAY_NAMESPACE = "gateway.envoyproxy.io/owning-gateway-namespace"
NAMESPACE_NAME = "kubernetes.io/metadata.name"
# KServe's label on the pods of an InferenceService.
ISVC_LABEL = "serving.kserve.io/inferenceservice"


def routed_models(svc: Service, gw: Gateway) -> list[str]:
    """The model names of a service that at least one client may call: the served model, then its adapters."""
    return [m for m in (svc.model_name, *(a.name for a in svc.adapters))
            if any(client_scope(c, [m]) for c in gw.clients)]


def route_names(svc: Service, gw: Gateway, models: list[str] | None = None) -> list[str]:
    """The service's AIGatewayRoutes, one per 15 routed model names (`models`, when the caller has them already):
    `<service>-gateway`, `<service>-gateway-2`..."""
    count = -(-len(routed_models(svc, gw) if models is None else models) // RULES_PER_ROUTE)
    return [f"{svc.name}-gateway" + (f"-{i + 1}" if i else "") for i in range(count)]


def backend_name(svc: Service) -> str:
    return f"{svc.name}-gateway-backend"


def credential_secret_name(svc: Service) -> str:
    return f"{svc.name}-gateway-credential"


def _meta(svc: Service, name: str) -> dict[str, Any]:
    return object_meta(svc, cluster_settings(svc), name)


def _settings(gw: Gateway) -> GatewayClusterSettings:
    return GatewayClusterSettings.model_validate(gw.kubernetes)


def _gateway_ref(parent: GatewayParent, *, namespaced: bool) -> dict[str, Any]:
    """A reference to the user's Gateway (its listener when `section_name` is set); a route's names its namespace,
    a policy's is local to the Gateway's."""
    ref: dict[str, Any] = {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": parent.name}
    if namespaced and parent.namespace:
        ref["namespace"] = parent.namespace
    if parent.section_name:
        ref["sectionName"] = parent.section_name
    return ref


def _gateway_namespace(parent: GatewayParent, svc: Service) -> str:
    """A parent without a namespace is in the route's, which is the service's."""
    return parent.namespace or cluster_settings(svc).namespace


def service_gateway_manifests(svc: Service, gw: Gateway | None, services: Sequence[Service]) -> list[Manifest]:
    """The gateway objects of one service, in creation order: its NetworkPolicy, then (when a client may call one
    of its model names) the backend credential, the backend and its AI Gateway records, and each route with its
    policies. `services` are the deployment's, whose model names every route's policy scopes."""
    if gw is None:
        return []
    s = _settings(gw)
    out: list[Manifest] = [_network_policy(svc, s)]
    models = routed_models(svc, gw)
    if not models:
        return out  # no client may call it: no route, the Gateway answers 404 for its names
    assert svc.api_key is not None and svc.api_key.pulumi_config is not None  # cluster_rules hold it
    namespace = cluster_settings(svc).namespace
    backend = {"group": ENVOY_GATEWAY_GROUP, "kind": "Backend", "name": backend_name(svc)}
    # A score model answers AI Gateway's Cohere v2 rerank endpoint (vLLM serves /v2/rerank); the others its OpenAI
    # endpoints, under the schema's default prefix, v1.
    schema = {"name": "Cohere", "version": "v2"} if svc.task.value == "score" else {"name": "OpenAI"}
    out += [
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(svc, credential_secret_name(svc)),
         "type": "Opaque", "stringData": {CREDENTIAL_KEY: ConfigSecret(svc.api_key.pulumi_config)}},
        {"apiVersion": ENVOY_GATEWAY, "kind": "Backend", "metadata": _meta(svc, backend_name(svc)),
         "spec": {"endpoints": [{"fqdn": {"hostname": f"{predictor_service(svc)}.{namespace}.svc.cluster.local",
                                          "port": 80}}]}},
        {"apiVersion": AI_GATEWAY, "kind": "AIServiceBackend", "metadata": _meta(svc, backend_name(svc)),
         "spec": {"schema": schema, "backendRef": backend}},
        {"apiVersion": AI_GATEWAY, "kind": "BackendSecurityPolicy", "metadata": _meta(svc, credential_secret_name(svc)),
         "spec": {"targetRefs": [{"group": AI_GATEWAY_GROUP, "kind": "AIServiceBackend", "name": backend_name(svc)}],
                  "type": "APIKey", "apiKey": {"secretRef": {"name": credential_secret_name(svc)}}}},
    ]
    fleet_models = sorted(callable_models(services))
    for i, route in enumerate(route_names(svc, gw, models)):
        out += _route(svc, gw, s, route, models[i * RULES_PER_ROUTE:(i + 1) * RULES_PER_ROUTE], fleet_models)
    return out


def _keyed_clients(gw: Gateway) -> list[GatewayClient]:
    return [c for c in gw.clients if c.key.k8s_secret]  # cluster_rules give every client key as a k8s_secret


def _client_id(client: GatewayClient) -> str:
    assert client.key.k8s_secret is not None
    return client.key.k8s_secret.key


def _route(svc: Service, gw: Gateway, s: GatewayClusterSettings, route: str, models: list[str],
           fleet_models: list[str]) -> list[Manifest]:
    """One AIGatewayRoute (a rule per model name, all to the service's backend) and the policies on the HTTPRoute
    AI Gateway generates from it, which has the same name."""
    spec: dict[str, Any] = {
        "parentRefs": [_gateway_ref(s.parent, namespaced=True)],
        "rules": [{"matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": model}]}],
                   "backendRefs": [{"name": backend_name(svc)}],
                   "timeouts": {"request": f"{gw.request_timeout_seconds}s"}}
                  for model in models],
    }
    if s.hostnames:
        spec["hostnames"] = list(s.hostnames)
    target = [{"group": GATEWAY_API_GROUP, "kind": "HTTPRoute", "name": route}]
    clients = _keyed_clients(gw)
    rules = [{"name": c.name, "action": "Allow", "principal": {"headers": [
        {"name": CLIENT_HEADER, "values": [_client_id(c)]},
        {"name": MODEL_HEADER, "values": client_scope(c, fleet_models)}]}}
        for c in clients if client_scope(c, fleet_models)]
    out: list[Manifest] = [
        {"apiVersion": AI_GATEWAY, "kind": "AIGatewayRoute", "metadata": _meta(svc, route), "spec": spec},
        {"apiVersion": ENVOY_GATEWAY, "kind": "SecurityPolicy", "metadata": _meta(svc, f"{route}-clients"),
         "spec": {
             "targetRefs": target,
             "apiKeyAuth": {
                 "credentialRefs": [{"group": "", "kind": "Secret", "name": name}
                                    for name in sorted({c.key.k8s_secret.name for c in clients
                                                        if c.key.k8s_secret})],
                 "extractFrom": [{"headers": ["Authorization"]}],
                 "forwardClientIDHeader": CLIENT_HEADER,
                 "sanitize": True,
             },
             "authorization": {"defaultAction": "Deny", "rules": rules},
         }},
    ]
    limited = [{"clientSelectors": [{"headers": [{"type": "Exact", "name": CLIENT_HEADER, "value": _client_id(c)},
                                                 {"type": "Exact", "name": MODEL_HEADER, "value": model}]}],
                "limit": {"requests": c.requests_per_minute, "unit": "Minute"}}
               for c in clients if c.requests_per_minute for model in client_scope(c, models)]
    if limited:
        out.append({"apiVersion": ENVOY_GATEWAY, "kind": "BackendTrafficPolicy",
                    "metadata": _meta(svc, f"{route}-rates"),
                    "spec": {"targetRefs": target, "rateLimit": {"type": "Local", "local": {"rules": limited}}}})
    return out


def _network_policy(svc: Service, s: GatewayClusterSettings) -> Manifest:
    """The predictor's pods admit the Gateway's Envoy pods, and pods of `admit_namespaces`, on the server's port;
    nothing else in the cluster reaches vLLM's routes (a NetworkPolicy does not stop the kubelet's probes)."""
    peers: list[dict[str, Any]] = [{
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: s.proxy_namespace}},
        "podSelector": {"matchLabels": {OWNING_GATEWAY_NAME: s.parent.name,
                                        OWNING_GATEWAY_NAMESPACE: _gateway_namespace(s.parent, svc)}},
    }] + [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: ns}}} for ns in s.admit_namespaces]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(svc, f"{svc.name}-predictor-ingress"),
            "spec": {"podSelector": {"matchLabels": {ISVC_LABEL: svc.name}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": server_port(svc)}]}]}}


def listener_manifests(gw: Gateway | None, services: Sequence[Service]) -> list[Manifest]:
    """One ClientTrafficPolicy per Gateway the routes attach to (a parent without a namespace is a Gateway in each
    service's namespace): the listener's body buffer limit and the time a client has to send its request."""
    if gw is None:
        return []
    s = _settings(gw)
    if s.max_body_kib is None:
        return []
    out: list[Manifest] = []
    for namespace in dict.fromkeys(_gateway_namespace(s.parent, svc) for svc in services):
        out.append({
            "apiVersion": ENVOY_GATEWAY, "kind": "ClientTrafficPolicy",
            "metadata": {"name": f"{s.parent.name}-vllm-fleet-limits", "namespace": namespace,
                         "labels": {**MANAGED_BY, "vllm-fleet/part": "gateway"}},
            "spec": {"targetRefs": [_gateway_ref(s.parent, namespaced=False)],
                     "connection": {"bufferLimit": f"{s.max_body_kib}Ki"},
                     "timeout": {"http": {"requestReceivedTimeout": f"{s.body_timeout_seconds}s"}}},
        })
    return out
