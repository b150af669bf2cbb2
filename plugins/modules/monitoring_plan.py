# The work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: monitoring_plan
short_description: Plan the fleet's monitoring from every serving host's plan
description:
  - Reads C(vllm_fleet_plan) of every serving host (set by vllmfleet.fleet.fleet_plan) and C(vllm_fleet_gateway_plan)
    of the first gateway host, and builds what the monitoring hosts run from the spec's C(monitoring) block - the
    scrape targets of every job (vLLM services, the gateway, node and DCGM exporters, Prometheus, Alertmanager) with
    their C(host), C(service), C(model) and C(task) labels, the alert rules with the block's thresholds and each
    service's SLO, the dashboards and the Alertmanager receiver's reference.
  - Checks what no single host can - that every serving host has the same monitoring block and every replica of a
    service the same SLO, and that the monitoring hosts can reach every target - and fails, naming host, field and
    fix, before anything changes.
  - Runs on the controller; contacts no host. Sets C(vllm_fleet_monitoring_plan) (None when the fleet has no
    monitoring).
version_added: "0.1.0"
author: vllm-fleet
options:
  serving_hosts:
    description: The serving hosts, usually C({{ groups['vllm_hosts'] }}).
    type: list
    elements: str
    required: true
  gateway_hosts:
    description: The gateway hosts, usually C({{ groups['vllm_gateways'] | default([]) }}).
    type: list
    elements: str
    default: []
  monitoring_hosts:
    description: The monitoring hosts, usually C({{ groups['vllm_monitoring'] | default([]) }}).
    type: list
    elements: str
    required: true
  fact_name:
    description: Name of the fact to set.
    type: str
    default: vllm_fleet_monitoring_plan
"""

EXAMPLES = r"""
- name: Plan the monitoring
  vllmfleet.fleet.monitoring_plan:
    serving_hosts: "{{ groups['vllm_hosts'] }}"
    gateway_hosts: "{{ groups['vllm_gateways'] | default([]) }}"
    monitoring_hosts: "{{ groups['vllm_monitoring'] | default([]) }}"
"""

RETURN = r"""
ansible_facts:
  description: The monitoring plan, under the fact name given.
  returned: success
  type: dict
issues:
  description: Every problem found, each with path, value, problem and fix.
  returned: failure
  type: list
  elements: dict
"""
