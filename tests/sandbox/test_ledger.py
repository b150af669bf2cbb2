"""The cost ledger (vllm_fleet.sandbox.ledger): figures recorded by the test that ran them, summed per area."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_fleet.sandbox import ledger


def test_areas_are_directories_and_the_serving_world_is_one_area_per_file() -> None:
    assert ledger.area_of("tests/serving/test_gateway_e2e.py::test_x") == "serving:gateway_e2e"
    assert ledger.area_of("tests/weights/test_fetch.py::test_y[a]") == "weights"
    assert ledger.area_of("tests/roles/test_molecule.py::test_scenario[docker:default]") == "roles:molecule"
    assert ledger.area_of("tests/test_loose.py::test_x") == "loose"


def test_figures_are_summed_per_area_with_totals_and_nothing_is_recorded_without_a_ledger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    ledger.record("deploys", 1, test="tests/serving/test_e2e_vllm.py::a")
    assert not path.exists()

    monkeypatch.setenv(ledger.LEDGER_ENV, str(path))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/serving/test_e2e_vllm.py::b (call)")
    ledger.record("deploys", 1)  # the current test's
    ledger.record("engine_starts", 3, test="tests/serving/test_e2e_vllm.py::a")
    ledger.record("engine_starts", 0, test="tests/serving/test_e2e_vllm.py::a")  # nothing to record
    ledger.record("bench_requests", 80, test="tests/serving/test_gateway_e2e.py::c")
    ledger.record("playbooks", 1, test="")
    ledger.record("seconds", 12.4, test="", area="serving:e2e_vllm")
    with pytest.raises(AssertionError):
        ledger.record("minutes", 1)
    assert len(path.read_text().splitlines()) == 5

    header, rows = ledger.table(path)
    by_area = {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}
    assert rows[0][0] == "serving:e2e_vllm"  # most seconds first
    assert by_area["serving:e2e_vllm"] == {"wall s": "12", "deploy runs": "1", "other playbook runs": "0",
                                           "vLLM engine starts": "3", "benchmark requests": "0"}
    assert by_area["serving:gateway_e2e"]["benchmark requests"] == "80"
    assert by_area["(outside any test)"]["other playbook runs"] == "1"
    assert rows[-1] == ["total", "12", "1", "1", "3", "80"]
    assert ledger.render(path).splitlines()[0].split("  ")[0] == "area"
