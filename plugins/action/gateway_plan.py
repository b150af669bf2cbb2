"""Plan the fleet's gateway from every serving host's plan, on the controller; contacts no host."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import require_package, serving_plans


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("serving_hosts", "gateway_hosts", "fact_name"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "serving_hosts": {"type": "list", "elements": "str", "required": True},
                "gateway_hosts": {"type": "list", "elements": "str", "required": True},
                "fact_name": {"type": "str", "default": "vllm_fleet_gateway_plan"},
            }
        )
        require_package()
        from vllm_fleet.spec import SpecError
        from vllm_fleet.vm.gateway import fleet_gateway
        from vllm_fleet.vm.inventory import host_address

        hostvars = task_vars["hostvars"]
        plans = serving_plans(hostvars, args["serving_hosts"])
        addresses = {h: host_address(hostvars[h], h) for h in args["gateway_hosts"]}
        try:
            gateway = fleet_gateway(plans, addresses)
        except SpecError as exc:
            result.update(failed=True, msg=exc.render(), issues=[i.as_dict() for i in exc.issues])
            return result
        fact = gateway.model_dump(mode="json") if gateway else None
        result.update(changed=False, ansible_facts={args["fact_name"]: fact})
        return result
