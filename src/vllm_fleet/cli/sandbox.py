"""`vllm-fleet sandbox`: local container hosts that stand in for GPU VMs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import SSH_KEY, HostSpec, host_down, host_up

sandbox_app = typer.Typer(no_args_is_help=True, help=__doc__)


@sandbox_app.command("engine")
def engine_cmd() -> None:
    """Install and start a Docker engine if none answers."""
    typer.echo(f"docker engine: {ensure_engine()}")


@sandbox_app.command("image")
def image_cmd() -> None:
    """Build the Debian 12 systemd host image unless its recipe is already built."""
    ensure_engine()
    tag, built = ensure_host_image(log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{tag} ({'built' if built else 'cached'})")


@sandbox_app.command("up")
def up_cmd(
    names: Annotated[list[str], typer.Argument(help="host container names")],
    publish: Annotated[list[str] | None, typer.Option("--publish", "-p", help="docker -p spec, repeatable")] = None,
    shm_size: Annotated[str, typer.Option(help="/dev/shm size of the host")] = "2g",
    volume: Annotated[list[str] | None, typer.Option("--volume", "-v", help="docker -v spec, repeatable")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start container hosts (idempotent) and wait until systemd runs in each."""
    ensure_engine()
    tag, _ = ensure_host_image(log=lambda m: typer.echo(m, err=True))
    result = {}
    for name in names:
        spec = HostSpec(name=name, image=tag, publish=tuple(publish or ()), shm_size=shm_size,
                        mounts=tuple(volume or ()))
        addr, created = host_up(spec)
        result[name] = {"address": addr, "created": created, "identity_file": str(SSH_KEY)}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for name, r in result.items():
            typer.echo(f"{name}: {r['address']} ({'created' if r['created'] else 'already up'})")


@sandbox_app.command("down")
def down_cmd(names: Annotated[list[str], typer.Argument()]) -> None:
    """Remove container hosts and their Docker volumes."""
    for name in names:
        typer.echo(f"{name}: {'removed' if host_down(name) else 'absent'}")
