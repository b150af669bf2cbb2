"""The VM commands of `vllm-fleet`: validate, plan and deploy model specs on GPU hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from vllm_fleet.cli.options import InventoryOpt, JsonOpt, LimitOpt, spec_failure
from vllm_fleet.cli.output import ExitStatus, emit_json, err, out, plain
from vllm_fleet.spec import SpecError, Target, load_spec_file, validate_spec
from vllm_fleet.vm.planning.inventory import SERVE_GROUP, InventoryError, check_inventory, group_hosts
from vllm_fleet.vm.planning.listeners import Listener

# validate, plan and deploy; the root app (cli/app.py) takes them in.
vm_app = typer.Typer()


@vm_app.command()
def validate(
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", help="Ansible inventory")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", "-s", help="a spec file (bare, or a vars file)")] = None,
    target: Annotated[Target, typer.Option(help="what the spec file is for")] = Target.VM,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    listeners: Annotated[bool, typer.Option(
        "--listeners", help="with --inventory: every listener of the fleet, who may reach it, how it authenticates"
    )] = False,
) -> None:
    """Check a spec and/or an inventory. Contacts nothing; exit code 2 on bad input."""
    if inventory is None and spec is None:
        plain("give --inventory and/or --spec")
        raise typer.Exit(ExitStatus.BAD_INPUT)
    checked: dict[str, list[str]] = {}
    opened: list[Listener] = []
    try:
        if spec is not None:
            if not spec.exists():
                from vllm_fleet.spec.errors import SpecIssue

                raise SpecError([SpecIssue("--spec", repr(str(spec)), "does not exist", "give a spec file path")],
                                "spec")
            dep = validate_spec(load_spec_file(spec), _target_rules(target), source=str(spec))
            checked[str(spec)] = [s.name for s in dep.services]
        if inventory is not None:
            fleet = check_inventory(inventory, secrets=False)
            shown = {h.host for h in group_hosts(inventory, limit)[SERVE_GROUP]} if limit else set(fleet.hosts)
            for host, host_plan in fleet.hosts.items():
                if host in shown:
                    checked[host] = [svc.name for svc in host_plan.services]
            opened = fleet.listeners if listeners else []
    except SpecError as exc:
        spec_failure([exc], as_json)
    except InventoryError as exc:
        spec_failure(exc.errors, as_json)
    if as_json:
        emit_json({"ok": True, "checked": checked}
                  | ({"listeners": [x.model_dump(mode="json") for x in opened]} if listeners else {}))
    else:
        for where, names in checked.items():
            err.print(f"[green]ok[/green] {where}: {', '.join(names)}")
        if opened:
            out.print(_listener_table(opened))


def _listener_table(listeners: list[Listener]) -> Table:
    table = Table(title="the fleet's listeners", expand=False)
    for col in ("host", "listener", "binds", "port", "admits", "authentication"):
        table.add_column(col)
    for x in listeners:
        admits = "anyone" if x.sources is None else ", ".join(x.sources) or "the host itself"
        table.add_row(x.host, x.name, x.address, str(x.port) if x.port else "VRRP", admits, x.auth)
    return table


def _progress_table(result: Any) -> Table:
    table = Table(title="vllm-fleet", expand=False)
    for col in ("host", "task", "ok", "changed", "failed"):
        table.add_column(col)
    for name, h in sorted(result.hosts.items()):
        state = "[red]unreachable[/red]" if h.unreachable else h.task[:60]
        table.add_row(name, state, str(h.ok), str(h.changed), str(h.failed))
    return table


def _run(inventory: Path, *, check: bool, limit: str | None, tags: str | None, as_json: bool,
         verbose: int, artifacts: Path | None = None) -> None:
    from vllm_fleet.vm.planning.fleet import CLI_PLAN_VAR
    from vllm_fleet.vm.running.runner import run_playbook

    try:
        fleet = check_inventory(inventory, secrets=True)
    except InventoryError as exc:
        spec_failure(exc.errors, as_json)
        raise
    # The fleet plan is computed once, here; the playbook's first play takes it instead of planning again.
    planned = {CLI_PLAN_VAR: fleet.model_dump(mode="json")}

    if as_json or not err.is_terminal:
        result = run_playbook("deploy-vllm.yml", inventory, check=check, diff=check, limit=limit, tags=tags,
                              extravars=planned, verbosity=verbose, quiet=as_json or not verbose,
                              keep_artifacts=artifacts)
    else:
        with Live(_progress_table(_Empty()), console=err, refresh_per_second=4) as live:
            result = run_playbook("deploy-vllm.yml", inventory, check=check, diff=check, limit=limit, tags=tags,
                                  extravars=planned, verbosity=verbose, keep_artifacts=artifacts,
                                  on_change=lambda r: live.update(_progress_table(r)))
    if as_json:
        emit_json(result.as_dict())
    else:
        _print_summary(result)
    if not result.ok:
        raise typer.Exit(ExitStatus.FAILED)


class _Empty:
    hosts: dict[str, Any] = {}


def _print_summary(result: Any) -> None:
    failed = {n: h for n, h in result.hosts.items() if h.failed or h.unreachable}
    for name, h in sorted(failed.items()):
        err.print(f"[red]FAILED[/red] {name}: {h.last_error}", highlight=False)
    if result.endpoints:
        table = Table(title="endpoints")
        for col in ("host", "service", "model", "task", "url"):
            table.add_column(col)
        for e in result.endpoints:
            table.add_row(e.get("host", ""), e.get("service", ""), e.get("model", ""), e.get("task", ""),
                          e.get("url", ""))
        out.print(table)
    if result.gateway:
        for url in result.gateway.get("urls", []):
            out.print(f"gateway: {url}  models: {', '.join(result.gateway.get('models', []))}", highlight=False)
        if result.gateway.get("ca"):
            out.print(f"gateway CA to trust: {result.gateway['ca']}", highlight=False)
    for gate in result.gates:
        err.print(f"{'[green]gate[/green]' if gate.get('ok') else '[red]gate[/red]'}: {gate.get('message', '')}",
                  highlight=False)
    verdict = "[green]ok[/green]" if result.ok else f"[red]{result.status}[/red] (rc={result.rc})"
    err.print(f"run: {verdict}")


@vm_app.command()
def deploy(
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    tags: Annotated[str | None, typer.Option("--tags", "-t", help="only these playbook stages")] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
    artifacts: Annotated[Path | None, typer.Option(
        "--artifacts", help="keep ansible-runner's record of the run (events, output) in this directory")] = None,
) -> None:
    """Run playbooks/deploy-vllm.yml against the inventory."""
    _run(inventory, check=False, limit=limit, tags=tags, as_json=as_json, verbose=verbose, artifacts=artifacts)


@vm_app.command()
def plan(
    inventory: InventoryOpt,
    limit: LimitOpt = None,
    tags: Annotated[str | None, typer.Option("--tags", "-t")] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
) -> None:
    """Run the deploy playbook in check mode with diff: what would change."""
    _run(inventory, check=True, limit=limit, tags=tags, as_json=as_json, verbose=verbose)


def _target_rules(target: Target) -> Any:
    if target is Target.VM:
        from vllm_fleet.vm.planning.rules import VM_TARGET

        return VM_TARGET
    from vllm_fleet.k8s.validation import CLUSTER_TARGET

    return CLUSTER_TARGET
