"""Day-2 commands of `vllm-fleet` on the VM fleet: status, logs, bench and down.

Each checks the inventory first (bad input exits 2 before any host is contacted), runs its playbook of the collection
through ansible-runner, and prints a table or, with --json, one JSON document. `status`, `logs` and `bench` change
nothing that serves (bench leaves no file behind); `down` removes what vllm-fleet runs, or with --dry-run says what it
would remove.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vllm_fleet.cli.options import InventoryOpt, JsonOpt, LimitOpt, spec_failure
from vllm_fleet.cli.output import ExitStatus, emit_json, err, out, plain
from vllm_fleet.spec.errors import SpecError, SpecIssue
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.inventory import InventoryError, check_inventory

# status, logs, down and bench; the root app (cli/app.py) takes them in.
ops_app = typer.Typer()


def _planned(inventory: Path, as_json: bool) -> tuple[FleetPlan, dict[str, Any]]:
    """The fleet plan (the inventory checked, secrets not needed), and the extra variables that hand it to a
    playbook."""
    from vllm_fleet.vm.planning.fleet import CLI_PLAN_VAR

    try:
        fleet = check_inventory(inventory, secrets=False)
    except InventoryError as exc:
        spec_failure(exc.errors, as_json)
        raise
    return fleet, {CLI_PLAN_VAR: fleet.model_dump(mode="json")}


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


@ops_app.command()
def status(inventory: InventoryOpt, limit: LimitOpt = None, as_json: JsonOpt = False) -> None:
    """Every service on every host: container, uptime, restarts, health, model and weights revision, requests
    running and waiting, KV-cache usage, tokens/s, and the gateway's view. Changes nothing; exit code 1 when any
    service is unhealthy (named on stderr)."""
    from vllm_fleet.vm.play.status import problems, with_gateway
    from vllm_fleet.vm.running.runner import run_playbook

    _, planned = _planned(inventory, as_json)
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


@ops_app.command()
def logs(
    inventory: InventoryOpt,
    service: Annotated[str, typer.Argument(help="the service's name in the spec")],
    host: Annotated[str | None, typer.Option("--host", help="only this host")] = None,
    since: Annotated[str | None, typer.Option("--since", help="as docker logs takes it: 10m, 2h, a timestamp")] = None,
    tail: Annotated[int, typer.Option("--tail", min=1, max=100_000, help="lines from the end")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The last lines of a service's container on each host that runs it (through Ansible; no SSH by hand)."""
    from vllm_fleet.vm.running.runner import run_playbook

    fleet, planned = _planned(inventory, as_json)
    if host is not None and host not in fleet.hosts:
        _bad_input(as_json, "--host", repr(host), "is not a serving host of the inventory",
                   f"use one of: {', '.join(sorted(fleet.hosts)) or 'none'}")
    running = sorted(h for h, p in fleet.hosts.items() if any(s.name == service for s in p.services))
    if not running:
        known = sorted({s.name for p in fleet.hosts.values() for s in p.services})
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


@ops_app.command()
def down(
    inventory: InventoryOpt,
    services: Annotated[list[str] | None, typer.Argument(help="only these services (default: everything)")] = None,
    purge_weights: Annotated[bool, typer.Option(
        "--purge-weights", help="also delete the weights and adapters the weights stage fetched or copied "
                                "(never a file:// source itself)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be removed; change nothing")] = False,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove what vllm-fleet runs: the services' containers and, with no SERVICE named, the gateway and the
    monitoring. Weights stay unless --purge-weights."""
    from vllm_fleet.vm.running.runner import run_playbook

    fleet, planned = _planned(inventory, as_json)
    known = sorted({s.name for p in fleet.hosts.values() for s in p.services})
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


# Saved baselines, one JSON file per name (VLLM_FLEET_BENCH_BASELINES moves them).
BASELINES = Path(os.environ.get("VLLM_FLEET_BENCH_BASELINES",
                                Path.home() / ".local" / "share" / "vllm-fleet" / "bench-baselines"))


@ops_app.command()
def bench(
    inventory: InventoryOpt,
    model: Annotated[str | None, typer.Option("--model", help="served model name (default: the first generate "
                                                               "model behind the gateway)")] = None,
    workload: Annotated[str, typer.Option("--workload", help="random, or prefix (a multi-turn shape)")] = "random",
    input_len: Annotated[int, typer.Option("--input-len", min=8, max=131072, help="prompt tokens")] = 128,
    output_len: Annotated[int, typer.Option("--output-len", min=1, max=32768, help="tokens out")] = 32,
    rates: Annotated[str, typer.Option("--rates", help="request rates per second, comma-separated, or inf "
                                                       "(one run each: a sweep)")] = "inf",
    prompts: Annotated[int, typer.Option("--prompts", min=1, max=100_000, help="requests per run")] = 50,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="most requests in flight")] = None,
    client: Annotated[str | None, typer.Option("--client", help="the gateway client whose key to use")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="directory for the raw JSON and the PNG plot")
                      ] = Path("vllm-fleet-bench"),
    save_baseline: Annotated[str | None, typer.Option("--save-baseline", help="keep this run as NAME")] = None,
    compare_to: Annotated[str | None, typer.Option("--compare", help="compare with the baseline NAME")] = None,
    as_json: JsonOpt = False,
) -> None:
    """vLLM's own benchmark against the fleet's gateway: TTFT, TPOT, ITL and end-to-end latency at p50/p90/p99 and
    throughput per request rate; writes the raw JSON and a PNG (latency against request rate); saves a baseline or
    compares with one."""
    import json
    import time

    from vllm_fleet.vm.planning.bench import bench_target
    from vllm_fleet.vm.play import bench as b
    from vllm_fleet.vm.running.runner import run_playbook

    fleet, planned = _planned(inventory, as_json)
    found = list(b.workloads(input_len, output_len))
    if workload not in found:
        _bad_input(as_json, "--workload", repr(workload), "is not a benchmark workload",
                   f"use one of: {', '.join(found)}")
    try:
        sweep = b.parse_rates(rates)
    except ValueError as exc:
        _bad_input(as_json, "--rates", repr(rates), f"has '{exc}', which is not a positive number or inf",
                   "give rates like 1,2,4 or inf")
    try:
        target = bench_target(fleet, str(inventory), model, client)
    except SpecError as exc:
        spec_failure([exc], as_json)
        raise
    pool, runner_host, ca, base_url = target.pool, target.host, target.ca_file, target.base_url
    shape = b.workloads(input_len, output_len)[workload]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = [{"label": f"{stamp}-rate-{r:g}", "args": b.bench_args(shape, model=pool.model, base_url=base_url,
                                                                   rate=r, prompts=prompts, concurrency=concurrency,
                                                                   label=f"{stamp}-rate-{r:g}")} for r in sweep]
    extra = {**planned, "vllm_fleet_bench_service": target.service, "vllm_fleet_bench_runs": runs,
             "vllm_fleet_bench_key_ref": target.client.key_ref, "vllm_fleet_bench_ca": ca, "vllm_fleet_bench_id": stamp}
    result = run_playbook("bench.yml", inventory, limit=runner_host, extravars=extra)
    if not result.ok:
        _failed_run(result, as_json)
    raw = list(result.artifact.get("vllm_fleet_bench") or [])
    summaries = [b.summary(r) for r in raw]
    output.mkdir(parents=True, exist_ok=True)
    raw_path = output / f"bench-{stamp}.json"
    meta = {"model": pool.model, "workload": workload, "description": shape.description, "gateway": base_url,
            "client": target.client.name, "ran_on": runner_host, "prompts": prompts, "concurrency": concurrency}
    raw_path.write_text(json.dumps({"meta": meta, "summary": summaries, "raw": raw}, indent=2, default=str))
    png = b.plot(summaries, output / f"bench-{stamp}.png", f"{pool.model}: {shape.description}")
    comparison = None
    if compare_to:
        base_file = b.baseline_path(BASELINES, compare_to)
        if not base_file.exists():
            plain(f"baseline {compare_to!r} not found in {BASELINES}; saved baselines: "
                  f"{', '.join(sorted(p.stem for p in BASELINES.glob('*.json'))) or 'none'}")
            raise typer.Exit(ExitStatus.BAD_INPUT)
        comparison = b.compare(summaries, json.loads(base_file.read_text())["runs"])
    if save_baseline:
        b.save_baseline(BASELINES, save_baseline, summaries, meta)
    failed = sum(int(s["failed"] or 0) for s in summaries)
    if as_json:
        emit_json({"ok": failed == 0, "meta": meta, "runs": summaries, "raw_json": str(raw_path), "plot": str(png),
                   "comparison": comparison, "baseline_saved": save_baseline})
    else:
        _bench_tables(summaries, comparison, meta)
        err.print(f"raw results: {raw_path}\nplot: {png}", highlight=False)
    if failed:
        raise typer.Exit(ExitStatus.FAILED)


def _bench_tables(runs: list[dict[str, Any]], comparison: list[dict[str, Any]] | None, meta: dict[str, Any]) -> None:
    table = Table(title=f"vllm-fleet bench: {meta['model']} through {meta['gateway']} ({meta['description']})")
    for col in ("rate", "req/s", "tok/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "ITL p50/p90/p99 ms",
                "E2E p50/p90/p99 ms", "ok", "failed"):
        table.add_column(col)
    for r in runs:
        def triple(metric: str, r: dict[str, Any] = r) -> str:
            return "/".join(_num(r[f"{metric}_p{p}_ms"], "{:.1f}") for p in (50, 90, 99))
        table.add_row(_num(r["request_rate"]), _num(r["request_throughput"], "{:.2f}"),
                      _num(r["output_throughput"], "{:.1f}"), triple("ttft"), triple("tpot"), triple("itl"),
                      triple("e2el"), _num(r["completed"], "{:.0f}"), _num(r["failed"], "{:.0f}"))
    out.print(table)
    if comparison is not None:
        diff = Table(title="against the baseline (change in %; latency up is slower, throughput up is faster)")
        for col in ("rate", "metric", "baseline", "now", "change %"):
            diff.add_column(col)
        for c in comparison:
            diff.add_row(_num(c["request_rate"]), c["metric"], f"{c['baseline']:.2f}", f"{c['current']:.2f}",
                         f"{c['change_percent']:+.1f}")
        out.print(diff)
