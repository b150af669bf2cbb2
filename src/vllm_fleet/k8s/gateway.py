"""The spec's gateway block on a cluster: Gateway API routes with Envoy Gateway's policies, one set per model name.

Per model name a client can call (a service's served model, and each of its LoRA adapters, answered by the same
predictor), when at least one client's scope holds it (else no route: the Gateway answers 404 for that name):
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
  per client, selected by the forwarded client id (429 beyond it), per model name.
The credential Secret and filter are one per service, shared by its routes.

Why Envoy Gateway: its SecurityPolicy has API keys from Secrets, per-client authorization and credential injection
in one project whose CRDs are published with schemas (npm @kubernetes-models/envoy-gateway); Istio's
AuthorizationPolicy cannot check an API key against a Secret, and Kuadrant's AuthPolicy has no published schema
package to check against.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from vllm_fleet.k8s.manifests import ConfigSecret, Manifest, object_meta, predictor_service
from vllm_fleet.k8s.model import GatewayClusterSettings
from vllm_fleet.k8s.validation import cluster_settings
from vllm_fleet.spec import Service
from vllm_fleet.spec.gateway import TASK_ROUTES, Gateway, client_scope

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY = "gateway.envoyproxy.io/v1alpha1"
CLIENT_HEADER = "x-vllm-fleet-client"
# Envoy Gateway's credential injection reads this key of the Secret it is given.
CREDENTIAL_KEY = "credential"


def route_name(svc: Service, model: str | None = None) -> str:
    """The HTTPRoute of one model name a service answers: `<service>-gateway` for its served model, and
    `<service>-gateway-<adapter>` for each adapter (made a DNS label, with a digest when that changed the name)."""
    if model is None or model == svc.model_name:
        return f"{svc.name}-gateway"
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:40] or "adapter"
    if slug != model:
        slug = f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    return f"{svc.name}-gateway-{slug}"


def credential_secret_name(svc: Service) -> str:
    return f"{svc.name}-gateway-credential"


def _meta(svc: Service, name: str) -> dict[str, Any]:
    return object_meta(svc, cluster_settings(svc), name)


def service_gateway_manifests(svc: Service, gw: Gateway | None) -> list[Manifest]:
    """The gateway objects of one service, in creation order (the Secret before the filter reading it): the backend
    credential, then a route and its policies for each model name the service answers, adapters included, so that a
    client's scope is checked per name (a key scoped to an adapter may not call the base model, nor the reverse)."""
    if gw is None:
        return []
    assert svc.api_key is not None and svc.api_key.pulumi_config is not None  # cluster_rules hold it
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(svc, credential_secret_name(svc)),
         "type": "Opaque",
         "stringData": {CREDENTIAL_KEY: ConfigSecret(svc.api_key.pulumi_config, prefix="Bearer ")}},
        {"apiVersion": ENVOY_GATEWAY, "kind": "HTTPRouteFilter", "metadata": _meta(svc, credential_secret_name(svc)),
         "spec": {"credentialInjection": {"header": "Authorization", "overwrite": True,
                                          "credential": {"valueRef": {"name": credential_secret_name(svc)}}}}},
    ]
    settings = GatewayClusterSettings.model_validate(gw.kubernetes)
    for model in (svc.model_name, *(a.name for a in svc.adapters)):
        out.extend(_model_route(svc, gw, settings, model))
    return out


def _model_route(svc: Service, gw: Gateway, s: GatewayClusterSettings, model: str) -> list[Manifest]:
    """One model name's HTTPRoute (its task's routes, only for requests naming it), the clients allowed on it and
    their rates."""
    # Each client in scope with its key's Secret (cluster_rules give every client key as a k8s_secret).
    clients = [(c, c.key.k8s_secret) for c in gw.clients if client_scope(c, [model]) and c.key.k8s_secret]
    if not clients:
        return []  # no client may call this name: no route, and Envoy answers 404 for it
    route = route_name(svc, model)
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
        {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": _meta(svc, route), "spec": spec},
        {"apiVersion": ENVOY_GATEWAY, "kind": "SecurityPolicy", "metadata": _meta(svc, f"{route}-clients"),
         "spec": {
             "targetRefs": target,
             "apiKeyAuth": {
                 "credentialRefs": [{"group": "", "kind": "Secret", "name": name}
                                    for name in sorted({ref.name for _, ref in clients})],
                 "extractFrom": [{"headers": ["Authorization"]}],
                 "forwardClientIDHeader": CLIENT_HEADER,
                 "sanitize": True,
             },
             "authorization": {"defaultAction": "Deny", "rules": [{
                 "name": "clients-in-scope", "action": "Allow",
                 "principal": {"headers": [{"name": CLIENT_HEADER, "values": sorted(ref.key for _, ref in clients)}]},
             }]},
         }},
    ]
    limited = [(c.requests_per_minute, ref) for c, ref in clients if c.requests_per_minute]
    if limited:
        out.append({"apiVersion": ENVOY_GATEWAY, "kind": "BackendTrafficPolicy",
                    "metadata": _meta(svc, f"{route}-rates"),
                    "spec": {"targetRefs": target, "rateLimit": {"type": "Local", "local": {"rules": [
                        {"clientSelectors": [{"headers": [{"type": "Exact", "name": CLIENT_HEADER,
                                                            "value": ref.key}]}],
                         "limit": {"requests": rate, "unit": "Minute"}}
                        for rate, ref in limited]}}}})
    return out
