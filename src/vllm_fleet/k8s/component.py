"""The Pulumi component: one KServe InferenceService and what it needs, from one validated service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource

from vllm_fleet.k8s.gateway import service_gateway_manifests
from vllm_fleet.k8s.manifests import ConfigSecret, Manifest, external_url, internal_url, service_manifests
from vllm_fleet.k8s.validation import CONFIG_NAMESPACE
from vllm_fleet.spec.gateway import Gateway
from vllm_fleet.spec.model import Service

COMPONENT_TYPE = "vllmfleet:k8s:InferenceService"

SecretResolver = Callable[[str], pulumi.Input[str]]
# KServe's InferenceService, and the gateway's Envoy AI Gateway and Envoy Gateway objects (k8s/gateway.py).
CUSTOM_KINDS = frozenset({"InferenceService", "AIGatewayRoute", "AIServiceBackend", "BackendSecurityPolicy",
                          "Backend", "SecurityPolicy", "BackendTrafficPolicy", "ClientTrafficPolicy"})


def config_secret(key: str) -> pulumi.Output[str]:
    """A secret Pulumi config value, as a secret Output: `KEY` in this project, or `NAMESPACE:KEY`."""
    namespace, _, name = key.rpartition(":")
    return pulumi.Config(namespace or CONFIG_NAMESPACE).require_secret(name)


@dataclass
class InferenceServiceArgs:
    service: Service
    secret_value: SecretResolver = config_secret
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    # The spec's gateway block: the model's route and policies are created with the service, scoped over the model
    # names of all the deployment's services.
    gateway: Gateway | None = None
    services: Sequence[Service] = ()


def resource_name(manifest: Manifest) -> str:
    """A Pulumi name unique within a stack: kind, namespace and object name."""
    meta = manifest["metadata"]
    where = f"{meta['namespace']}-" if "namespace" in meta else ""
    return f"{manifest['kind'].lower()}-{where}{meta['name']}"


def register_manifest(manifest: Manifest, secret_value: SecretResolver,
                      opts: pulumi.ResourceOptions | None = None) -> pulumi.CustomResource:
    """Create the Pulumi resource for one manifest from `manifests`."""
    kind, meta, name = manifest["kind"], manifest["metadata"], resource_name(manifest)
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=meta, opts=opts)
    if kind == "Secret":
        data: dict[str, Any] = {
            k: pulumi.Output.secret(pulumi.Output.concat(v.prefix, secret_value(v.key)))
            if isinstance(v, ConfigSecret) else v
            for k, v in manifest["stringData"].items()
        }
        secret_opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"]))
        return k8s.core.v1.Secret(name, metadata=meta, type=manifest["type"], string_data=data, opts=secret_opts)
    if kind == "ServiceAccount":
        return k8s.core.v1.ServiceAccount(name, metadata=meta, secrets=manifest["secrets"], opts=opts)
    if kind == "PersistentVolumeClaim":
        return k8s.core.v1.PersistentVolumeClaim(name, metadata=meta, spec=manifest["spec"], opts=opts)
    if kind == "Ingress":
        return k8s.networking.v1.Ingress(name, metadata=meta, spec=manifest["spec"], opts=opts)
    if kind == "NetworkPolicy":
        return k8s.networking.v1.NetworkPolicy(name, metadata=meta, spec=manifest["spec"], opts=opts)
    if kind in CUSTOM_KINDS:
        return CustomResource(name, api_version=manifest["apiVersion"], kind=kind, metadata=meta,
                              spec=manifest["spec"], opts=opts)
    raise ValueError(f"no Pulumi resource for manifest kind {kind}")


class InferenceService(pulumi.ComponentResource):
    """A vLLM OpenAI endpoint on KServe: its Secrets, ServiceAccount, cache claim, InferenceService, Ingress."""

    internal_url: pulumi.Output[str]
    openai_base_url: pulumi.Output[str]
    external_url: pulumi.Output[str | None]
    served_model_name: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        svc = args.service
        child_opts = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.children: list[pulumi.CustomResource] = [
            register_manifest(m, args.secret_value, child_opts)
            for m in [*service_manifests(svc), *service_gateway_manifests(svc, args.gateway, args.services)]
        ]
        isvc = next(r for r in self.children if isinstance(r, CustomResource))  # the first custom one
        # The URLs are known from the names alone; tying them to the resource orders them after it.
        self.internal_url = isvc.id.apply(lambda _: internal_url(svc))
        self.openai_base_url = self.internal_url.apply(lambda u: f"{u}/v1")
        ext = external_url(svc)
        self.external_url = isvc.id.apply(lambda _: ext)
        self.served_model_name = pulumi.Output.from_input(svc.model_name)
        self.register_outputs({
            "internal_url": self.internal_url,
            "openai_base_url": self.openai_base_url,
            "external_url": self.external_url,
            "served_model_name": self.served_model_name,
        })
