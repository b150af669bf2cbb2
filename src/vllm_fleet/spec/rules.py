"""Rules that span fields, services or a target; pydantic checks single fields."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from vllm_fleet.spec.errors import SpecIssue, show_value
from vllm_fleet.spec.model import Accelerator, Deployment, Service, Storage, Task
from vllm_fleet.spec.uri import StorageUri, Target, UriError, check_scheme_for_target

SECRET_KINDS_BY_TARGET = {
    Target.VM: ("env", "vault"),
    Target.K8S: ("k8s_secret", "pulumi_config"),
}

Rule = Callable[[Deployment], Iterator[SpecIssue]]


def service_rules(svc: Service, i: int) -> Iterator[SpecIssue]:
    at = f"services[{i}]"
    yield from source_rules(svc.uri, svc.revision, svc.storage, at)
    if svc.task is not Task.GENERATE:
        for field in ("tool_call_parser", "reasoning_parser"):
            value = getattr(svc.engine, field)
            if value:
                yield SpecIssue(f"{at}.engine.{field}", show_value(value),
                                f"is set on a '{svc.task.value}' service, which never generates text",
                                f"remove engine.{field}, or set task: generate")
    yield from _parallel_rules(svc, at)


def source_rules(uri: StorageUri, revision: str | None, storage: Storage, at: str) -> Iterator[SpecIssue]:
    """Where weights (a service's or an adapter's) come from: one revision, credentials and file patterns that
    fit the URI's scheme."""
    if uri.revision and revision and uri.revision != revision:
        yield SpecIssue(f"{at}.revision", show_value(revision),
                        f"differs from the revision '{uri.revision}' pinned in storage_uri",
                        "give the revision in one place")
    if revision and not uri.is_hub:
        yield SpecIssue(f"{at}.revision", show_value(revision),
                        f"is set for a {uri.scheme}:// URI, which has no revisions",
                        "remove revision; only hf:// and ms:// URIs take one")
    creds = storage.credentials
    if creds.s3 and uri.scheme != "s3":
        yield SpecIssue(f"{at}.storage.credentials.s3", "(set)", f"is set but storage_uri is {uri.scheme}://",
                        "remove the s3 credentials, or use an s3:// URI")
    if creds.gcs and uri.scheme != "gs":
        yield SpecIssue(f"{at}.storage.credentials.gcs", "(set)", f"is set but storage_uri is {uri.scheme}://",
                        "remove the gcs credentials, or use a gs:// URI")
    patterns = storage.allow_patterns or storage.ignore_patterns
    if patterns and not uri.is_hub and uri.scheme not in ("s3", "gs"):
        yield SpecIssue(f"{at}.storage.allow_patterns", show_value(storage.allow_patterns),
                        f"file patterns do not apply to {uri.scheme}:// URIs",
                        "remove allow_patterns/ignore_patterns")


def _parallel_rules(svc: Service, at: str) -> Iterator[SpecIssue]:
    if svc.nodes > 1:
        yield from _group_rules(svc, at)
        return
    if svc.tp_auto:
        auto = show_value(svc.tensor_parallel_size)
        if svc.accelerator is Accelerator.CPU:
            yield SpecIssue(f"{at}.tensor_parallel_size", auto, "is sized from GPUs, and accelerator is cpu",
                            "use tensor_parallel_size: 1 on CPU")
        elif svc.pipeline_parallel_size != 1:
            yield SpecIssue(f"{at}.tensor_parallel_size", auto,
                            f"cannot be chosen together with pipeline_parallel_size {svc.pipeline_parallel_size}",
                            "give both sizes as numbers, or use pipeline_parallel_size: 1")
        elif svc.gpu_count < 1:
            yield SpecIssue(f"{at}.gpus", show_value(svc.gpus), "gives no GPUs to choose a tensor-parallel size from",
                            "give the GPUs the service may use, e.g. gpus: 8 or gpus: [0, 1, 2, 3]")
        return
    assert isinstance(svc.tensor_parallel_size, int)
    world = svc.tensor_parallel_size * svc.pipeline_parallel_size
    if svc.accelerator is Accelerator.CPU:
        if svc.gpu_count:
            yield SpecIssue(f"{at}.gpus", show_value(svc.gpus), "asks for GPUs on accelerator cpu",
                            "set gpus: 0, or accelerator: nvidia")
        if world != 1:
            yield SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                            f"tensor x pipeline parallel size is {world} on accelerator cpu", "use 1 x 1 on CPU")
    elif world != svc.gpu_count:
        yield SpecIssue(
            f"{at}.gpus", show_value(svc.gpus),
            f"tensor_parallel_size ({svc.tensor_parallel_size}) x pipeline_parallel_size "
            f"({svc.pipeline_parallel_size}) = {world}, but {svc.gpu_count} GPU(s) are given",
            f"give gpus: {world}, or parallel sizes whose product is {svc.gpu_count}",
        )


def _group_rules(svc: Service, at: str) -> Iterator[SpecIssue]:
    """An engine group across `nodes` hosts: its parallel sizes take exactly its ranks, every GPU of every node
    (one rank per node on CPU hosts)."""
    per_node = svc.gpu_count if svc.accelerator is Accelerator.NVIDIA else 1
    ranks = per_node * svc.nodes
    rule = (f"tensor_parallel_size: {per_node} and pipeline_parallel_size: {svc.nodes} (the GPUs of one host, then "
            f"the hosts), or tensor_parallel_size: {ranks} and pipeline_parallel_size: 1 on hosts joined by a fast "
            "interconnect")
    if svc.accelerator is Accelerator.NVIDIA and svc.gpu_count < 1:
        yield SpecIssue(f"{at}.gpus", show_value(svc.gpus), f"gives each of the group's {svc.nodes} hosts no GPU",
                        "give the GPUs each host of the group serves with, e.g. gpus: 8")
    elif svc.accelerator is Accelerator.CPU and svc.gpu_count:
        yield SpecIssue(f"{at}.gpus", show_value(svc.gpus), "asks for GPUs on accelerator cpu",
                        "set gpus: 0, or accelerator: nvidia")
    elif svc.tp_auto:
        yield SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                        f"is auto on a service of nodes: {svc.nodes}, whose sizes follow from its hosts",
                        f"give {rule}")
    else:
        assert isinstance(svc.tensor_parallel_size, int)
        world = svc.tensor_parallel_size * svc.pipeline_parallel_size
        if world != ranks:
            each = f"{svc.gpu_count} GPU(s)" if svc.accelerator is Accelerator.NVIDIA else "one rank (cpu)"
            yield SpecIssue(f"{at}.tensor_parallel_size", show_value(svc.tensor_parallel_size),
                            f"x pipeline_parallel_size ({svc.pipeline_parallel_size}) = {world}, but the group has "
                            f"{ranks} ranks: {svc.nodes} hosts of {each} each", f"give {rule}")


def deployment_rules(dep: Deployment) -> Iterator[SpecIssue]:
    names: dict[str, int] = {}
    for i, svc in enumerate(dep.services):
        if svc.name in names:
            yield SpecIssue(f"services[{i}].name", show_value(svc.name),
                            f"is already the name of services[{names[svc.name]}]", "give every service its own name")
        names.setdefault(svc.name, i)
        yield from service_rules(svc, i)


def target_rules(dep: Deployment, target: Target) -> Iterator[SpecIssue]:
    """What every target checks the same way: URI schemes and secret reference kinds it can resolve."""
    allowed = SECRET_KINDS_BY_TARGET[target]
    for i, svc in enumerate(dep.services):
        try:
            check_scheme_for_target(svc.uri, target)
        except UriError as exc:
            yield SpecIssue(f"services[{i}].storage_uri", show_value(svc.storage_uri), exc.problem, exc.fix)
        for j, adapter in enumerate(svc.adapters):
            try:
                check_scheme_for_target(adapter.uri, target)
            except UriError as exc:
                yield SpecIssue(f"services[{i}].adapters[{j}].storage_uri", show_value(adapter.storage_uri),
                                exc.problem, exc.fix)
        for path, ref in svc.secret_refs().items():
            if ref.kind not in allowed:
                yield SpecIssue(f"services[{i}].{path}", f"{{{ref.kind}: ...}}",
                                f"is a {ref.kind} reference, which a {target.value} target cannot resolve",
                                f"use one of: {', '.join(allowed)}")
    for block, at in ((dep.gateway, "gateway"), (dep.monitoring, "monitoring")):
        for path, ref in (block.secret_refs() if block is not None else {}).items():
            if ref.kind not in allowed:
                yield SpecIssue(f"{at}.{path}", f"{{{ref.kind}: ...}}",
                                f"is a {ref.kind} reference, which a {target.value} target cannot resolve",
                                f"use one of: {', '.join(allowed)}")
