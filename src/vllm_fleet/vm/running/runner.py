"""Run the project's playbooks through ansible-runner and follow their events per host."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from vllm_fleet.vm.running import paths

ENDPOINTS_STAT = "vllm_fleet_endpoints"
GATEWAY_STAT = "vllm_fleet_gateway"
# The benchmark gates' verdicts of the run ("SERVICE on HOST": verdict), from roles/vllm_server/tasks/gate.yml.
GATES_STAT = "vllm_fleet_gates"


@dataclass
class HostProgress:
    host: str
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: bool = False
    last_error: str = ""


@dataclass
class RunResult:
    status: str
    rc: int
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    # The fleet's gateway, when it has one: its base URLs, the models behind them and the CA clients trust.
    gateway: dict[str, Any] = field(default_factory=dict)
    # Each benchmark gate the rollout ran: service, host, metric, before, after, regression_percent, ok, message,
    # requests (what both runs sent, warm-ups included).
    gates: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # Everything the play recorded with set_stats (the day-2 playbooks' rows are read from here).
    artifact: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "rc": self.rc,
            "hosts": {
                name: {
                    "ok": h.ok,
                    "changed": h.changed,
                    "failed": h.failed,
                    "unreachable": h.unreachable,
                    "error": h.last_error,
                }
                for name, h in sorted(self.hosts.items())
            },
            "endpoints": self.endpoints,
            "gateway": self.gateway,
            "gates": self.gates,
        }


def _error_text(res: dict[str, Any]) -> str:
    msg = str(res.get("msg") or res.get("stderr") or res.get("reason") or "").strip()
    # A module that could not even start says why only in its own stderr.
    for failed in (res.get("failed_modules") or {}).values():
        detail = str(failed.get("module_stderr") or failed.get("msg") or "").strip()
        if detail:
            msg = f"{msg} {detail}".strip()
    if res.get("module_stderr") and str(res["module_stderr"]).strip() not in msg:
        msg = f"{msg} {str(res['module_stderr']).strip()}".strip()
    # A loop's result says only "One or more items failed": each failed item holds why.
    items = [i for i in res.get("results") or [] if isinstance(i, dict) and i.get("failed")]
    details = [_error_text(i) or ("the item's output is hidden by no_log" if i.get("censored") else "")
               for i in items]
    if details:
        msg = f"{msg}: {'; '.join(d for d in details if d)}" if msg else "; ".join(d for d in details if d)
    return msg


class EventTracker:
    """Folds ansible-runner events into per-host progress."""

    def __init__(self, on_change: Callable[[RunResult], None] | None = None) -> None:
        self.result = RunResult(status="running", rc=-1)
        self._on_change = on_change

    def _host(self, name: str) -> HostProgress:
        return self.result.hosts.setdefault(name, HostProgress(name))

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host")
        if kind == "runner_on_start" and host:
            self._host(host).task = data.get("task", "")
        elif kind == "runner_on_ok" and host:
            h = self._host(host)
            h.ok += 1
            if data.get("res", {}).get("changed"):
                h.changed += 1
        elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
            h = self._host(host)
            h.failed += 1
            h.last_error = f"{data.get('task', '')}: {_error_text(data.get('res', {}))}"
        elif kind == "runner_on_unreachable" and host:
            h = self._host(host)
            h.unreachable = True
            res = data.get("res", {})
            # Under no_log Ansible keeps no message of an unreachable result: name the task at least.
            why = _error_text(res) or ("the task's output is hidden by no_log" if res.get("censored") else "no message")
            h.last_error = f"unreachable in {data.get('task', '')!r}: {why}"
        elif kind == "playbook_on_stats":
            self.result.stats = {k: data.get(k, {}) for k in ("ok", "changed", "failures", "dark", "skipped")}
            artifact = data.get("artifact_data") or {}
            self.result.artifact = dict(artifact)
            self.result.endpoints = list(artifact.get(ENDPOINTS_STAT, []))
            self.result.gateway = dict(artifact.get(GATEWAY_STAT) or {})
            self.result.gates = [dict(v) for _, v in sorted((artifact.get(GATES_STAT) or {}).items())]
        if self._on_change:
            self._on_change(self.result)
        return True


def _scrub_command_artifacts(private: Path, keep: set[str]) -> None:
    """ansible-runner records the whole environment of the run in artifacts/<id>/command, and the controller's
    environment holds the secrets that {env: NAME} references name. Keep only the variables this module set."""
    for command in private.glob("artifacts/*/command"):
        try:
            data = json.loads(command.read_text())
        except (OSError, ValueError):
            continue
        data["env"] = {k: v for k, v in (data.get("env") or {}).items() if k in keep}
        command.write_text(json.dumps(data))


def run_playbook(
    playbook: str,
    inventory: str | Path,
    *,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    extravars: dict[str, Any] | None = None,
    tags: str | None = None,
    verbosity: int = 0,
    on_change: Callable[[RunResult], None] | None = None,
    quiet: bool = True,
    keep_artifacts: Path | None = None,
) -> RunResult:
    """Run a playbook of the collection; with keep_artifacts, ansible-runner's own record of the run (its events
    and output) is kept in that directory instead of being removed."""
    paths.ensure_collection_link()
    tracker = EventTracker(on_change)
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    # ansible-playbook is found beside this interpreter even when the venv is not activated.
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}
    config = paths.ansible_config()
    if config is not None:
        env["ANSIBLE_CONFIG"] = str(config)
    envvars = {**{k: v for k, v in os.environ.items() if k.startswith("ANSIBLE_")}, **env}
    if keep_artifacts is not None:
        keep_artifacts.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="vllm-fleet-run-", dir=keep_artifacts))
    try:
        scrubbed = False

        def on_event(event: dict[str, Any]) -> bool:
            # The command artifact is written just before the first event: scrub it as early as possible.
            nonlocal scrubbed
            if not scrubbed:
                _scrub_command_artifacts(private, set(envvars))
                scrubbed = True
            return tracker(event)

        # Secrets referenced by {env: NAME} are read from this process's environment by the playbook.
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(paths.collection_root()),
            playbook=str(paths.playbook(playbook)),
            inventory=str(Path(inventory).resolve()),
            limit=limit,
            tags=tags,
            extravars=extravars or {},
            cmdline=" ".join(cmdline) or None,
            envvars=envvars,
            event_handler=on_event,
            quiet=quiet,
            verbosity=verbosity,
            suppress_env_files=True,
        )
        tracker.result.status = runner.status
        tracker.result.rc = runner.rc
    finally:
        if keep_artifacts is None:
            shutil.rmtree(private, ignore_errors=True)
        else:
            _scrub_command_artifacts(private, set(envvars))
    return tracker.result
