"""Every bad cluster spec is rejected, with path, value and fix, before any resource is registered."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.bad_specs import header
from tests.k8s.harness import run_program
from tests.k8s.specs import BAD, load
from vllm_fleet.cli import app
from vllm_fleet.spec import SpecError

runner = CliRunner()


def test_the_corpus_is_large_and_each_file_names_its_expected_path() -> None:
    assert len(BAD) >= 15
    for path in BAD:
        assert "expect-path" in header(path), path.name
        assert "expect-value" in header(path), path.name


@pytest.mark.parametrize("spec", BAD, ids=[p.stem for p in BAD])
def test_program_rejects_before_registering_anything(spec) -> None:
    want = header(spec)
    run = run_program(load(spec))
    assert isinstance(run.error, SpecError), run.error
    assert run.mocks.resources == [], "a resource was registered before validation failed"
    issues = [i for i in run.error.issues if i.path == want["expect-path"]]
    assert issues, f"no issue at {want['expect-path']}; got {[i.path for i in run.error.issues]}"
    assert want["expect-value"] and want["expect-value"] in issues[0].value
    assert issues[0].problem and issues[0].fix
    assert "Pulumi config vllm-fleet:spec" in run.error.render()
    if "must-not-echo" in want:
        assert want["must-not-echo"] not in run.error.render()


@pytest.mark.parametrize("spec", BAD, ids=[p.stem for p in BAD])
def test_render_exits_2_with_the_same_message(spec) -> None:
    want = header(spec)
    result = runner.invoke(app, ["k8s", "render", "--spec", str(spec), "-o", "-"])
    assert result.exit_code == 2, result.output
    assert want["expect-path"] in result.output
    assert "Fix:" in result.output
    assert "apiVersion" not in result.stdout
    if "must-not-echo" in want:
        assert want["must-not-echo"] not in result.output
