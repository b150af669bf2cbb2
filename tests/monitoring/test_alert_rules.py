"""The shipped alert rules: promtool accepts them, and each alert fires on its case and stays silent on its
counter-case (tests/monitoring/alerts_test.yml); thresholds and SLOs come from the spec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from vllm_fleet.monitoring.rules import alert_rules
from vllm_fleet.spec import validate_spec
from vllm_fleet.vm.planning.rules import VM_TARGET

HERE = Path(__file__).parent


def spec(**monitoring: Any) -> dict[str, Any]:
    return {
        "services": [
            {"name": "chat", "storage_uri": "file:///models/chat",
             "slo": {"ttft_p95_seconds": 0.5, "itl_p95_seconds": 0.1, "e2e_p95_seconds": 2}},
            {"name": "embed", "task": "embed", "storage_uri": "file:///models/embed", "port": 8001},
        ],
        "monitoring": monitoring,
    }


def rules_for(data: dict[str, Any]) -> dict[str, Any]:
    dep = validate_spec(data, VM_TARGET)
    assert dep.monitoring is not None
    return alert_rules(dep.monitoring, {s.name: s.slo for s in dep.services if s.slo})


def alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"]}


def test_promtool_checks_the_rules_and_every_alert_fires_and_stays_silent_in_its_unit_tests(
        tmp_path: Path, promtool: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules_for(spec()), sort_keys=False))
    shutil.copy(HERE / "alerts_test.yml", tmp_path)
    check = subprocess.run([str(promtool), "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([str(promtool), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    cases = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"][0]["alert_rule_test"]
    tested = {case["alertname"] for case in cases}
    assert tested == set(alerts(rules_for(spec()))), "every shipped alert has a case in alerts_test.yml"


def test_the_unit_tests_fail_when_a_threshold_moves_past_the_firing_case(tmp_path: Path, promtool: Path) -> None:
    """The unit tests see the spec: at a 99 % KV threshold the 95 % case no longer fires, and promtool says so."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules_for(spec(alerts={"kv_cache_usage_percent": 99})),
                                                       sort_keys=False))
    shutil.copy(HERE / "alerts_test.yml", tmp_path)
    unit = subprocess.run([str(promtool), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert unit.returncode != 0
    assert "alertname: VllmKvCacheHigh" in unit.stdout + unit.stderr


def test_thresholds_and_slos_from_the_spec_reach_the_expressions() -> None:
    rules = alerts(rules_for(spec(alerts={"kv_cache_usage_percent": 80, "kv_cache_minutes": 7, "requests_waiting": 3,
                                          "gateway_5xx_percent": 2.5, "gpu_temperature_celsius": 90,
                                          "restarts": 5, "restart_window_minutes": 30})))
    assert rules["VllmKvCacheHigh"]["expr"].endswith("* 100 > 80") and rules["VllmKvCacheHigh"]["for"] == "7m"
    assert rules["VllmRequestsWaiting"]["expr"].endswith("> 3")
    assert rules["GatewayErrorRatioHigh"]["expr"].endswith("> 2.5")
    assert rules["GpuTemperatureHigh"]["expr"].endswith("> 90")
    assert "[30m]) >= 5" in rules["VllmRestartLoop"]["expr"]
    assert 'service="chat"' in rules["VllmTimeToFirstTokenSlo"]["expr"]
    assert rules["VllmTimeToFirstTokenSlo"]["expr"].endswith("> 0.5")


def test_a_fleet_without_slos_ships_no_slo_alerts() -> None:
    data = spec()
    del data["services"][0]["slo"]
    assert not {n for n in alerts(rules_for(data)) if n.endswith("Slo")}
