"""Grafana's install path, rendered with Ansible's own templating: Grafana's apt repository cannot be reached here,
so its repository line, key and provisioning files are checked as the role renders them, with the real URLs as
defaults and a mirror override (the dashboards themselves run against the real Prometheus in the serving e2e)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.gateway.test_gateway_plan import fleet
from tests.monitoring.test_monitoring_plan import BACKEND, MONITORED
from vllm_fleet.monitoring.dashboards import DATASOURCE_UID, all_dashboards

ROLE = Path(__file__).resolve().parents[2] / "roles" / "monitoring"
PASSWORD = "rendering-pw-1c9e"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def templar(**overrides: Any) -> Templar:
    plan = fleet({"h1": MONITORED}, BACKEND, {"h1": "10.0.0.1"}, ["h1"]).monitoring
    assert plan is not None
    variables: dict[str, Any] = {k: trust_as_template(v) if isinstance(v, str) else v
                                 for f in ("defaults/main.yml", "vars/main.yml")
                                 for k, v in DataLoader().load_from_file(str(ROLE / f)).items()}
    variables |= {"vllm_fleet_monitoring_plan": plan.model_dump(mode="json"), "inventory_hostname": "h1",
                  "vllm_fleet_internal_addresses": {"h1": "10.1.0.1"},
                  # What the role's lookups give on the controller: the password and the internal CA's certificate.
                  "_monitoring_password": PASSWORD, "_monitoring_ca_pem": CA_PEM,
                  **overrides}
    return Templar(loader=DataLoader(), variables=variables)


def task(name: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "grafana.yml").read_text())
    return next(t for t in tasks if t["name"] == name)


def render(t: Templar, text: str) -> Any:
    return t.template(trust_as_template(text))


def test_grafanas_repository_and_key_are_the_real_ones_by_default_and_a_mirror_replaces_them() -> None:
    repo = task("Add Grafana's apt repository")["ansible.builtin.apt_repository"]["repo"]
    key = task("Fetch Grafana's signing key")["ansible.builtin.get_url"]["url"]
    signed = "deb [signed-by=/etc/apt/keyrings/grafana.asc]"
    assert render(templar(), repo) == f"{signed} https://apt.grafana.com stable main"
    assert render(templar(), key) == "https://apt.grafana.com/gpg.key"
    mirrored = templar(monitoring_grafana_apt_url="http://mirror.lan/grafana",
                       monitoring_grafana_apt_key_url="http://mirror.lan/grafana/gpg.key")
    assert render(mirrored, repo) == f"{signed} http://mirror.lan/grafana stable main"
    assert render(mirrored, key) == "http://mirror.lan/grafana/gpg.key"


def test_the_provisioned_datasource_is_the_one_every_dashboard_queries() -> None:
    t = templar()
    source = yaml.safe_load(render(t, (ROLE / "templates" / "grafana-datasources.yml.j2").read_text()))
    (ds,) = source["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "prometheus" and ds["url"] == "https://10.1.0.1:9090"
    uids = {target["datasource"]["uid"] for d in all_dashboards().values() for p in d["panels"]
            for target in p["targets"]}
    assert uids == {ds["uid"]}
    provider = yaml.safe_load(render(t, (ROLE / "templates" / "grafana-dashboards.yml.j2").read_text()))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/vllm-fleet"
    written = task("Write the dashboards")["ansible.builtin.copy"]["dest"]
    assert render(t, written.replace("item.key", "'vllm-fleet-gpu.json'")) == \
        "/var/lib/grafana/dashboards/vllm-fleet/vllm-fleet-gpu.json"


def test_the_datasource_queries_prometheus_as_the_monitoring_user_over_tls_from_the_internal_ca() -> None:
    (ds,) = yaml.safe_load(render(templar(), (ROLE / "templates" / "grafana-datasources.yml.j2").read_text())
                           )["datasources"]
    assert (ds["basicAuth"], ds["basicAuthUser"], ds["jsonData"]) == (True, "vllm-fleet", {"tlsAuthWithCACert": True})
    assert ds["secureJsonData"] == {"basicAuthPassword": PASSWORD, "tlsCACert": CA_PEM}
    assert task("Provision the datasource (the monitoring user over TLS) and the dashboards")["no_log"] is True


def test_grafana_reads_its_admin_password_from_a_file_and_admits_no_anonymous_user() -> None:
    settings = {i["key"]: i["value"] for i in task("Set Grafana's listener (the internal address only)")["loop"]}
    assert settings["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/etc/grafana/vllm-fleet-admin-password"
    assert settings["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    written = task("Write the admin password Grafana reads at its first start (root and the grafana group only)")
    assert (written["ansible.builtin.copy"]["mode"], written["no_log"]) == ("0640", True)
    assert written["notify"] == "Reset Grafana's admin password"
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    reset = next(h for h in handlers if h["name"] == written["notify"])
    assert "--password-from-stdin" in reset["ansible.builtin.command"]["argv"]
    assert "_monitoring_grafana_password" in reset["ansible.builtin.command"]["stdin"]
    assert "password" not in " ".join(a for a in reset["ansible.builtin.command"]["argv"] if "{{" in a)
