# The work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: fleet_plan
short_description: Plan the whole vllm-fleet fleet once - every serving host, the gateway and the monitoring
description:
  - Validates every serving host's C(vllm_fleet_spec) with the same Python code the CLI and the Pulumi program use,
    checks the fleet-wide C(gateway) and C(monitoring) blocks once, and plans the gateway's pools and client scopes
    and the monitoring's targets, rules and dashboards.
  - Reads the hosts of the groups C(vllm_hosts), C(vllm_gateways) and C(vllm_monitoring) from the inventory (the whole
    inventory, whatever the run's limit) and their variables; runs on the controller and never contacts a host, so a
    bad spec fails before anything changes. Run it once (C(run_once)) in a play over the three groups; the facts it
    sets then reach every host of the play.
  - Sets the facts C(vllm_fleet_host_plans) (each serving host's plan by inventory name), C(vllm_fleet_gateway_plan)
    and C(vllm_fleet_monitoring_plan) (None without a gateway or monitoring) and C(vllm_fleet_models) (every model name
    a client can call, adapters included). The collection's C(plan) playbook runs it and sets each serving host's own
    C(vllm_fleet_plan) from C(vllm_fleet_host_plans).
  - When the C(vllm-fleet) CLI runs a playbook it has already planned the fleet and passes the plan as the extra
    variable C(vllm_fleet_cli_plan); the plan is then taken from there, not computed again.
  - With O(resolve_auto), plans this host again after the weights stage, with the models' C(config.json) contents, to
    settle tensor_parallel_size C(auto), and returns the host's plan as RV(plan) for the play to set as its
    C(vllm_fleet_plan).
version_added: "0.1.0"
author: vllm-fleet
options:
  model_configs:
    description:
      - With O(resolve_auto), the models' C(config.json) contents by service name, as read off the host after the
        weights stage; used to size services, together with the host's C(vllm_fleet_gpus).
    type: dict
    default: {}
  resolve_auto:
    description:
      - Plan this host again and fail when a tensor_parallel_size C(auto) cannot be sized, instead of planning the
        fleet.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Plan the fleet on the controller, once
  vllmfleet.fleet.fleet_plan:
  run_once: true
"""

RETURN = r"""
ansible_facts:
  description: The fleet plan's facts.
  returned: success, without O(resolve_auto)
  type: dict
plan:
  description: This host's plan, sized.
  returned: success, with O(resolve_auto)
  type: dict
issues:
  description: Every problem found, each with path, value, problem and fix.
  returned: failure
  type: list
  elements: dict
"""
