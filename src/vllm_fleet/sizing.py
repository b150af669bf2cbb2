"""Auto-sizing: the tensor-parallel size and a max model length the KV cache can hold, on one host or on an engine
group of several hosts (pipeline parallel across them).

Inputs are a model's config.json and the host's GPUs (the gpu_facts module: memory_total_mib per GPU, gpu_count).
The rule (figures in roles/vllm_server/README.md):

- weights = parameters x bytes per parameter; parameters are counted from the config (embeddings, attention with
  its KV heads or DeepSeek's multi-head latent attention, a gated MLP or mixture-of-experts layers with their
  shared experts and leading dense layers); quantized linear layers take bits/8 bytes (GPTQ/AWQ int4 0.5, int8
  and fp8 1), embeddings and the LM head stay in 16 bits; plus 2 % for norms, biases and quantization scales.
- per GPU, at tensor-parallel size t and pipeline-parallel size p: budget = memory x gpu_memory_utilization -
  weights / (t x p) - overhead, with overhead = 1.5 GiB (CUDA context, activations of a profiling batch, sampler
  buffers).
- KV cache per token per GPU = 2 (K and V) x ceil(layers / p) x ceil(kv_heads / t) x head_dim x 2 bytes (16-bit
  cache); with latent attention, ceil(layers / p) x (kv_lora_rank + qk_rope_head_dim) x 2 bytes, on every
  tensor-parallel rank (the latent cache is not split).
- capacity = budget / KV per token. vLLM refuses to start unless one sequence of max_model_len fits.
- t ranges over 1, 2, 4, 8 up to the GPUs given, with attention heads divisible by t and KV heads divisible by t
  (or t divisible by them). The smallest t whose capacity holds the target length (the asked max_model_len,
  else the model's max_position_embeddings) wins; when none does, the largest valid t is used with
  max_model_len = capacity rounded down to a multiple of 256, provided that is at least MIN_CONTEXT tokens.
- Otherwise the model does not fit: refuse with the numbers.

An engine group (`size_group`) follows vLLM's multi-node rule: tensor-parallel size = the GPUs of one node,
pipeline-parallel size = the nodes. The smallest number of nodes whose capacity holds the target length wins; a
model that one node holds needs no group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
MIB = 1024**2
OVERHEAD_BYTES = int(1.5 * GIB)
EXTRA_WEIGHT_FRACTION = 0.02
MIN_CONTEXT = 2048
LEN_STEP = 256
TP_CHOICES = (1, 2, 4, 8)
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "auto": 2}


class SizingError(ValueError):
    """The model cannot be served on the GPUs given; the message carries the numbers."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int
    dtype_bytes: float
    linear_bytes: float
    tied: bool
    # Mixture of experts: routed experts per MoE layer, each a gated MLP of moe_intermediate, plus shared ones;
    # the first dense_layers layers (and every layer of a model without experts) have the dense MLP.
    experts: int = 0
    shared_experts: int = 0
    moe_intermediate: int = 0
    dense_layers: int = 0
    # Multi-head latent attention (DeepSeek-V2/V3): its ranks and head sizes; kv_lora_rank 0 means plain attention.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ModelShape:
        cfg = dict(cfg.get("text_config") or cfg) if "hidden_size" not in cfg else dict(cfg)
        try:
            hidden = int(cfg["hidden_size"])
            layers = int(cfg["num_hidden_layers"])
            heads = int(cfg["num_attention_heads"])
        except KeyError as exc:
            raise SizingError(f"config.json has no {exc.args[0]}; cannot size this model") from None
        kv = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        dtype_bytes = DTYPE_BYTES.get(str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"), 2)
        quant = cfg.get("quantization_config") or {}
        bits = quant.get("bits") or quant.get("w_bit")
        method = str(quant.get("quant_method", "")).lower()
        if bits:
            linear = int(bits) / 8
        elif method in ("fp8", "fbgemm_fp8", "compressed-tensors"):
            linear = 1.0
        else:
            linear = float(dtype_bytes)
        intermediate = int(cfg.get("intermediate_size") or 4 * hidden)
        # DeepSeek: n_routed_experts, Qwen-MoE: num_experts, Mixtral: num_local_experts (its intermediate_size is
        # the expert's).
        experts = int(cfg.get("n_routed_experts") or cfg.get("num_experts") or cfg.get("num_local_experts") or 0)
        dense = 0
        if experts:
            dense = int(cfg.get("first_k_dense_replace") or 0) + len(cfg.get("mlp_only_layers") or [])
        return cls(hidden, layers, heads, kv, head_dim, intermediate,
                   int(cfg.get("vocab_size") or 32000), int(cfg.get("max_position_embeddings") or 4096),
                   float(dtype_bytes), linear, bool(cfg.get("tie_word_embeddings", False)),
                   experts=experts, shared_experts=int(cfg.get("n_shared_experts") or 0),
                   moe_intermediate=int(cfg.get("moe_intermediate_size") or intermediate) if experts else 0,
                   dense_layers=min(dense, layers),
                   q_lora_rank=int(cfg.get("q_lora_rank") or 0), kv_lora_rank=int(cfg.get("kv_lora_rank") or 0),
                   qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 0),
                   qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 0),
                   v_head_dim=int(cfg.get("v_head_dim") or head_dim))

    @property
    def latent_attention(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def attention_params(self) -> int:
        """One layer's attention projections."""
        if self.latent_attention:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (self.hidden * self.q_lora_rank + self.q_lora_rank * self.heads * qk if self.q_lora_rank
                 else self.hidden * self.heads * qk)
            kv = (self.hidden * (self.kv_lora_rank + self.qk_rope_head_dim)
                  + self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + self.heads * self.v_head_dim * self.hidden
        return self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2

    @property
    def mlp_params(self) -> int:
        """Every layer's MLP: dense layers, and MoE layers with their routed and shared experts and router."""
        dense = 3 * self.hidden * self.intermediate
        if not self.experts:
            return self.layers * dense
        experts = (self.experts + self.shared_experts) * 3 * self.hidden * self.moe_intermediate
        moe = experts + self.experts * self.hidden  # the router: one score per expert
        return self.dense_layers * dense + (self.layers - self.dense_layers) * moe

    @property
    def linear_params(self) -> int:
        return self.layers * self.attention_params + self.mlp_params

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params

    @property
    def weight_bytes(self) -> int:
        raw = self.linear_params * self.linear_bytes + self.embedding_params * self.dtype_bytes
        return int(raw * (1 + EXTRA_WEIGHT_FRACTION))

    def lora_bytes(self, max_loras: int, max_rank: int, tp: int) -> int:
        """What vLLM preallocates per GPU for LoRA: for each of max_loras slots, an A [rank x in] and a B [out x rank]
        matrix of the model's dtype on every linear layer of every block (qkv, o, gate_up, down), sharded by tp."""
        if not max_loras:
            return 0
        qkv_out = (self.heads + 2 * self.kv_heads) * self.head_dim
        attn_out = self.heads * self.head_dim
        widths = (self.hidden + qkv_out) + (attn_out + self.hidden) + (self.hidden + 2 * self.intermediate) \
            + (self.intermediate + self.hidden)
        return int(max_loras * max_rank * widths * self.layers * self.dtype_bytes) // tp

    def kv_bytes_per_token(self, tp: int, cache_bytes: int = 2, pp: int = 1) -> int:
        """The KV cache one token takes on one GPU of a tp x pp engine (a pipeline stage holds ceil(layers / pp))."""
        layers = math.ceil(self.layers / pp)
        if self.latent_attention:
            return layers * (self.kv_lora_rank + self.qk_rope_head_dim) * cache_bytes
        return 2 * layers * math.ceil(self.kv_heads / tp) * self.head_dim * cache_bytes


@dataclass(frozen=True)
class SizingResult:
    tensor_parallel_size: int
    max_model_len: int
    kv_capacity_tokens: int
    weights_gib_per_gpu: float
    kv_gib_per_gpu: float
    params_billion: float
    lora_gib_per_gpu: float = 0.0
    pipeline_parallel_size: int = 1


def valid_tp(shape: ModelShape, tp: int) -> bool:
    return shape.heads % tp == 0 and (shape.kv_heads % tp == 0 or tp % shape.kv_heads == 0)


def capacity(shape: ModelShape, tp: int, gpu_mib: int, utilization: float, lora: tuple[int, int] = (0, 0),
             pp: int = 1) -> tuple[int, int]:
    """(budget bytes for the KV cache per GPU, tokens it holds) at tensor-parallel size tp and pipeline-parallel
    size pp, after the weights, the overhead and the LoRA slots (max_loras, max_lora_rank) vLLM reserves."""
    budget = (int(gpu_mib * MIB * utilization) - shape.weight_bytes // (tp * pp) - OVERHEAD_BYTES
              - shape.lora_bytes(lora[0], lora[1], tp) // pp)
    return budget, max(0, budget) // shape.kv_bytes_per_token(tp, pp=pp)


def _result(shape: ModelShape, tp: int, pp: int, length: int, tokens: int, lora: tuple[int, int]) -> SizingResult:
    return SizingResult(tp, length, tokens, round(shape.weight_bytes / (tp * pp) / GIB, 2),
                        round(tokens * shape.kv_bytes_per_token(tp, pp=pp) / GIB, 2), round(shape.params / 1e9, 2),
                        round(shape.lora_bytes(*lora, tp) / pp / GIB, 2), pp)


def _does_not_fit(shape: ModelShape, tp: int, pp: int, gpu_mib: int, utilization: float, target: int,
                  lora: tuple[int, int], asked: bool) -> SizingError:
    budget, tokens = capacity(shape, tp, gpu_mib, utilization, lora, pp)
    usable = gpu_mib * MIB * utilization / GIB
    weights = shape.weight_bytes / (tp * pp) / GIB
    kv_need = target * shape.kv_bytes_per_token(tp, pp=pp) / GIB
    lora_need = shape.lora_bytes(*lora, tp) / pp / GIB
    lora_note = (f", plus {lora_need:.2f} GiB for {lora[0]} LoRA adapter slots of rank {lora[1]}"
                 if lora[0] else "")
    at = f"tensor-parallel size {tp}" + (f" x pipeline-parallel size {pp}" if pp > 1 else "")
    return SizingError(
        f"{shape.params / 1e9:.1f}B parameters need {weights:.1f} GiB of weights per GPU at {at}, "
        f"plus {OVERHEAD_BYTES / GIB:.1f} GiB overhead{lora_note}, plus {kv_need:.2f} GiB of KV cache for "
        f"{target} tokens; each GPU offers {usable:.1f} GiB ({gpu_mib} MiB x {utilization:g}), leaving "
        f"{max(budget, 0) / GIB:.2f} GiB for {tokens} tokens of KV cache"
        + ("" if asked else f" (at least {MIN_CONTEXT} needed)")
    )


def _target(shape: ModelShape, max_model_len: int | None) -> int:
    if max_model_len and max_model_len > shape.max_positions:
        raise SizingError(f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
                          f"{shape.max_positions}")
    return max_model_len or shape.max_positions


def size(
    config: Mapping[str, Any],
    *,
    gpu_mib: int,
    gpu_count: int,
    utilization: float = 0.9,
    max_model_len: int | None = None,
    tensor_parallel_size: int | None = None,
    lora: tuple[int, int] = (0, 0),
    pipeline_parallel_size: int = 1,
) -> SizingResult:
    """Choose (or check) the tensor-parallel size and the max model length; raise SizingError with numbers.
    `lora` is (max_loras, max_lora_rank) of a service with adapters: the memory vLLM reserves for them. With a
    pipeline_parallel_size p, gpu_count is the GPUs of one stage (the engine has p times as many)."""
    shape = ModelShape.from_config(config)
    target = _target(shape, max_model_len)
    pp = pipeline_parallel_size
    if tensor_parallel_size is not None:
        candidates = [tensor_parallel_size]
    else:
        candidates = [t for t in TP_CHOICES if t <= gpu_count and valid_tp(shape, t)]
    if not candidates or (tensor_parallel_size or 1) > gpu_count:
        raise SizingError(f"no tensor-parallel size fits: {gpu_count} GPU(s), {shape.heads} attention heads, "
                          f"{shape.kv_heads} KV heads")
    if tensor_parallel_size is not None and not valid_tp(shape, tensor_parallel_size):
        raise SizingError(f"tensor_parallel_size {tensor_parallel_size} does not divide the model's "
                          f"{shape.heads} attention heads / {shape.kv_heads} KV heads")
    if pp > shape.layers:
        raise SizingError(f"pipeline_parallel_size {pp} exceeds the model's {shape.layers} layers")
    for tp in candidates:
        _, tokens = capacity(shape, tp, gpu_mib, utilization, lora, pp)
        if tokens >= target:
            return _result(shape, tp, pp, target, tokens, lora)
    tp = candidates[-1]
    _, tokens = capacity(shape, tp, gpu_mib, utilization, lora, pp)
    fitted = tokens // LEN_STEP * LEN_STEP
    if max_model_len is None and fitted >= MIN_CONTEXT:
        return _result(shape, tp, pp, fitted, tokens, lora)
    raise _does_not_fit(shape, tp, pp, gpu_mib, utilization, target, lora, max_model_len is not None)


@dataclass(frozen=True)
class GroupSizing:
    """An engine group across `nodes` hosts: tensor parallel within a node, pipeline parallel across nodes."""

    nodes: int
    result: SizingResult


def size_group(
    config: Mapping[str, Any],
    *,
    gpu_mib: int,
    gpus_per_node: int,
    max_nodes: int,
    utilization: float = 0.9,
    max_model_len: int | None = None,
    lora: tuple[int, int] = (0, 0),
) -> GroupSizing:
    """The fewest identical nodes (of `gpus_per_node` GPUs of `gpu_mib` each, at most `max_nodes`) whose engine
    holds the target length (max_model_len, else the model's own), at tensor-parallel size = the largest valid
    size within a node and pipeline-parallel size = the nodes. With no max_model_len asked and no group holding
    the model's full length, the largest group is used with the length its KV cache holds (at least MIN_CONTEXT).
    Raise SizingError with the numbers of the largest group when none serves it."""
    shape = ModelShape.from_config(config)
    target = _target(shape, max_model_len)
    fitting = [t for t in TP_CHOICES if t <= gpus_per_node and valid_tp(shape, t)]
    if not fitting:
        raise SizingError(f"no tensor-parallel size fits a node: {gpus_per_node} GPU(s), {shape.heads} attention "
                          f"heads, {shape.kv_heads} KV heads")
    tp = fitting[-1]
    largest = max(1, min(max_nodes, shape.layers))
    for nodes in range(1, largest):
        _, tokens = capacity(shape, tp, gpu_mib, utilization, lora, nodes)
        if tokens >= target:
            return GroupSizing(nodes, _result(shape, tp, nodes, target, tokens, lora))
    # The largest group: single-host sizing's own rule at this pipeline size (the full length, else the length the
    # KV cache holds, else the refusal with its numbers).
    return GroupSizing(largest, size(config, gpu_mib=gpu_mib, gpu_count=gpus_per_node, utilization=utilization,
                                     max_model_len=max_model_len, tensor_parallel_size=tp, lora=lora,
                                     pipeline_parallel_size=largest))
