"""Plan the whole fleet on the controller from the inventory (or take the CLI's plan); contacts no host."""

from __future__ import annotations

import os
from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import plain, require_package


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("model_configs", "resolve_auto"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "model_configs": {"type": "dict", "default": {}},
                "resolve_auto": {"type": "bool", "default": False},
            }
        )
        require_package()
        from vllm_fleet.spec import SpecError
        from vllm_fleet.vm.fleet import (
            CLI_PLAN_VAR,
            GROUPS,
            SPEC_VAR,
            FleetPlan,
            InventoryError,
            InventoryHost,
            host_address,
            plan_fleet,
            plan_for_host,
        )

        try:
            if args["resolve_auto"]:
                host = task_vars["inventory_hostname"]
                variables = dict(task_vars)
                # config.json contents read off the host after the weights stage
                variables["vllm_fleet_model_configs"] = {**(task_vars.get("vllm_fleet_model_configs") or {}),
                                                         **args["model_configs"]}
                plan = plan_for_host(plain(task_vars.get(SPEC_VAR)), host_address(task_vars, host),
                                     source=f"{SPEC_VAR} of {host}", environ=os.environ, variables=variables,
                                     resolve_auto=True)
                # Returned, not set as a fact: the play's set_fact of vllm_fleet_plan outranks facts.
                result.update(changed=False, plan=plan.model_dump(mode="json"))
                return result
            given = task_vars.get(CLI_PLAN_VAR)
            if given:
                # `vllm-fleet` validated, checked and planned the fleet already: take its plan as it is.
                fleet = FleetPlan.model_validate(plain(given))
            else:
                hostvars = task_vars["hostvars"]
                groups = task_vars.get("groups") or {}

                def found(name: str) -> InventoryHost:
                    hv: Any = hostvars[name]
                    return InventoryHost(name, plain(hv.get(SPEC_VAR)), host_address(hv, name), hv)

                fleet = plan_fleet({g: [found(h) for h in groups.get(g) or []] for g in GROUPS}, os.environ)
        except SpecError as exc:
            result.update(failed=True, msg=exc.render(), issues=[i.as_dict() for i in exc.issues])
            return result
        except InventoryError as exc:
            result.update(failed=True, msg=str(exc), issues=[i.as_dict() for e in exc.errors for i in e.issues])
            return result
        result.update(changed=False, ansible_facts=fleet.facts())
        return result
