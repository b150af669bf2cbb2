"""`vllm-fleet bundle create|verify`: a fleet's collection, controller wheels, images and weights in one signed tar,
made on a connected machine and checked, byte for byte, on the controller that has no route out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from vllm_fleet.cli.options import InventoryOpt, JsonOpt, spec_failure
from vllm_fleet.cli.output import ExitStatus, emit_json, err, plain
from vllm_fleet.vm.planning.bundle import BundleError
from vllm_fleet.vm.planning.inventory import InventoryError, check_inventory
from vllm_fleet.vm.running.bundle import DEBIAN_MIRROR, DEBIAN_SECURITY

bundle_app = typer.Typer(no_args_is_help=True, help="Carry a fleet across an air gap: one signed, verified bundle.")

KeyFileOpt = Annotated[Path, typer.Option("--key", help="the public key the bundle must be signed with (a file)")]


@contextmanager
def _refusals(as_json: bool) -> Iterator[None]:
    """A refused inventory or bundle: every problem printed (or one JSON document), exit code 2."""
    try:
        yield
    except InventoryError as exc:
        spec_failure(exc.errors, as_json)
    except BundleError as exc:
        if as_json:
            emit_json({"ok": False, "problems": exc.problems})
        else:
            plain(str(exc))
        raise typer.Exit(ExitStatus.BAD_INPUT) from None


@bundle_app.command("create")
def create_cmd(
    inventory: InventoryOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="the bundle file to write")],
    sign_key: Annotated[str, typer.Option("--sign-key", help="GnuPG key (id, fingerprint or user id) to sign with")],
    gnupg_home: Annotated[Path | None, typer.Option("--gnupg-home", help="GnuPG home (default: GnuPG's own)")] = None,
    since: Annotated[Path | None, typer.Option("--since", help="an earlier bundle: write only what changed")] = None,
    since_key: Annotated[Path | None, typer.Option(
        "--since-key", help="the public key the earlier bundle must verify against (default: --sign-key's)")] = None,
    debian_mirror: Annotated[str, typer.Option(help="Debian 12's archive or your mirror of it")] = DEBIAN_MIRROR,
    debian_security_mirror: Annotated[str, typer.Option(
        help="Debian 12's security archive or your mirror of it")] = DEBIAN_SECURITY,
    as_json: JsonOpt = False,
) -> None:
    """Plan the fleet, make every item it needs at its pinned revision, sign the manifest, write one tar."""
    from vllm_fleet.vm.running.bundle import create

    with _refusals(as_json):
        # Secret references are resolved here only to read private origins; no value goes into the bundle.
        fleet = check_inventory(inventory, secrets=True)
        manifest, staged = create(fleet, output, key=sign_key, gnupg_home=gnupg_home, since=since,
                                  since_key=since_key, log=lambda m: err.print(f"[dim]{m}[/dim]"),
                                  debian_mirror=debian_mirror, debian_security=debian_security_mirror)
    written = [s.item for s in staged if s.file is not None]
    summary = {"ok": True, "bundle": str(output), "bytes": output.stat().st_size, "items": len(manifest.items),
               "written": len(written), "since": manifest.since.file if manifest.since else None}
    if as_json:
        emit_json(summary)
    else:
        err.print(f"[green]ok[/green] {output}: {summary['items']} items, {summary['written']} written"
                  + (f" (the rest is in {summary['since']})" if summary["since"] else "")
                  + f", {summary['bytes']} bytes")


@bundle_app.command("verify")
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="the bundle file")],
    key: KeyFileOpt,
    inventory: Annotated[Path | None, typer.Option(
        "--inventory", "-i", help="also check that the bundle holds everything this fleet needs")] = None,
    base: Annotated[Path | None, typer.Option(
        "--base", help="the bundle a --since bundle was written against (default: beside it)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the signature against KEY, then every item's bytes, and (with -i) the fleet's needs. Installs
    nothing; exit code 2 on a refused bundle."""
    from vllm_fleet.vm.running.bundle import verify

    with _refusals(as_json):
        fleet = check_inventory(inventory, secrets=False) if inventory is not None else None
        manifest = verify(bundle, key, plan=fleet, base=base)
    if as_json:
        emit_json({"ok": True, "items": len(manifest.items), "created": manifest.created})
    else:
        err.print(f"[green]ok[/green] {bundle}: signature and {len(manifest.items)} items verified")
