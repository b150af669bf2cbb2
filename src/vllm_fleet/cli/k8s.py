"""`vllm-fleet k8s`: the cluster side, without the Pulumi CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vllm_fleet.cli.output import ExitStatus, plain
from vllm_fleet.k8s.validation import CLUSTER_TARGET
from vllm_fleet.spec import SpecError, SpecIssue, load_spec_file, validate_spec

k8s_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@k8s_app.command()
def render(
    spec: Annotated[Path | None, typer.Option("--spec", "-s", help="a spec file (bare, or a vars file)")] = None,
    stack_config: Annotated[Path | None, typer.Option(
        "--stack-config", help="a Pulumi stack file, e.g. pulumi/Pulumi.example.yaml")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="a directory, or - for stdout")] = "-",
) -> None:
    """Write the manifests `pulumi up` would create, as YAML. Exit code 2 on bad input."""
    from vllm_fleet.k8s.render import config_secret_keys, rendered_manifests, stack_spec, to_yaml, write

    try:
        if (spec is None) == (stack_config is None):
            raise SpecError([SpecIssue("--spec/--stack-config", "(both or neither)", "give exactly one",
                                       "pass --spec FILE or --stack-config pulumi/Pulumi.STACK.yaml")], "k8s render")
        source = spec if spec is not None else stack_config
        assert source is not None
        if not source.exists():
            raise SpecError([SpecIssue(str(source), "(missing)", "does not exist", "give an existing file")],
                            "k8s render")
        data = load_spec_file(source) if spec is not None else stack_spec(source)
        dep = validate_spec(data, CLUSTER_TARGET, source=str(source))
    except SpecError as exc:
        plain(exc.render())
        raise typer.Exit(ExitStatus.BAD_INPUT) from None
    manifests = rendered_manifests(dep)
    if output == "-":
        sys.stdout.write(to_yaml(manifests))
    else:
        for path in write(manifests, Path(output)):
            plain(f"wrote {path}")
    keys = config_secret_keys(dep)
    if keys:
        plain("Secrets from Pulumi config are written as markers, never as values; fill them in "
              f"before `kubectl apply` ({', '.join(keys)}), or use k8s_secret references.")
