"""Whether a LoRA adapter directory fits the service it is listed on, read on the host from its files: a PEFT LoRA
adapter (adapter_config.json), of a rank within the service's --max-lora-rank, trained on the service's model (the
hub repo it names, and the input width of its attention and MLP projections against the model's hidden size)."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import VerifyError, safetensors_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Projections whose input is the model's hidden state: lora_A of these is [rank, hidden_size].
HIDDEN_INPUT_MODULES = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def declared_rank(config: dict[str, Any]) -> int | None:
    """The largest rank an adapter_config.json declares (r, and rank_pattern's per-module ranks)."""
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    ints = [r for r in ranks if isinstance(r, int)]
    return max(ints) if ints else None


def _hidden_input_widths(path: str) -> dict[str, int]:
    """{tensor: input width} of the adapter's lora_A matrices on projections fed by the hidden state."""
    try:
        header, _ = safetensors_header(path)
    except (OSError, VerifyError):
        return {}
    widths = {}
    for tensor, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        module = tensor.rsplit(".lora_A", 1)[0].rsplit(".", 1)[-1] if ".lora_A" in tensor else ""
        if module in HIDDEN_INPUT_MODULES and isinstance(shape, list) and len(shape) == 2:
            widths[tensor] = int(shape[1])
    return widths


def config_problems(config: dict[str, Any], max_rank: int, base_repo: str | None = None) -> list[str]:
    """What adapter_config.json alone tells: a LoRA adapter, its rank within max_rank, trained on base_repo."""
    problems = []
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        problems.append(f"is a {peft_type} adapter; vLLM serves LoRA adapters only")
    rank = declared_rank(config)
    if rank is not None and rank > max_rank:
        problems.append(f"has rank {rank}, above the service's max_lora_rank {max_rank}; raise lora.max_lora_rank "
                        "on the service (a restart of its base model), or remove lora to derive it")
    base = config.get("base_model_name_or_path")
    if (base_repo and isinstance(base, str) and base.count("/") == 1 and not base.startswith((".", "/"))
            and base.lower() != base_repo.lower()):
        problems.append(f"was trained on {base}, and the service serves {base_repo}")
    return problems


def adapter_problems(adapter_dir: str, max_rank: int, base_repo: str | None = None,
                     base_dir: str | None = None) -> list[str]:
    """What makes the adapter at adapter_dir unfit for its service; empty when it fits or nothing can be told."""
    config = _read_json(os.path.join(adapter_dir, ADAPTER_CONFIG))
    if config is None:
        return [f"{adapter_dir} has no readable {ADAPTER_CONFIG}; a PEFT LoRA adapter directory holds one"]
    problems = config_problems(config, max_rank, base_repo)
    hidden = (_read_json(os.path.join(base_dir, "config.json")) or {}).get("hidden_size") if base_dir else None
    if isinstance(hidden, int):
        wrong = {t: w for t, w in _hidden_input_widths(os.path.join(adapter_dir, ADAPTER_WEIGHTS)).items()
                 if w != hidden}
        if wrong:
            tensor, width = sorted(wrong.items())[0]
            problems.append(f"was trained on another model: {tensor} takes {width} inputs, and the service's "
                            f"model has hidden size {hidden}")
    return problems
