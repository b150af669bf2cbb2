"""vLLM server arguments rendered from a validated service, the same for containers and pods."""

from __future__ import annotations

import json
from collections.abc import Sequence

from vllm_fleet.spec.adapters import derived_limits
from vllm_fleet.spec.model import Service, Task

MODEL_MOUNT = "/mnt/models"
# Where a container or pod sees its service's adapters: one directory per adapter below it (a VM container mounts
# the service's adapters directory here read-only; a pod's storage initializer downloads each adapter below it).
ADAPTERS_MOUNT = "/mnt/adapters"
# What a container's stop timeout or a pod's termination grace adds to engine.shutdown_timeout: the engine's
# teardown after the drain (about 6 s measured on CPU) and the HTTP server's exit.
STOP_MARGIN_SECONDS = 15
SERVER_MODULE = ["python3", "-m", "vllm.entrypoints.openai.api_server"]

_POOLING_CONVERT = {Task.EMBED: "embed", Task.SCORE: "classify"}


def render_engine_args(svc: Service, *, port: int = 8000, model_path: str = MODEL_MOUNT) -> list[str]:
    """The argument list after the server entry point, in a stable order."""
    eng = svc.engine
    # The server listens inside its container or pod; what is exposed is decided by port publishing.
    listen = "0.0.0.0"  # noqa: S104
    args = ["--model", model_path, "--served-model-name", svc.model_name, "--host", listen, "--port", str(port)]
    # An unresolved `auto` renders nothing here; the plan resolves it before any host runs the arguments.
    if isinstance(svc.tensor_parallel_size, int) and svc.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(svc.tensor_parallel_size)]
    if svc.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(svc.pipeline_parallel_size)]
    if svc.task in _POOLING_CONVERT:
        args += ["--runner", "pooling", "--convert", _POOLING_CONVERT[svc.task]]
    if eng.max_model_len is not None:
        args += ["--max-model-len", str(eng.max_model_len)]
    args += ["--gpu-memory-utilization", f"{eng.gpu_memory_utilization:g}"]
    if eng.dtype != "auto":
        args += ["--dtype", eng.dtype]
    if eng.quantization:
        args += ["--quantization", eng.quantization]
    if eng.enable_prefix_caching is True:
        args.append("--enable-prefix-caching")
    elif eng.enable_prefix_caching is False:
        args.append("--no-enable-prefix-caching")
    if eng.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", eng.tool_call_parser]
    if eng.reasoning_parser:
        args += ["--reasoning-parser", eng.reasoning_parser]
    if eng.chat_template:
        args += ["--chat-template", eng.chat_template]
    if eng.enforce_eager:
        args.append("--enforce-eager")
    if eng.max_num_seqs is not None:
        args += ["--max-num-seqs", str(eng.max_num_seqs)]
    if svc.adapters:
        # The limits only: which adapters are loaded is the serve stage's (--lora-modules at start, then vLLM's
        # runtime loading), so that adding one does not change the arguments a running container was started with.
        loras, rank = derived_limits(svc.adapters, svc.lora)
        args += ["--enable-lora", "--max-loras", str(loras), "--max-cpu-loras", str(loras),
                 "--max-lora-rank", str(rank)]
    # On SIGTERM (a stop, a rollout, a pod's termination) vLLM drains the requests in flight instead of aborting
    # them; the stop grace around it is STOP_MARGIN_SECONDS longer.
    args += ["--shutdown-timeout", str(eng.shutdown_timeout)]
    return args + list(eng.extra_args)


def lora_modules_args(modules: Sequence[tuple[str, str]], base_model: str) -> list[str]:
    """--lora-modules with one JSON entry per (adapter name, its path inside the container or pod); nothing
    without any."""
    if not modules:
        return []
    return ["--lora-modules", *(json.dumps({"name": name, "path": path, "base_model_name": base_model},
                                           sort_keys=True) for name, path in modules)]
