"""Every bad spec in tests/spec/bad/ is rejected by `vllm-fleet validate` with the field, the value and a fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.bad_specs import header
from vllm_fleet.cli import app

BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))
runner = CliRunner()


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(BAD) >= 30
    bodies = {"\n".join(ln for ln in p.read_text().splitlines() if not ln.startswith("#")) for p in BAD}
    assert len(bodies) == len(BAD), "two bad specs have the same body"


@pytest.mark.parametrize("spec", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_is_rejected_with_path_value_and_fix(spec: Path) -> None:
    want = header(spec)
    result = runner.invoke(app, ["validate", "--spec", str(spec), "--target", want["target"], "--json"])
    assert result.exit_code == 2, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    issues = [i for err in payload["errors"] for i in err["issues"]]
    matching = [i for i in issues if i["path"] == want["expect-path"]]
    assert matching, f"no issue at {want['expect-path']}; got {[i['path'] for i in issues]}"
    issue = matching[0]
    assert want["expect-value"], f"{spec.name} names no expected value"
    assert want["expect-value"] in issue["value"]
    assert issue["problem"] and issue["fix"]
    if "expect-fix" in want:
        assert want["expect-fix"] in issue["fix"], issue
    if "must-not-echo" in want:
        assert want["must-not-echo"] not in result.output


@pytest.mark.parametrize("spec", BAD[:3], ids=[p.stem for p in BAD[:3]])
def test_human_output_names_field_value_and_fix(spec: Path) -> None:
    want = header(spec)
    result = runner.invoke(app, ["validate", "--spec", str(spec), "--target", want["target"]])
    assert result.exit_code == 2
    text = result.output
    assert want["expect-path"] in text
    assert "Fix:" in text
    assert "nothing was changed" in text


def test_console_script_exit_code_is_two() -> None:
    spec = next(p for p in BAD if p.stem == "literal-api-key")
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "validate", "--spec", str(spec)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "services[0].api_key" in proc.stderr
    assert "sk-live" not in proc.stdout + proc.stderr
