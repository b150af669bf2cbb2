"""The root `vllm-fleet` app: every command group joins it here, in the order `--help` lists them."""

from __future__ import annotations

import typer

from vllm_fleet.cli.bundle import bundle_app
from vllm_fleet.cli.k8s import k8s_app
from vllm_fleet.cli.ops import ops_app
from vllm_fleet.cli.sandbox import sandbox_app
from vllm_fleet.cli.vm import vm_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="From model weights to production vLLM endpoints on GPU VMs and KServe clusters.")
app.add_typer(vm_app)  # validate, plan, deploy
app.add_typer(ops_app)  # status, logs, down, bench
app.add_typer(bundle_app, name="bundle")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(k8s_app, name="k8s")
