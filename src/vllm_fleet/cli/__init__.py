"""The `vllm-fleet` command, the only layer that prints or parses arguments: it dispatches to the wings below."""

from vllm_fleet.cli import ops  # noqa: F401 - registers status, logs and down on the app
from vllm_fleet.cli.k8s import k8s_app
from vllm_fleet.cli.sandbox import sandbox_app
from vllm_fleet.cli.vm import app

app.add_typer(sandbox_app, name="sandbox")
app.add_typer(k8s_app, name="k8s")

__all__ = ["app"]
