"""The Pulumi program behind `pulumi/__main__.py`: validate the spec, then register the cluster objects."""

from __future__ import annotations

from typing import Any

import pulumi

from vllm_fleet.k8s.component import (
    InferenceService,
    InferenceServiceArgs,
    SecretResolver,
    config_secret,
    register_manifest,
)
from vllm_fleet.k8s.gateway import listener_manifests
from vllm_fleet.k8s.manifests import namespace_manifest
from vllm_fleet.k8s.validation import CLUSTER_TARGET, CONFIG_NAMESPACE, SPEC_KEY, SPEC_SOURCE, cluster_settings
from vllm_fleet.spec import Deployment, SpecError, SpecIssue, validate_spec
from vllm_fleet.spec.gateway import callable_models


def load_deployment(data: Any) -> Deployment:
    """The validated spec; raises SpecError before anything is registered."""
    return validate_spec(data, CLUSTER_TARGET, source=SPEC_SOURCE)


def missing_secret_config(dep: Deployment) -> list[SpecIssue]:
    """Every pulumi_config reference whose key is not set in the stack, found before anything is registered."""
    issues = []
    for i, svc in enumerate(dep.services):
        for path, ref in svc.secret_refs().items():  # client keys on clusters are k8s_secret refs, never config
            if ref.pulumi_config is None:
                continue
            namespace, _, name = ref.pulumi_config.rpartition(":")
            if pulumi.Config(namespace or CONFIG_NAMESPACE).get(name) is None:
                issues.append(SpecIssue(f"services[{i}].{path}", f"{{pulumi_config: {ref.pulumi_config}}}",
                                        "names a Pulumi config key that is not set in this stack",
                                        f"run: pulumi config set --secret {ref.pulumi_config}"))
    return issues


def run(data: Any, secret_value: SecretResolver = config_secret) -> dict[str, InferenceService]:
    dep = load_deployment(data)
    if secret_value is config_secret:
        missing = missing_secret_config(dep)
        if missing:
            raise SpecError(missing, SPEC_SOURCE)
    namespaces: dict[str, pulumi.CustomResource] = {}
    for svc in dep.services:
        s = cluster_settings(svc)
        if s.create_namespace and s.namespace not in namespaces:
            namespaces[s.namespace] = register_manifest(namespace_manifest(s.namespace), secret_value)
    components = {}
    for svc in dep.services:
        ns = namespaces.get(cluster_settings(svc).namespace)
        args = InferenceServiceArgs(svc, secret_value, depends_on=[ns] if ns else [], gateway=dep.gateway,
                                    services=dep.services)
        components[svc.name] = InferenceService(svc.name, args)
    for manifest in listener_manifests(dep.gateway, dep.services):  # the Gateways' listeners, once each
        register_manifest(manifest, secret_value)
    pulumi.export("services", {
        name: {"internal_url": c.internal_url, "openai_base_url": c.openai_base_url,
               "external_url": c.external_url, "served_model_name": c.served_model_name}
        for name, c in components.items()
    })
    pulumi.export("served_model_names", [c.served_model_name for c in components.values()])
    # Every model name a client can call: the served models and their adapters (the VM wing's deploy summary too).
    pulumi.export("models", sorted(callable_models(dep.services)))
    return components


def main() -> None:
    run(pulumi.Config(CONFIG_NAMESPACE).require_object(SPEC_KEY))
