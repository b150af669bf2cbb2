"""The spec's gateway block on a cluster: Gateway API routes with Envoy Gateway's policies, one set per model.

Per served model:
- an `HTTPRoute` on the user's Gateway (`gateway.kubernetes.parent`) whose only rules are the routes of the model's
  task, each matched exactly and only for requests carrying the model in `gateway.kubernetes.model_header` (the
  header Envoy AI Gateway's external processor fills from the body's `model` field); every other route of vLLM has
  no rule, so the Gateway answers 404 and nothing reaches the predictor;
- an Envoy Gateway `SecurityPolicy` on that route: API-key authentication against the Secrets the clients' keys
  are in (Envoy strips the `Bearer ` prefix; the key's Secret key is the client id), the client id forwarded in a
  header and the key removed, and an authorization rule that allows only the clients whose scope holds the model;
- an Envoy Gateway `HTTPRouteFilter` injecting the backend key (the service's `api_key`) as the request's
  `Authorization`, from a Secret this program creates from the same Pulumi config key;
- for clients with `requests_per_minute`, an Envoy Gateway `BackendTrafficPolicy` with one local rate-limit rule
  per client, selected by the forwarded client id (429 beyond it).

Why Envoy Gateway: its SecurityPolicy has API keys from Secrets, per-client authorization and credential injection
in one project whose CRDs are published with schemas (npm @kubernetes-models/envoy-gateway); Istio's
AuthorizationPolicy cannot check an API key against a Secret, and Kuadrant's AuthPolicy has no published schema
package to check against.
"""

from __future__ import annotations

from typing import Any

from vllm_fleet.k8s.manifests import ConfigSecret, Manifest, object_meta, predictor_service
from vllm_fleet.k8s.model import GatewayClusterSettings
from vllm_fleet.k8s.validation import cluster_settings
from vllm_fleet.spec import Service
from vllm_fleet.spec.gateway import ALL_MODELS, TASK_ROUTES, Gateway

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY = "gateway.envoyproxy.io/v1alpha1"
CLIENT_HEADER = "x-vllm-fleet-client"
# Envoy Gateway's credential injection reads this key of the Secret it is given.
CREDENTIAL_KEY = "credential"


def route_name(svc: Service) -> str:
    return f"{svc.name}-gateway"


def credential_secret_name(svc: Service) -> str:
    return f"{svc.name}-gateway-credential"


def _meta(svc: Service, name: str) -> dict[str, Any]:
    return object_meta(svc, cluster_settings(svc), name)


def _scoped_clients(gateway: Gateway, model: str) -> list[Any]:
    return [c for c in gateway.clients if c.models == [ALL_MODELS] or model in c.models]


def service_gateway_manifests(svc: Service, gw: Gateway | None) -> list[Manifest]:
    """The gateway objects of one service's model, in creation order (the Secret before the filter reading it)."""
    if gw is None:
        return []
    s = GatewayClusterSettings.model_validate(gw.kubernetes)
    model = svc.model_name
    assert svc.api_key is not None and svc.api_key.pulumi_config is not None  # cluster_rules hold it
    clients = _scoped_clients(gw, model)
    route = route_name(svc)
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": s.parent.name}
    if s.parent.namespace:
        parent["namespace"] = s.parent.namespace
    if s.parent.section_name:
        parent["sectionName"] = s.parent.section_name
    spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [{
            "matches": [{"path": {"type": "Exact", "value": path}, "method": "POST",
                         "headers": [{"type": "Exact", "name": s.model_header, "value": model}]}
                        for path in TASK_ROUTES[svc.task.value]],
            "filters": [{"type": "ExtensionRef", "extensionRef": {
                "group": "gateway.envoyproxy.io", "kind": "HTTPRouteFilter", "name": credential_secret_name(svc)}}],
            "backendRefs": [{"name": predictor_service(svc), "port": 80}],
            "timeouts": {"request": f"{gw.request_timeout_seconds}s"},
        }],
    }
    if s.hostnames:
        spec["hostnames"] = list(s.hostnames)
    target = [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}]
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(svc, credential_secret_name(svc)),
         "type": "Opaque",
         "stringData": {CREDENTIAL_KEY: ConfigSecret(svc.api_key.pulumi_config, prefix="Bearer ")}},
        {"apiVersion": ENVOY_GATEWAY, "kind": "HTTPRouteFilter", "metadata": _meta(svc, credential_secret_name(svc)),
         "spec": {"credentialInjection": {"header": "Authorization", "overwrite": True,
                                          "credential": {"valueRef": {"name": credential_secret_name(svc)}}}}},
        {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": _meta(svc, route), "spec": spec},
        {"apiVersion": ENVOY_GATEWAY, "kind": "SecurityPolicy", "metadata": _meta(svc, f"{route}-clients"),
         "spec": {
             "targetRefs": target,
             "apiKeyAuth": {
                 "credentialRefs": [{"group": "", "kind": "Secret", "name": name}
                                    for name in sorted({c.key.k8s_secret.name for c in clients
                                                        if c.key.k8s_secret is not None})],
                 "extractFrom": [{"headers": ["Authorization"]}],
                 "forwardClientIDHeader": CLIENT_HEADER,
                 "sanitize": True,
             },
             "authorization": {"defaultAction": "Deny", "rules": [{
                 "name": "clients-in-scope", "action": "Allow",
                 "principal": {"headers": [{"name": CLIENT_HEADER, "values": sorted(
                     c.key.k8s_secret.key for c in clients if c.key.k8s_secret is not None)}]},
             }]},
         }},
    ]
    limited = [c for c in clients if c.requests_per_minute and c.key.k8s_secret is not None]
    if limited:
        out.append({"apiVersion": ENVOY_GATEWAY, "kind": "BackendTrafficPolicy",
                    "metadata": _meta(svc, f"{route}-rates"),
                    "spec": {"targetRefs": target, "rateLimit": {"type": "Local", "local": {"rules": [
                        {"clientSelectors": [{"headers": [{"type": "Exact", "name": CLIENT_HEADER,
                                                            "value": c.key.k8s_secret.key}]}],
                         "limit": {"requests": c.requests_per_minute, "unit": "Minute"}}
                        for c in limited]}}}})
    return out
