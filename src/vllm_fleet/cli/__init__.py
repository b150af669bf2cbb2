"""The `vllm-fleet` command, the only layer that prints or parses arguments: it dispatches to the wings below."""

from vllm_fleet.cli.app import app

__all__ = ["app"]
