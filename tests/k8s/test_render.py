"""`vllm-fleet k8s render` writes exactly what the program registers, and never a secret value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.k8s.harness import FAKE_SECRETS, run_program, unwrap
from tests.k8s.specs import EXAMPLE_STACK, GOOD, load
from vllm_fleet.cli import app
from vllm_fleet.k8s.manifests import ConfigSecret

runner = CliRunner()
CASES = [*GOOD, EXAMPLE_STACK]


def spec_of(path: Path) -> Any:
    return load(path)["config"]["vllm-fleet:spec"] if path == EXAMPLE_STACK else load(path)


def render_cli(path: Path) -> list[dict[str, Any]]:
    flag = "--stack-config" if path == EXAMPLE_STACK else "--spec"
    result = runner.invoke(app, ["k8s", "render", flag, str(path), "-o", "-"])
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.stdout))


def keyed(manifests: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for m in manifests:
        key = (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"])
        assert key not in out, f"{key} twice"
        out[key] = m
    return out


def markers_for_fake_secrets(value: Any) -> Any:
    """The mocks hold the test's secret values where render writes markers; map one onto the other."""
    by_value = {v: ConfigSecret(k).marker() for k, v in FAKE_SECRETS.items()}
    # The gateway's backend credential is the key after "Bearer " (Envoy Gateway injects the whole value).
    by_value |= {f"Bearer {v}": ConfigSecret(k, prefix="Bearer ").marker() for k, v in FAKE_SECRETS.items()}
    if isinstance(value, dict):
        return {k: markers_for_fake_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [markers_for_fake_secrets(v) for v in value]
    return by_value.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_render_equals_what_the_mocks_recorded(path: Path) -> None:
    rendered = keyed(render_cli(path))
    run = run_program(spec_of(path))
    assert run.error is None
    recorded = keyed([markers_for_fake_secrets(unwrap(r.inputs)) for r in run.custom])
    assert rendered.keys() == recorded.keys()
    for key in rendered:
        assert rendered[key] == recorded[key], key


def test_render_to_a_directory_writes_one_file_per_service(tmp_path: Path) -> None:
    result = runner.invoke(app, ["k8s", "render", "--stack-config", str(EXAMPLE_STACK), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["00-namespaces.yaml", "01-qwen-chat.yaml", "02-llama-70b.yaml"]
    from_dir = [m for f in sorted(tmp_path.iterdir()) for m in yaml.safe_load_all(f.read_text())]
    assert keyed(from_dir) == keyed(render_cli(EXAMPLE_STACK))


def test_render_needs_exactly_one_source(tmp_path: Path) -> None:
    neither = runner.invoke(app, ["k8s", "render", "-o", "-"])
    assert neither.exit_code == 2
    assert "give exactly one" in neither.output
    both = runner.invoke(app, ["k8s", "render", "--spec", str(GOOD[0]), "--stack-config", str(EXAMPLE_STACK)])
    assert both.exit_code == 2
    missing = runner.invoke(app, ["k8s", "render", "--spec", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output


def test_stack_file_without_a_spec_is_bad_input(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text("config:\n  kubernetes:context: x\n")
    result = runner.invoke(app, ["k8s", "render", "--stack-config", str(stack)])
    assert result.exit_code == 2
    assert "vllm-fleet:spec" in result.output
