# The work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: gateway_plan
short_description: Plan the fleet's gateway from every serving host's plan
description:
  - Reads C(vllm_fleet_plan) of every serving host (set by vllmfleet.fleet.fleet_plan) and builds the gateway's pools
    (one per served model, with every host serving it), client scopes and listener settings from the spec's
    C(gateway) block.
  - Checks what no single host can - that every serving host has the same gateway block, that one model has one task
    and one backend key everywhere, and that the gateway hosts can reach every backend (services on a host's loopback
    are reachable only from a gateway on that host) - and fails, naming host, field and fix, before anything changes.
  - Runs on the controller; contacts no host. Sets C(vllm_fleet_gateway_plan) (None when the fleet has no gateway).
version_added: "0.1.0"
author: vllm-fleet
options:
  serving_hosts:
    description: The serving hosts, usually C({{ groups['vllm_hosts'] }}).
    type: list
    elements: str
    required: true
  gateway_hosts:
    description: The gateway hosts, usually C({{ groups['vllm_gateways'] }}).
    type: list
    elements: str
    required: true
  fact_name:
    description: Name of the fact to set.
    type: str
    default: vllm_fleet_gateway_plan
"""

EXAMPLES = r"""
- name: Plan the gateway
  vllmfleet.fleet.gateway_plan:
    serving_hosts: "{{ groups['vllm_hosts'] }}"
    gateway_hosts: "{{ groups['vllm_gateways'] }}"
"""

RETURN = r"""
ansible_facts:
  description: The gateway plan, under the fact name given.
  returned: success
  type: dict
issues:
  description: Every problem found, each with path, value, problem and fix.
  returned: failure
  type: list
  elements: dict
"""
