"""Filters that shape the run summary."""

DOCUMENTATION = r"""
---
name: endpoint_summary
short_description: One service plan as a row of the run summary
description: Keeps the host, service, model, task and URL of a planned service.
version_added: "0.1.0"
author: vllm-fleet
options:
  _input:
    description: A service entry of C(vllm_fleet_plan.services).
    type: dict
    required: true
  host:
    description: The inventory hostname.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Summarise
  ansible.builtin.debug:
    msg: "{{ vllm_fleet_plan.services | map('vllmfleet.fleet.endpoint_summary', inventory_hostname) | list }}"
"""

RETURN = r"""
_value:
  description: host, service, model, task and url.
  type: dict
"""


def endpoint_summary(service, host):
    return {
        "host": host,
        "service": service["name"],
        "model": service["served_model_name"],
        "task": service["task"],
        "url": service["endpoint"],
    }


class FilterModule:
    def filters(self):
        return {"endpoint_summary": endpoint_summary}
