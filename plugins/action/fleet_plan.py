"""Validate the host's vllm-fleet spec on the controller and return its plan; contacts no host."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import isidentifier
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import plain, require_package


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("spec", "address", "fact_name", "model_configs", "resolve_auto"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "spec": {"type": "raw", "required": True},
                "address": {"type": "str"},
                "fact_name": {"type": "str", "default": "vllm_fleet_plan"},
                "model_configs": {"type": "dict", "default": {}},
                "resolve_auto": {"type": "bool", "default": False},
            }
        )
        require_package()
        from vllm_fleet.spec import SpecError
        from vllm_fleet.vm.inventory import host_address
        from vllm_fleet.vm.plan import PLANNED_VAR, HostPlan, plan_for_host

        if not isidentifier(args["fact_name"]):
            raise AnsibleActionFail(f"fact_name {args['fact_name']!r} is not a valid variable name")
        planned = (task_vars.get(PLANNED_VAR) or {}).get(task_vars["inventory_hostname"])
        if planned and not args["model_configs"] and not args["resolve_auto"]:
            # `vllm-fleet deploy` validated, checked and planned this host already: take its plan as it is.
            plan = HostPlan.model_validate(plain(planned))
            result.update(changed=False, ansible_facts={args["fact_name"]: plan.model_dump(mode="json")})
            return result
        variables = dict(task_vars)
        if args["model_configs"]:  # config.json contents read off the host, e.g. after the weights stage
            variables["vllm_fleet_model_configs"] = {**(task_vars.get("vllm_fleet_model_configs") or {}),
                                                     **args["model_configs"]}
        try:
            plan = plan_for_host(
                args["spec"],
                args["address"] or host_address(task_vars, task_vars["inventory_hostname"]),
                source=f"vllm_fleet_spec of {task_vars['inventory_hostname']}",
                environ=os.environ,
                variables=variables,
                resolve_auto=args["resolve_auto"],
            )
        except SpecError as exc:
            result.update(failed=True, msg=exc.render(), issues=[i.as_dict() for i in exc.issues])
            return result
        result.update(changed=False, ansible_facts={args["fact_name"]: plan.model_dump(mode="json")})
        return result
