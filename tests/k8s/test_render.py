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


def test_an_engine_group_renders_kserves_multi_node_form_with_its_sizes_in_the_worker_spec_only() -> None:
    isvc = next(m for m in render_cli(next(p for p in GOOD if p.stem == "multi-node-pvc-405b"))
                if m["kind"] == "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["workerSpec"] == {"tensorParallelSize": 8, "pipelineParallelSize": 2}
    assert predictor["model"]["runtime"] == "kserve-huggingfaceserver-multinode"
    # KServe refuses the sizes given any other way; each pod (head and worker) holds one node's GPUs.
    args = predictor["model"]["args"]
    assert not {"--tensor-parallel-size", "--pipeline-parallel-size"} & set(args)
    assert not any(e["name"] in ("TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE") for e in predictor["model"]["env"])
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert "maxReplicas" not in predictor


def test_a_service_on_one_node_renders_no_worker_spec() -> None:
    for path in GOOD:
        for m in render_cli(path):
            if m["kind"] == "InferenceService" and path.stem != "multi-node-pvc-405b":
                assert "workerSpec" not in m["spec"]["predictor"], path.name
