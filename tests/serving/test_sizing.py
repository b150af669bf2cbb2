"""Auto-sizing on real model configs (public config.json values) x real GPU memory sizes (nvidia-smi MiB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vllm_fleet.sizing import MIN_CONTEXT, ModelShape, SizingError, capacity, size, size_group

CONFIGS = Path(__file__).parent / "fixtures" / "model_configs"
# memory.total as nvidia-smi reports it
GPU_MIB = {"A100-80GB": 81920, "H100-SXM": 81559, "L4": 23034, "RTX-4090": 24564}


def cfg(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


@pytest.mark.parametrize(("model", "billions"), [
    ("llama-3.1-8b", 8.03), ("llama-3.1-70b", 70.55), ("qwen2.5-7b-instruct", 7.62),
    ("qwen2.5-72b-instruct-gptq-int8", 72.7), ("mistral-7b-instruct-v0.3", 7.25),
])
def test_parameter_count_matches_the_published_size(model: str, billions: float) -> None:
    assert ModelShape.from_config(cfg(model)).params / 1e9 == pytest.approx(billions, rel=0.01)


def test_int8_gptq_halves_the_weights_of_a_16_bit_model() -> None:
    q = ModelShape.from_config(cfg("qwen2.5-72b-instruct-gptq-int8"))
    full = ModelShape.from_config({k: v for k, v in cfg("qwen2.5-72b-instruct-gptq-int8").items()
                                   if k != "quantization_config"})
    assert 0.5 < q.weight_bytes / full.weight_bytes < 0.55  # embeddings stay 16-bit


# model, GPU, GPUs in the pool, the smallest tensor-parallel size holding the full context, that context.
SMALLEST_SIZES = """
llama-3.1-8b                    A100-80GB  1  1  131072
llama-3.1-8b                    H100-SXM   8  1  131072
llama-3.1-8b                    L4         2  2  131072
llama-3.1-70b                   A100-80GB  4  4  131072
llama-3.1-70b                   H100-SXM   8  4  131072
qwen2.5-7b-instruct             RTX-4090   1  1  32768
qwen2.5-7b-instruct             L4         4  1  32768
qwen2.5-72b-instruct-gptq-int8  A100-80GB  2  2  32768
qwen2.5-72b-instruct-gptq-int8  H100-SXM   4  2  32768
qwen2.5-72b-instruct-gptq-int8  RTX-4090   8  8  32768
mistral-7b-instruct-v0.3        L4         1  1  32768
mistral-7b-instruct-v0.3        RTX-4090   1  1  32768
"""


@pytest.mark.parametrize(("model", "gpu", "count", "tp", "max_len"), [
    (m, g, int(c), int(t), int(n)) for m, g, c, t, n in (row.split() for row in SMALLEST_SIZES.strip().splitlines())])
def test_smallest_tensor_parallel_size_holding_the_full_context(model, gpu, count, tp, max_len) -> None:
    r = size(cfg(model), gpu_mib=GPU_MIB[gpu], gpu_count=count)
    assert (r.tensor_parallel_size, r.max_model_len) == (tp, max_len)
    assert r.kv_capacity_tokens >= r.max_model_len
    if tp > 1:  # one size smaller would not have held the context
        assert capacity(ModelShape.from_config(cfg(model)), tp // 2, GPU_MIB[gpu], 0.9)[1] < max_len


@pytest.mark.parametrize(("model", "gpu", "count", "tp"), [
    ("llama-3.1-8b", "L4", 1, 1),
    ("llama-3.1-8b", "RTX-4090", 1, 1),
    ("llama-3.1-70b", "A100-80GB", 2, 2),
    ("llama-3.1-70b", "L4", 8, 8),
    ("qwen2.5-72b-instruct-gptq-int8", "L4", 4, 4),
])
def test_context_is_shortened_to_what_the_kv_cache_holds(model, gpu, count, tp) -> None:
    r = size(cfg(model), gpu_mib=GPU_MIB[gpu], gpu_count=count)
    shape = ModelShape.from_config(cfg(model))
    assert r.tensor_parallel_size == tp
    assert MIN_CONTEXT <= r.max_model_len < shape.max_positions
    assert r.max_model_len % 256 == 0
    assert r.max_model_len <= r.kv_capacity_tokens < r.max_model_len + 256


@pytest.mark.parametrize(("model", "gpu", "count"), [
    ("llama-3.1-70b", "A100-80GB", 1),
    ("llama-3.1-70b", "RTX-4090", 4),
    ("qwen2.5-72b-instruct-gptq-int8", "H100-SXM", 1),
    ("qwen2.5-72b-instruct-gptq-int8", "L4", 2),
])
def test_a_model_too_large_is_refused_with_the_numbers(model, gpu, count) -> None:
    with pytest.raises(SizingError) as err:
        size(cfg(model), gpu_mib=GPU_MIB[gpu], gpu_count=count)
    text = str(err.value)
    assert "GiB of weights per GPU" in text and f"{GPU_MIB[gpu]} MiB" in text


def test_an_asked_length_beyond_the_cache_is_refused_not_shortened() -> None:
    with pytest.raises(SizingError, match="131072 tokens"):
        size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1, max_model_len=131072)
    assert size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1, max_model_len=8192).max_model_len == 8192


def test_a_given_tensor_parallel_size_is_checked_not_replaced() -> None:
    r = size(cfg("qwen2.5-72b-instruct-gptq-int8"), gpu_mib=GPU_MIB["A100-80GB"], gpu_count=4,
             tensor_parallel_size=4)
    assert r.tensor_parallel_size == 4
    with pytest.raises(SizingError, match="does not divide"):
        size(cfg("qwen2.5-7b-instruct"), gpu_mib=GPU_MIB["A100-80GB"], gpu_count=8, tensor_parallel_size=8)


def test_a_length_beyond_the_model_is_refused() -> None:
    with pytest.raises(SizingError, match="max_position_embeddings"):
        size(cfg("mistral-7b-instruct-v0.3"), gpu_mib=GPU_MIB["H100-SXM"], gpu_count=1, max_model_len=65536)


def test_a_config_without_a_shape_is_refused() -> None:
    with pytest.raises(SizingError, match="num_hidden_layers"):
        size({"hidden_size": 8, "num_attention_heads": 2}, gpu_mib=1000, gpu_count=1)


def test_lora_slots_reserve_an_a_and_b_matrix_per_linear_layer_and_slot_sharded_by_tp() -> None:
    shape = ModelShape.from_config(cfg("llama-3.1-8b"))
    # qkv 4096->6144, o 4096->4096, gate_up 4096->28672, down 14336->4096: 69632 widths x 32 layers x rank x bf16
    assert shape.lora_bytes(4, 16, 1) == 4 * 16 * 69632 * 32 * 2
    assert shape.lora_bytes(8, 16, 1) == 2 * shape.lora_bytes(4, 16, 1)
    assert shape.lora_bytes(4, 16, 2) == shape.lora_bytes(4, 16, 1) // 2
    assert shape.lora_bytes(0, 16, 1) == 0


def test_adapters_shorten_the_context_by_the_kv_cache_their_slots_take() -> None:
    shape = ModelShape.from_config(cfg("llama-3.1-8b"))
    without = size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1)
    with_lora = size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1, lora=(8, 64))
    taken = shape.lora_bytes(8, 64, 1)
    assert with_lora.lora_gib_per_gpu == round(taken / 1024**3, 2) and without.lora_gib_per_gpu == 0
    assert without.kv_capacity_tokens - with_lora.kv_capacity_tokens in (
        taken // shape.kv_bytes_per_token(1), taken // shape.kv_bytes_per_token(1) + 1)
    assert with_lora.max_model_len < without.max_model_len


def test_a_model_that_fits_alone_is_refused_with_more_adapter_slots_than_room() -> None:
    size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1)
    with pytest.raises(SizingError, match=r"4\.25 GiB for 16 LoRA adapter slots of rank 64"):
        size(cfg("llama-3.1-8b"), gpu_mib=GPU_MIB["L4"], gpu_count=1, lora=(16, 64))


# Models larger than one host: mixture-of-experts and latent attention counted from config.json, and engine groups
# of identical nodes (tensor parallel within a node, pipeline parallel across nodes) sized on recorded nodes.
SMI = Path(__file__).resolve().parents[1] / "prepare" / "fixtures" / "nvidia_smi"


def recorded_node(name: str) -> tuple[int, int]:
    """(GPUs, MiB per GPU) of a recorded node, read by the prepare stage's own nvidia-smi parser."""
    from tests.prepare.conftest import load_module_utils

    gpus = load_module_utils("gpu_smi").parse_query_gpu((SMI / name / "query-gpu.csv").read_text())
    assert len({g["memory_total_mib"] for g in gpus}) == 1
    return len(gpus), gpus[0]["memory_total_mib"]


@pytest.mark.parametrize(("model", "billions"), [
    ("deepseek-v3", 671.0), ("llama-3.1-405b", 405.8), ("qwen3-235b-a22b", 235.1)])
def test_parameter_count_of_moe_latent_attention_and_405b_models_matches_the_published_size(model, billions):
    assert ModelShape.from_config(cfg(model)).params / 1e9 == pytest.approx(billions, rel=0.005)


def test_latent_attention_caches_one_latent_vector_per_layer_on_every_tensor_parallel_rank() -> None:
    shape = ModelShape.from_config(cfg("deepseek-v3"))
    assert shape.latent_attention
    # (kv_lora_rank 512 + qk_rope_head_dim 64) x 61 layers x 2 bytes, whatever the tensor-parallel size
    assert shape.kv_bytes_per_token(1) == shape.kv_bytes_per_token(8) == 576 * 61 * 2
    assert shape.kv_bytes_per_token(8, pp=2) == 576 * 31 * 2


def test_fp8_experts_take_one_byte_per_parameter_and_embeddings_two() -> None:
    shape = ModelShape.from_config(cfg("deepseek-v3"))
    assert shape.linear_bytes == 1.0
    raw = shape.linear_params + shape.embedding_params * 2
    assert shape.weight_bytes == int(raw * 1.02)


# recorded node, model, nodes in the group, tensor-parallel size, context length chosen (the model's full length)
GROUPS = """
h100-sxm-x8        deepseek-v3      2  8  163840
a100-sxm4-80gb-x8  deepseek-v3      2  8  163840
h100-sxm-x8        llama-3.1-405b   2  8  131072
a100-sxm4-80gb-x8  llama-3.1-405b   2  8  131072
h100-sxm-x8        qwen3-235b-a22b  1  8  40960
a100-sxm4-80gb-x8  qwen3-235b-a22b  1  8  40960
"""


@pytest.mark.parametrize(("node", "model", "nodes", "tp", "length"), [
    (n, m, int(g), int(t), int(x)) for n, m, g, t, x in (row.split() for row in GROUPS.strip().splitlines())])
def test_the_fewest_nodes_that_hold_the_full_context_form_the_group(node, model, nodes, tp, length) -> None:
    gpus, mib = recorded_node(node)
    group = size_group(cfg(model), gpu_mib=mib, gpus_per_node=gpus, max_nodes=4)
    r = group.result
    assert (group.nodes, r.tensor_parallel_size, r.pipeline_parallel_size, r.max_model_len) == (nodes, tp, nodes,
                                                                                                  length)
    assert r.kv_capacity_tokens >= length
    shape = ModelShape.from_config(cfg(model))
    if nodes > 1:  # one node fewer would not hold it
        assert capacity(shape, tp, mib, 0.9, pp=nodes - 1)[1] < length
    print(f"group sizing: {model} on {node}: {nodes} node(s), TP {tp} x PP {nodes}, max_model_len {length}, "
          f"{r.weights_gib_per_gpu} GiB weights and {r.kv_gib_per_gpu} GiB KV cache per GPU")


def test_a_model_one_node_cannot_hold_is_refused_by_single_host_sizing_with_its_numbers() -> None:
    gpus, mib = recorded_node("h100-sxm-x8")
    with pytest.raises(SizingError, match=r"GiB of weights per GPU at tensor-parallel size 8"):
        size(cfg("llama-3.1-405b"), gpu_mib=mib, gpu_count=gpus)


def test_pipeline_stages_divide_the_weights_and_the_kv_cache_per_gpu() -> None:
    _, mib = recorded_node("a100-sxm4-80gb-x8")
    one = size(cfg("llama-3.1-70b"), gpu_mib=mib, gpu_count=4, tensor_parallel_size=4)
    two = size(cfg("llama-3.1-70b"), gpu_mib=mib, gpu_count=4, tensor_parallel_size=4, pipeline_parallel_size=2)
    assert two.weights_gib_per_gpu == pytest.approx(one.weights_gib_per_gpu / 2, abs=0.01)
    assert two.pipeline_parallel_size == 2 and two.kv_capacity_tokens > 2 * one.kv_capacity_tokens


def test_no_group_of_the_nodes_available_is_refused_with_the_largest_groups_numbers() -> None:
    gpus, mib = recorded_node("a100-sxm4-80gb-x8")
    with pytest.raises(SizingError, match=r"GiB of weights per GPU at tensor-parallel size 8, plus"):
        size_group(cfg("deepseek-v3"), gpu_mib=mib, gpus_per_node=gpus, max_nodes=1)
    with pytest.raises(SizingError, match=r"96\.4 GiB of weights per GPU at tensor-parallel size 4 x "
                                          r"pipeline-parallel size 2"):
        size_group(cfg("llama-3.1-405b"), gpu_mib=mib, gpus_per_node=4, max_nodes=2)


def test_an_asked_length_is_kept_and_a_group_is_sized_for_it() -> None:
    gpus, mib = recorded_node("h100-sxm-x8")
    group = size_group(cfg("llama-3.1-405b"), gpu_mib=mib, gpus_per_node=gpus, max_nodes=4, max_model_len=8192)
    assert (group.nodes, group.result.max_model_len) == (2, 8192)
