"""What exists on the cluster for a validated deployment: the one place that decides it.

The namespaces first, then each service's manifests (k8s/manifests.py) in creation order, each followed by its
gateway objects (k8s/gateway.py) when the spec has a gateway block, then the Gateway listeners' limits.
"""

from __future__ import annotations

from vllm_fleet.k8s.gateway import listener_manifests, service_gateway_manifests
from vllm_fleet.k8s.manifests import Manifest, namespace_manifest, service_manifests
from vllm_fleet.k8s.validation import cluster_settings
from vllm_fleet.spec.model import Deployment


def deployment_manifests(dep: Deployment) -> list[Manifest]:
    """Every manifest of the deployment, namespaces first, then each service's in creation order with its gateway
    objects when the spec has a gateway block, then the Gateway listeners' limits."""
    out: list[Manifest] = []
    seen: set[str] = set()
    for svc in dep.services:
        s = cluster_settings(svc)
        if s.create_namespace and s.namespace not in seen:
            seen.add(s.namespace)
            out.append(namespace_manifest(s.namespace))
    for svc in dep.services:
        out.extend(service_manifests(svc))
        out.extend(service_gateway_manifests(svc, dep.gateway, dep.services))
    out.extend(listener_manifests(dep.gateway, dep.services))
    return out
