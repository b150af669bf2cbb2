"""Plan the whole fleet on the controller from the inventory (or take the CLI's plan); contacts no host."""

from __future__ import annotations

import os

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
        from vllm_fleet.vm.planning import fleet as planner

        try:
            if args["resolve_auto"]:
                # Returned, not set as a fact: the play's set_fact of vllm_fleet_plan outranks facts.
                spec = plain(task_vars.get(planner.SPEC_VAR))
                plan = planner.sized_host_plan({**task_vars, planner.SPEC_VAR: spec}, plain(args["model_configs"]),
                                               os.environ)
                result.update(changed=False, plan=plan.model_dump(mode="json"))
                return result
            given = task_vars.get(planner.CLI_PLAN_VAR)
            # `vllm-fleet` validated, checked and planned the fleet already: take its plan as it is.
            fleet = (planner.FleetPlan.model_validate(plain(given)) if given else
                     planner.plan_from_hostvars(task_vars["hostvars"], task_vars.get("groups") or {}, os.environ,
                                                plain))
        except SpecError as exc:
            result.update(failed=True, msg=exc.render(), issues=[i.as_dict() for i in exc.issues])
            return result
        except planner.InventoryError as exc:
            result.update(failed=True, msg=str(exc), issues=[i.as_dict() for e in exc.errors for i in e.issues])
            return result
        result.update(changed=False, ansible_facts=fleet.facts())
        return result
