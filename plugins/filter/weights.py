"""Filters of the model_weights role: which storage secrets to resolve, and the fact it publishes; each is
documented in plugins/filter/<name>.yml."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import typed_weights_plan


def weights_secret_refs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{service, param, ref}] for every storage credential reference of the planned weights (a service's model
    or adapter: `service` is the weights entry's name, which the fetch looks its credentials up by). The plan's
    StorageSecrets fields are named after the model_weights module's parameters."""
    return [{"service": item.name, "param": param, "ref": ref}
            for item in map(typed_weights_plan, items or []) for param, ref in sorted(item.secrets.given().items())]


def weights_paths(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{name: {path, revision, manifest, source, changed}} from the model_weights results of this host, by the
    weights entry's name: the service's, or <service>@<adapter>."""
    paths = {}
    for res in results or []:
        if not res.get("svc") or res.get("skipped"):
            continue
        svc = typed_weights_plan(res["svc"])
        if res.get("failed") or not res.get("path"):
            what = f"adapter {svc.name}" if svc.kind == "adapter" else f"service {svc.name}"
            raise AnsibleFilterError(f"no completed weights for {what}: {res.get('msg', 'not fetched')}")
        paths[svc.name] = {
            "path": res["path"],
            "revision": res.get("revision"),
            "manifest": res.get("manifest"),
            "source": svc.source.display_uri,
            "changed": bool(res.get("changed")),
        }
    return paths


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"weights_secret_refs": weights_secret_refs, "weights_paths": weights_paths}
