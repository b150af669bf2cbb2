"""What `vllm-fleet bench` runs against, chosen from the fleet plan before any host is touched: the gateway's URL and
CA, the generate pool of the model, a client whose key may use it, and the serving host and service the benchmark
runs beside (vLLM's benchmark needs the service's image and its weights as tokenizer). A bad choice raises SpecError
naming the option, the value and the fix."""

from __future__ import annotations

from dataclasses import dataclass

from vllm_fleet.spec import SpecError, SpecIssue
from vllm_fleet.vm.planning.fleet import FleetPlan
from vllm_fleet.vm.planning.gateway import GatewayClientPlan, GatewayPool


@dataclass(frozen=True)
class BenchTarget:
    base_url: str
    ca_file: str  # "" unless the gateway's TLS is generated
    pool: GatewayPool
    client: GatewayClientPlan
    host: str  # the serving host the benchmark runs on
    service: str  # the service there whose image and weights it uses


def _refuse(option: str, value: str, problem: str, fix: str) -> SpecError:
    return SpecError([SpecIssue(option, value, problem, fix)], "command line")


def bench_target(fleet: FleetPlan, inventory: str, model: str | None, client: str | None) -> BenchTarget:
    """The target of a benchmark: `model` (default: the first generate model behind the gateway) through the key of
    `client` (default: the first client whose key may use it)."""
    gw = fleet.gateway
    if gw is None:
        raise _refuse("--inventory", repr(inventory), "has no gateway to benchmark through",
                      "add a gateway block and a vllm_gateways group, and deploy")
    generate = [p for p in gw.pools if p.task == "generate"]
    pool = next((p for p in generate if p.model == model), None) if model else (generate[0] if generate else None)
    if pool is None:
        raise _refuse("--model", repr(model), "is not a generate model behind the gateway",
                      f"use one of: {', '.join(p.model for p in generate) or 'none'}")
    allowed = [c for c in gw.clients if pool.model in c.models and (client is None or c.name == client)]
    if not allowed:
        raise _refuse("--client", repr(client), f"names no client whose key may use '{pool.model}'",
                      f"use one of: {', '.join(c.name for c in gw.clients if pool.model in c.models) or 'none'}")
    host = pool.servers[0].host
    service = next(s.name for s in fleet.hosts[host].services if s.served_model_name == pool.model)
    return BenchTarget(base_url=gw.base_url, ca_file=gw.ca_file, pool=pool, client=allowed[0], host=host,
                       service=service)
