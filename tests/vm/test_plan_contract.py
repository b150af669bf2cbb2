"""The typed plan is the contract between Python and the roles: the options the vllm_server role declares for
each planned service (meta/argument_specs.yml, which Ansible enforces when the role starts) are exactly the fields
of vllm_fleet.vm.plan.ServicePlan, with the same types, nested sources included; and every attribute of the fleet
plan (each host's, the gateway's, the monitoring's) that a role, template or playbook reads exists in its model."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from vllm_fleet.vm.planning.fleet import FleetPlan, plan_for_host
from vllm_fleet.vm.planning.gateway import GatewayClientPlan, GatewayPlan, GatewayPool, GatewayServer
from vllm_fleet.vm.planning.monitoring import MonitoringPlan
from vllm_fleet.vm.planning.plan import HostPlan, ServicePlan, WeightsPlan

REPO = Path(__file__).resolve().parents[2]
SCALARS = {str: "str", int: "int", bool: "bool", float: "float"}


def expected_spec(annotation: Any) -> dict[str, Any]:
    """The argument spec an annotation of the plan model calls for."""
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin in (Union, types.UnionType):
        return expected_spec(args[0]) if len(args) == 1 else {"type": "raw"}
    if origin is Literal:
        return {"type": "raw"}
    if origin is list:
        element = expected_spec(args[0])
        return {"type": "list", "elements": element["type"], **({"options": element["options"]}
                                                                 if "options" in element else {})}
    if origin is dict:
        return {"type": "dict"}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"type": "dict", "options": expected_options(annotation)}
    return {"type": SCALARS[annotation]}


def expected_options(model: type[BaseModel]) -> dict[str, Any]:
    return {name: {**expected_spec(field.annotation), **({"required": True} if field.is_required() else {})}
            for name, field in model.model_fields.items()}


def declared(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: (declared(v) if k == "options" else v) for k, v in opt.items() if k != "description"}
            for name, opt in spec.items()}


def test_vllm_server_declares_exactly_the_service_plan() -> None:
    specs = yaml.safe_load((REPO / "roles/vllm_server/meta/argument_specs.yml").read_text())
    services = specs["argument_specs"]["main"]["options"]["vllm_server_services"]
    assert declared(services["options"]) == expected_options(ServicePlan)


def test_the_plan_survives_the_trip_through_plain_data() -> None:
    plan = plan_for_host({"services": [
        {"name": "chat", "storage_uri": "s3://models/chat", "gpus": 2, "tensor_parallel_size": 2,
         "storage": {"credentials": {"s3": {"access_key_id": {"env": "K"}, "secret_access_key": {"env": "S"}}}}},
        {"name": "emb", "task": "embed", "storage_uri": "file:///m/emb", "accelerator": "cpu", "gpus": 0,
         "port": 8001}]}, "10.0.0.1")
    dumped = yaml.safe_load(yaml.safe_dump(plan.model_dump(mode="json")))
    assert HostPlan.model_validate(dumped) == plan
    assert plan.services[0].device_ids == [0, 1] and plan.services[0].source.s3 is not None


# Where the roles and playbooks read the plan: the service lists, and the loop variables that walk them.
PLAN_LISTS = ("vllm_fleet_plan.services", "vllm_fleet_plan.weights", "vllm_server_services",
              "_model_weights_plan_items", "_model_weights_selected", "_model_weights_remote", "_model_weights_local")
SERVICE_VARS = ("svc", "_vllm_server_svc")
READERS = [*(REPO / "roles/model_weights").glob("[tv]a*/*.yml"), *(REPO / "roles/vllm_server").glob("[tv]a*/*.yml"),
           *(REPO / "playbooks").rglob("*.yml")]


def resolves(model: type[BaseModel], path: str) -> bool:
    """Whether a dotted attribute path exists on the plan model (a dict field takes any key below it)."""
    current: Any = model
    for part in path.split("."):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return get_origin(current) is dict
        field = current.model_fields.get(part)
        if field is None:
            return False
        args = [a for a in get_args(field.annotation) if a is not type(None)]
        current = args[0] if get_origin(field.annotation) in (Union, types.UnionType) and len(args) == 1 \
            else field.annotation
    return True


def _tasks(node: Any) -> Any:
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks"):
            yield from _tasks(node.get(key))


def plan_reads() -> set[tuple[str, str]]:
    """(file, attribute path) for every plan attribute a role or playbook reads."""
    import re

    reads = set()
    for path in READERS:
        text = path.read_text()
        where = str(path.relative_to(REPO))
        for var in SERVICE_VARS:
            reads |= {(where, m) for m in re.findall(rf"\b{var}\.([a-z_]+(?:\.[a-z_]+)*)", text)}
        for line in text.splitlines():
            if any(name in line for name in PLAN_LISTS):
                reads |= {(where, m) for m in re.findall(r"(?:selectattr|rejectattr)\('([a-z_.]+)'", line)}
                reads |= {(where, m) for m in re.findall(r"map\(attribute='([a-z_.]+)'\)", line)}
        for task in _tasks(yaml.safe_load(text)):
            loop = task.get("loop")
            # A loop over the services themselves (not over what a filter of the collection makes of them).
            if isinstance(loop, str) and any(name in loop for name in PLAN_LISTS) and "vllmfleet.fleet." not in loop:
                var = (task.get("loop_control") or {}).get("loop_var", "item")
                body = yaml.safe_dump(task)
                reads |= {(where, m) for m in re.findall(rf"\b{var}\.([a-z_]+(?:\.[a-z_]+)*)", body)}
    return reads


def test_every_plan_attribute_the_roles_read_exists_in_the_model() -> None:
    reads = plan_reads()
    attributes = {attr for _, attr in reads}
    # The collector sees the roles' real reads (a broken collector would find nothing and pass).
    assert {"name", "source.display_uri", "source.scheme", "served_model_name", "secrets.api_key", "port",
            "tools_enabled", "tensor_parallel_size"} <= attributes
    # The weights role walks the plan's weights entries (a service's model or adapter), the others its services.
    assert {"directory", "kind", "slug", "service"} <= {a for w, a in reads if w.startswith("roles/model_weights/")}
    assert [(where, attr) for where, attr in sorted(reads)
            if not resolves(WeightsPlan if where.startswith("roles/model_weights/") else ServicePlan, attr)] == []


def test_an_attribute_the_model_lacks_is_caught() -> None:
    assert resolves(ServicePlan, "source.display_uri") and resolves(ServicePlan, "secrets.api_key")
    assert not resolves(ServicePlan, "source.display") and not resolves(ServicePlan, "gpus")


# The fleet plan's parts by the names the roles, templates and playbooks read them under.
FLEET_NAMES: dict[str, type[BaseModel]] = {
    "vllm_fleet_plan": HostPlan, "vllm_fleet_gateway_plan": GatewayPlan, "gateway_plan": GatewayPlan,
    "_gateway": GatewayPlan, "vllm_fleet_monitoring_plan": MonitoringPlan, "monitoring_plan": MonitoringPlan,
}
FLEET_READERS = [p for p in (*(REPO / "roles").glob("*/[tdvh]*/**/*"), *(REPO / "playbooks").rglob("*.yml"))
                 if p.is_file() and p.suffix in (".yml", ".j2")]


def element(model: type[BaseModel], path: str) -> type[BaseModel] | None:
    """The model of one element of a list field of `model` at `path`, if it is a model."""
    current: Any = model
    for part in path.split("."):
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        current = args[0] if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1 else annotation
    if get_origin(current) is list:
        (item,) = get_args(current)
        return item if isinstance(item, type) and issubclass(item, BaseModel) else None
    return None


def fleet_reads() -> set[tuple[str, str, str]]:
    """(file, model name, attribute path) for every read of the fleet plan's parts by their fact or role names,
    and of the loop variables of Jinja for-loops over their lists (a pool of gateway_plan.pools, its servers)."""
    import re

    reads = set()
    for path in FLEET_READERS:
        text = path.read_text()
        where = str(path.relative_to(REPO))
        names: dict[str, type[BaseModel]] = dict(FLEET_NAMES)
        for var, source in re.findall(r"\{%-?\s*for (\w+) in ([a-z_]+(?:\.[a-z_]+)+)", text):
            root, _, rest = source.partition(".")
            model = names.get(root)
            item = element(model, rest) if model else None
            if item is not None:
                names[var] = item
        for name, model in names.items():
            reads |= {(where, model.__name__, m)
                      for m in re.findall(rf"(?<![\w.]){name}\.([a-z_]+(?:\.[a-z_]+)*)", text)}
    return reads


def test_every_fleet_plan_attribute_any_role_template_or_playbook_reads_exists_in_the_model() -> None:
    models = {m.__name__: m for m in (HostPlan, GatewayPlan, MonitoringPlan, GatewayPool, GatewayServer,
                                      GatewayClientPlan, FleetPlan)}
    reads = fleet_reads()
    # The collector sees real reads of every part and of loop variables (a broken collector would pass on nothing).
    assert {("HostPlan", "services"), ("GatewayPlan", "tls_mode"), ("MonitoringPlan", "prometheus_port"),
            ("GatewayPool", "servers"), ("GatewayServer", "port")} <= {(m, a) for _, m, a in reads}
    assert [(w, m, a) for w, m, a in sorted(reads) if not resolves(models[m], a)] == []


def test_a_fleet_attribute_the_model_lacks_is_caught() -> None:
    assert resolves(GatewayPlan, "pools") and resolves(MonitoringPlan, "rules.groups")
    assert not resolves(GatewayPlan, "pool") and not resolves(HostPlan, "gateway")
    assert element(GatewayPlan, "pools") is GatewayPool and element(GatewayPlan, "routes") is None
