"""Plan the fleet's monitoring from every serving host's plan and the gateway's, on the controller; contacts no
host."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.vllmfleet.fleet.plugins.plugin_utils.fleet import plain, require_package, serving_plans


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("serving_hosts", "gateway_hosts", "monitoring_hosts", "fact_name"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "serving_hosts": {"type": "list", "elements": "str", "required": True},
                "gateway_hosts": {"type": "list", "elements": "str", "default": []},
                "monitoring_hosts": {"type": "list", "elements": "str", "required": True},
                "fact_name": {"type": "str", "default": "vllm_fleet_monitoring_plan"},
            }
        )
        require_package()
        from vllm_fleet.spec import SpecError
        from vllm_fleet.vm.gateway import GatewayPlan
        from vllm_fleet.vm.inventory import host_address
        from vllm_fleet.vm.monitoring import exporter_host, fleet_monitoring

        hostvars = task_vars["hostvars"]
        plans = serving_plans(hostvars, args["serving_hosts"])
        gateway = None
        if args["gateway_hosts"]:
            raw = hostvars[args["gateway_hosts"][0]].get("vllm_fleet_gateway_plan")
            gateway = GatewayPlan.model_validate(plain(raw)) if raw else None
        every = dict.fromkeys([*args["serving_hosts"], *args["gateway_hosts"], *args["monitoring_hosts"]])
        wanted = ("vllm_fleet_nvidia", "vllm_fleet_backend_address", "vllm_fleet_direct_ports")
        hosts = {h: exporter_host({k: plain(hostvars[h][k]) for k in wanted if k in hostvars[h]},
                                  host_address(hostvars[h], h)) for h in every}
        try:
            monitoring = fleet_monitoring(plans, gateway, args["monitoring_hosts"], hosts)
        except SpecError as exc:
            result.update(failed=True, msg=exc.render(), issues=[i.as_dict() for i in exc.issues])
            return result
        fact = monitoring.model_dump(mode="json") if monitoring else None
        result.update(changed=False, ansible_facts={args["fact_name"]: fact})
        return result
