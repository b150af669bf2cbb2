# The work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: fleet_plan
short_description: Validate a vllm-fleet model spec and set the host's serving plan
description:
  - Validates the host's C(vllm_fleet_spec) with the same Python code the CLI and the Pulumi program use.
  - Runs entirely on the controller and never contacts the host, so a bad spec fails before anything changes.
  - Sets a fact (default C(vllm_fleet_plan)) that the roles consume.
  - When C(vllm-fleet deploy) runs the playbook it has already validated and planned every host and passes the
    plans as the extra variable C(vllm_fleet_planned); the host's plan is then taken from there, not computed
    again (except for a re-plan with O(model_configs) or O(resolve_auto)).
version_added: "0.1.0"
author: vllm-fleet
options:
  spec:
    description: The raw spec, usually C({{ vllm_fleet_spec }}).
    type: raw
    required: true
  address:
    description:
      - The address clients reach this host at, used for endpoint URLs.
      - Defaults to C(vllm_fleet_address), else C(ansible_host), else the inventory hostname.
    type: str
  fact_name:
    description: Name of the fact to set.
    type: str
    default: vllm_fleet_plan
  model_configs:
    description:
      - The models' C(config.json) contents by service name, as read off the host after the weights stage.
      - Used to size services, together with the host's C(vllm_fleet_gpus).
    type: dict
    default: {}
  resolve_auto:
    description:
      - Fail when a C(tensor_parallel_size: auto) cannot be sized yet, instead of leaving it for a later plan.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Validate the spec and plan the services
  vllmfleet.fleet.fleet_plan:
    spec: "{{ vllm_fleet_spec }}"
    address: "{{ ansible_host | default(inventory_hostname) }}"
"""

RETURN = r"""
ansible_facts:
  description: The plan, under the fact name given.
  returned: success
  type: dict
issues:
  description: Every problem found, each with path, value, problem and fix.
  returned: failure
  type: list
  elements: dict
"""
