"""The dashboards built with grafana-foundation-sdk: Grafana's JSON model, one datasource, and GPU panels that
select what NVIDIA's DCGM exporter exports (checked by promtool's PromQL unit tests; the other panels run against
the real Prometheus of the serving world, in tests/serving/test_gateway_e2e.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from vllm_fleet.monitoring.dashboards import (
    DASHBOARDS,
    DATASOURCE_UID,
    DCGM_FIELDS,
    all_dashboards,
    panel_queries,
    resolve,
)


def test_every_dashboard_is_grafana_json_whose_every_query_uses_the_fleet_prometheus() -> None:
    dashboards = all_dashboards()
    assert len({d["uid"] for d in dashboards.values()}) == len(DASHBOARDS) == 4
    for name, dash in dashboards.items():
        assert name == f"{dash['uid']}.json" and len(dash["uid"]) <= 40
        assert dash["schemaVersion"] >= 39 and dash["panels"]
        assert [v["name"] for v in dash["templating"]["list"]] == ["host", "service"]
        titles = [p["title"] for p in dash["panels"]]
        assert len(set(titles)) == len(titles), f"{name}: panel titles repeat"
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs)
            assert all(t["datasource"]["uid"] == DATASOURCE_UID and t["expr"] for t in panel["targets"])
    built = {(d, t) for d, t, _ in panel_queries()}
    assert built == {(d["uid"], p["title"]) for d in dashboards.values() for p in d["panels"]}


def test_gpu_panels_select_the_series_the_dcgm_exporter_exports(tmp_path: Path, promtool: Path) -> None:
    """One series per DCGM field, labelled as the exporter labels them plus the target's job and host; every GPU
    panel's query must return exactly it (memory converted from MiB to bytes)."""
    labels = 'job="dcgm",host="gpu-1",gpu="0",UUID="GPU-5fd4f087",device="nvidia0",modelName="NVIDIA H100"'
    values = {name: 7 + i for i, (name, _, _) in enumerate(DCGM_FIELDS)}
    series = [{"series": f"{name}{{{labels}}}", "values": f"{value}x5"} for name, value in values.items()]
    gpu = next(d for d in DASHBOARDS if d.needs_gpu)
    exp_labels = "{" + labels + "}"
    tests = []
    for panel in gpu.panels:
        for expr, _ in panel.queries:
            field = next(name for name in values if name in expr)
            value = values[field] * (1024 * 1024 if field == "DCGM_FI_DEV_FB_USED" else 1)
            # Arithmetic keeps every label but the metric name.
            tests.append({"expr": resolve(expr), "eval_time": "4m",
                          "exp_samples": [{"labels": exp_labels if "*" in expr else f"{field}{exp_labels}",
                                           "value": value}]})
    (tmp_path / "gpu_test.yml").write_text(yaml.safe_dump(
        {"rule_files": [], "evaluation_interval": "1m",
         "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}, sort_keys=False))
    unit = subprocess.run([str(promtool), "test", "rules", "gpu_test.yml"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert len(tests) == len(gpu.panels)
