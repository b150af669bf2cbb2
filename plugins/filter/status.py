"""Filters of the status playbook: raw answers from a host into vllm-fleet status rows (vllm_fleet.vm.play.status)."""

from __future__ import annotations

from typing import Any

from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import plain, require_package


def _by_item(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {str(r["item"]["name"]): r.get(key) for r in results or [] if not r.get("skipped")}


def vllm_status(services: list[dict[str, Any]], host: str, containers: list[dict[str, Any]],
                health: list[dict[str, Any]], first: list[dict[str, Any]], second: list[dict[str, Any]],
                interval: float, label_prefix: str) -> list[dict[str, Any]]:
    require_package()
    from vllm_fleet.vm.planning.plan import ServicePlan
    from vllm_fleet.vm.play.status import service_row

    inspect = _by_item(plain(containers), "container")
    status = {name: (code if isinstance(code, int) and code > 0 else None)
              for name, code in _by_item(plain(health), "status").items()}
    a, b = _by_item(plain(first), "content"), _by_item(plain(second), "content")
    rows = []
    for raw in plain(services):
        svc = ServicePlan.model_validate(raw)
        rows.append(service_row(host, svc, inspect.get(svc.name), status.get(svc.name), a.get(svc.name),
                                b.get(svc.name), float(interval), label_prefix=str(label_prefix)))
    return rows


def haproxy_servers(stats_csv: str) -> dict[str, str]:
    require_package()
    from vllm_fleet.vm.play.status import haproxy_servers as parse

    return parse(str(stats_csv or ""))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_status": vllm_status, "haproxy_servers": haproxy_servers}
