"""Filters that shape the run summary; documented in plugins/filter/endpoint_summary.yml."""

from __future__ import annotations

from typing import Any

from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import typed_service_plan


def endpoint_summary(service: dict[str, Any], host: str) -> dict[str, str]:
    svc = typed_service_plan(service)
    return {"host": host, "service": svc.name, "model": svc.served_model_name, "task": svc.task, "url": svc.endpoint}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"endpoint_summary": endpoint_summary}
