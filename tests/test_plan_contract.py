"""The typed plan is the contract between Python and the roles: the options the vllm_server role declares for
each planned service (meta/argument_specs.yml, which Ansible enforces when the role starts) are exactly the fields
of vllm_fleet.vm.plan.ServicePlan, with the same types, nested sources included."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from vllm_fleet.vm.plan import HostPlan, ServicePlan, plan_for_host

REPO = Path(__file__).resolve().parents[1]
SCALARS = {str: "str", int: "int", bool: "bool"}


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
