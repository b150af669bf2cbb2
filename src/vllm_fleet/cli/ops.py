"""Day-2 commands of `vllm-fleet` on the VM fleet: status, logs and down.

Each checks the inventory first (bad input exits 2 before any host is contacted), runs its playbook of the collection
through ansible-runner, and prints a table or, with --json, one JSON document. `status` and `logs` change nothing;
`down` removes what vllm-fleet runs, or with --dry-run says what it would remove.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vllm_fleet.cli.output import ExitStatus, emit_json, err, out, plain
from vllm_fleet.cli.vm import InventoryOpt, JsonOpt, LimitOpt, app, spec_failure
from vllm_fleet.spec.errors import SpecError, SpecIssue
from vllm_fleet.vm.inventory import InventoryError, check_inventory


def _planned(inventory: Path, limit: str | None, as_json: bool) -> dict[str, Any]:
    """The plans of every serving host (the inventory checked, secrets not needed), as the playbooks take them."""
    from vllm_fleet.vm.plan import PLANNED_VAR

    plans = {}
    try:
        plans = check_inventory(inventory, limit, secrets=False)
    except InventoryError as exc:
        spec_failure(exc.errors, as_json)
    return {PLANNED_VAR: {host: plan.model_dump(mode="json") for host, plan in plans.items()}}


def _bad_input(as_json: bool, path: str, value: str, problem: str, fix: str) -> None:
    spec_failure([SpecError([SpecIssue(path, value, problem, fix)], "command line")], as_json)


def _failed_run(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
    for name, h in sorted(result.hosts.items()):
        if h.failed or h.unreachable:
            plain(f"FAILED {name}: {h.last_error}")
    raise typer.Exit(ExitStatus.FAILED)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _num(value: Any, fmt: str = "{:g}") -> str:
    return "-" if value is None else fmt.format(value)


@app.command()
def status(inventory: InventoryOpt, limit: LimitOpt = None, as_json: JsonOpt = False) -> None:
    """Every service on every host: container, uptime, restarts, health, model and weights revision, requests
    running and waiting, KV-cache usage, tokens/s, and the gateway's view. Changes nothing; exit code 1 when any
    service is unhealthy (named on stderr)."""
    from vllm_fleet.vm.runner import run_playbook
    from vllm_fleet.vm.status import problems, with_gateway

    planned = _planned(inventory, limit, as_json)
    result = run_playbook("status.yml", inventory, limit=limit, extravars=planned)
    if not result.ok:
        _failed_run(result, as_json)
    rows = with_gateway(result.artifact.get("vllm_fleet_status") or [],
                        result.artifact.get("vllm_fleet_gateway_view") or {})
    rows.sort(key=lambda r: (r["service"], r["host"]))
    bad = problems(rows)
    if as_json:
        emit_json({"ok": not bad, "services": rows, "problems": bad})
    else:
        table = Table(title="vllm-fleet status")
        for col in ("host", "service", "model", "state", "uptime", "restarts", "health", "revision", "running",
                    "waiting", "KV cache", "tokens/s", "gateway"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["host"], r["service"], r["model"], r["state"], _uptime(r["uptime_seconds"]),
                          str(r["restarts"]), _num(r["health"], "{}"), r["revision"] or "-", _num(r["running"]),
                          _num(r["waiting"]), _num(r["kv_cache_usage"], "{:.0%}"),
                          _num(r["tokens_per_second"], "{:.1f}"), r["gateway"] or "-")
        out.print(table)
        for line in bad:
            plain(f"UNHEALTHY {line}")
    if bad:
        raise typer.Exit(ExitStatus.FAILED)


@app.command()
def logs(
    inventory: InventoryOpt,
    service: Annotated[str, typer.Argument(help="the service's name in the spec")],
    host: Annotated[str | None, typer.Option("--host", help="only this host")] = None,
    since: Annotated[str | None, typer.Option("--since", help="as docker logs takes it: 10m, 2h, a timestamp")] = None,
    tail: Annotated[int, typer.Option("--tail", min=1, max=100_000, help="lines from the end")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The last lines of a service's container on each host that runs it (through Ansible; no SSH by hand)."""
    from vllm_fleet.vm.runner import run_playbook

    planned = _planned(inventory, host, as_json)
    plans = next(iter(planned.values()))
    if host is not None and host not in plans:
        _bad_input(as_json, "--host", repr(host), "is not a serving host of the inventory",
                   f"use one of: {', '.join(sorted(plans)) or 'none'}")
    running = sorted(h for h, p in plans.items() if any(s["name"] == service for s in p["services"]))
    if not running:
        known = sorted({s["name"] for p in plans.values() for s in p["services"]})
        _bad_input(as_json, "SERVICE", repr(service), "is not a service of the spec on these hosts",
                   f"use one of: {', '.join(known) or 'none'}")
    if since is not None and not since.strip():
        _bad_input(as_json, "--since", repr(since), "is empty", "give a duration like 10m or a timestamp")
    extra = {**planned, "vllm_fleet_logs_service": service, "vllm_fleet_logs_tail": tail,
             "vllm_fleet_logs_since": since or ""}
    result = run_playbook("logs.yml", inventory, limit=host, extravars=extra)
    if not result.ok:
        _failed_run(result, as_json)
    found = result.artifact.get("vllm_fleet_logs") or {}
    if as_json:
        emit_json({"ok": all(v["rc"] == 0 for v in found.values()), "service": service, "logs": found})
    else:
        for name in sorted(found):
            entry = found[name]
            err.print(f"[bold]== {service} on {name} ({entry['container']}) ==[/bold]", highlight=False)
            text = "\n".join(t for t in (entry["stdout"], entry["stderr"]) if t)
            out.print(text, markup=False, highlight=False)
    if any(v["rc"] != 0 for v in found.values()):
        raise typer.Exit(ExitStatus.FAILED)


@app.command()
def down(
    inventory: InventoryOpt,
    services: Annotated[list[str] | None, typer.Argument(help="only these services (default: everything)")] = None,
    purge_weights: Annotated[bool, typer.Option(
        "--purge-weights", help="also delete the weights the weights stage fetched (never file:// sources)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be removed; change nothing")] = False,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove what vllm-fleet runs: the services' containers and, with no SERVICE named, the gateway and the
    monitoring. Weights stay unless --purge-weights."""
    from vllm_fleet.vm.runner import run_playbook

    planned = _planned(inventory, limit, as_json)
    known = sorted({s["name"] for p in next(iter(planned.values())).values() for s in p["services"]})
    unknown = [s for s in services or [] if s not in known]
    if unknown:
        _bad_input(as_json, "SERVICE", repr(unknown[0]), "is not a service of the spec",
                   f"use one of: {', '.join(known) or 'none'}")
    extra = {**planned, "vllm_fleet_down_services": list(services or []),
             "vllm_fleet_down_purge_weights": purge_weights}
    result = run_playbook("down.yml", inventory, limit=limit, extravars=extra, check=dry_run, diff=dry_run)
    if not result.ok:
        _failed_run(result, as_json)
    changed = {name: h.changed for name, h in sorted(result.hosts.items())}
    if as_json:
        emit_json({**result.as_dict(), "dry_run": dry_run, "changed": changed})
    else:
        verb = "would change" if dry_run else "changed"
        for name, count in changed.items():
            err.print(f"{name}: {verb} {count}", highlight=False)
