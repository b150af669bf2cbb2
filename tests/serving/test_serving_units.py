"""The container a planned service becomes, and the controller-side serving checks."""

from __future__ import annotations

import copy

import pytest

from vllm_fleet.vm.planning.fleet import plan_for_host
from vllm_fleet.vm.planning.plan import HostPlan
from vllm_fleet.vm.play import container
from vllm_fleet.vm.play.host_checks import host_problems

SETTINGS = container.ContainerSettings(
    registry_mirror="", hf_home="/var/lib/vllm-fleet/hf-home", vllm_cache="/var/lib/vllm-fleet/vllm-cache",
    tz="Etc/UTC", restart_policy="unless-stopped", log_max_size="100m", log_max_file=5, ipc_host=False,
    adapters_root="/var/lib/vllm-fleet/adapters")
SPEC = {"services": [
    {"name": "chat", "storage_uri": "hf://Qwen/Qwen2.5-72B-Instruct-GPTQ-Int8", "gpus": [0, 1],
     "tensor_parallel_size": 2, "port": 8000, "api_key": {"env": "UNIT_KEY"},
     "engine": {"tool_call_parser": "hermes", "enable_prefix_caching": True, "quantization": "gptq"}},
    {"name": "tiny", "storage_uri": "file:///srv/models/tiny", "accelerator": "cpu", "gpus": 0, "port": 8001,
     "shm_size": "1g", "task": "embed"},
]}


def plan(spec=SPEC, **variables):
    return plan_for_host(spec, "10.0.0.5", environ={"UNIT_KEY": "k"}, variables={"vllm_fleet_gpus": {}, **variables})


def test_gpu_service_gets_its_device_ids_and_shm() -> None:
    chat = plan().services[0]
    params = container.container_params(chat, settings=SETTINGS, weights_dirs={"chat": {"path": "/m/chat/abc",
                                                                                      "revision": "abc"}})
    assert params["device_requests"] == [{"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["0", "1"]}]
    assert params["shm_size"] == "16g" and "ipc_mode" not in params
    assert params["mounts"][0] == {"type": "bind", "source": "/m/chat/abc", "target": "/mnt/models",
                                   "read_only": True}
    assert params["labels"]["io.vllm-fleet.revision"] == "abc"
    args = params["command"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert "--enable-prefix-caching" in args and args[args.index("--tool-call-parser") + 1] == "hermes"
    assert "VLLM_API_KEY" not in params["env"] and not any(a == "k" for a in args)


def test_cpu_service_has_no_gpus_and_a_pooling_runner() -> None:
    tiny = plan().services[1]
    params = container.container_params(tiny, settings=SETTINGS.model_copy(update={"ipc_host": True}))
    assert "device_requests" not in params and params["ipc_mode"] == "host" and "shm_size" not in params
    assert params["mounts"][0]["source"] == "/srv/models/tiny"
    args = params["command"]
    assert args[args.index("--runner") + 1] == "pooling" and args[args.index("--convert") + 1] == "embed"


def test_each_service_keeps_vllms_cache_in_its_own_host_directory() -> None:
    caches = {}
    for svc in plan().services:
        params = container.container_params(svc, settings=SETTINGS, weights_dirs={"chat": {"path": "/m/chat/abc",
                                                                                            "revision": "abc"}})
        (mount,) = [m for m in params["mounts"] if m["target"] == container.VLLM_CACHE_MOUNT]
        assert params["env"]["VLLM_CACHE_ROOT"] == container.VLLM_CACHE_MOUNT and not mount.get("read_only")
        caches[svc.name] = mount["source"]
    assert caches == {"chat": "/var/lib/vllm-fleet/vllm-cache/chat", "tiny": "/var/lib/vllm-fleet/vllm-cache/tiny"}


def test_a_stop_drains_vllm_for_shutdown_timeout_inside_a_longer_docker_stop_timeout() -> None:
    default = container.container_params(plan().services[1], settings=SETTINGS)
    args = default["command"]
    assert args[args.index("--shutdown-timeout") + 1] == "30" and default["stop_timeout"] == 45
    spec = copy.deepcopy(SPEC)
    spec["services"][1]["engine"] = {"shutdown_timeout": 120}
    longer = container.container_params(plan(spec).services[1], settings=SETTINGS)
    assert longer["command"][longer["command"].index("--shutdown-timeout") + 1] == "120"
    assert longer["stop_timeout"] == 135


@pytest.mark.parametrize(("engine", "expected"), [
    ({"shutdown_timeout": -1}, "services[1].engine.shutdown_timeout"),
    ({"extra_args": ["--shutdown-timeout", "5"]}, "repeats --shutdown-timeout, which the spec renders itself"),
])
def test_a_drain_time_outside_the_spec_field_is_refused_by_name(engine: dict, expected: str) -> None:
    from vllm_fleet.spec import SpecError, validate_spec
    from vllm_fleet.vm.planning.rules import VM_TARGET

    spec = copy.deepcopy(SPEC)
    spec["services"][1]["engine"] = engine
    with pytest.raises(SpecError) as err:
        validate_spec(spec, VM_TARGET)
    assert expected in str(err.value)


def test_spec_hash_moves_with_what_must_restart_the_service() -> None:
    tiny = plan().services[1]
    base = container.container_params(tiny, settings=SETTINGS, image_id="sha256:a", api_key="k1")
    same = container.container_params(copy.deepcopy(tiny), settings=SETTINGS, image_id="sha256:a", api_key="k1")
    key = "io.vllm-fleet.spec-hash"
    assert base["labels"][key] == same["labels"][key]
    changed_args = tiny.model_copy(update={"engine_args": [*tiny.engine_args, "--max-num-seqs", "8"]})
    variants = [
        container.container_params(tiny, settings=SETTINGS, image_id="sha256:b", api_key="k1"),
        container.container_params(tiny, settings=SETTINGS, image_id="sha256:a", api_key="k2"),
        container.container_params(changed_args, settings=SETTINGS, image_id="sha256:a", api_key="k1"),
        container.container_params(tiny, settings=SETTINGS, image_id="sha256:a", api_key="k1",
                                 weights_dirs={"tiny": {"path": "/m/tiny/r2", "revision": "r2"}}),
    ]
    assert len({base["labels"][key], *(v["labels"][key] for v in variants)}) == 5
    assert "k1" not in str(base)


def test_hub_service_without_fetched_weights_is_refused() -> None:
    with pytest.raises(container.ServingError, match="run the weights stage"):
        container.container_params(plan().services[0], settings=SETTINGS)


@pytest.mark.parametrize(("image", "mirror", "expected"), [
    ("vllm/vllm-openai:v0.32.0", "mirror.lan:5000", "mirror.lan:5000/vllm/vllm-openai:v0.32.0"),
    ("ubuntu:24.04", "mirror.lan:5000", "mirror.lan:5000/library/ubuntu:24.04"),
    ("nvcr.io/nvidia/vllm:25.01", "mirror.lan/proxy/", "mirror.lan/proxy/nvidia/vllm:25.01"),
    ("vllm/vllm-openai:v0.32.0", "", "vllm/vllm-openai:v0.32.0"),
])
def test_registry_mirror_rewrites_references(image: str, mirror: str, expected: str) -> None:
    assert container.mirror_image(image, mirror) == expected


def test_canary_runs_beside_on_an_offset_port_without_restarts() -> None:
    tiny = plan().services[1]
    params = container.container_params(tiny, settings=SETTINGS)
    canary = container.canary_params(params, tiny, 10000)
    assert params["published_ports"] == ["127.0.0.1:8001:8000"]
    assert canary["name"] == "vllm-tiny-candidate" and canary["published_ports"] == ["127.0.0.1:18001:8000"]
    assert canary["restart_policy"] == "no" and canary["labels"]["io.vllm-fleet.managed"] == "candidate"
    assert params["labels"]["io.vllm-fleet.managed"] == "true"


@pytest.mark.parametrize(("variables", "published", "endpoint"), [
    ({}, "127.0.0.1:8001:8000", "http://127.0.0.1:8001/v1"),
    ({"vllm_fleet_backend_address": "10.9.0.5"}, "10.9.0.5:8001:8000", "http://10.9.0.5:8001/v1"),
    ({"vllm_fleet_backend_address": "10.9.0.5", "vllm_fleet_direct_ports": True}, "0.0.0.0:8001:8000",
     "http://10.0.0.5:8001/v1"),
])
def test_ports_are_published_on_loopback_or_the_backend_address_and_everywhere_only_on_opt_out(
        variables: dict, published: str, endpoint: str) -> None:
    tiny = plan(**variables).services[1]
    assert container.container_params(tiny, settings=SETTINGS)["published_ports"] == [published]
    assert tiny.endpoint == endpoint
    assert tiny.local_address == ("127.0.0.1" if published.startswith("0.0.0.0") else published.split(":")[0])


def test_ipc_host_needs_a_large_enough_host_shm() -> None:
    services = plan().services
    small = [{"mount": "/dev/shm", "size_total": 64 * 1024 * 1024}]
    big = [{"mount": "/dev/shm", "size_total": 32 * 1024**3}]
    def shm(mounts: list, ipc_host: bool) -> list[str]:
        return host_problems(HostPlan(services=services, address="10.0.0.5"), mounts=mounts, ipc_host=ipc_host,
                             containers=[], gpu_facts=None)

    problems = shm(small, ipc_host=True)
    assert len(problems) == 1 and "64 MiB" in problems[0] and "16384 MiB" in problems[0]
    assert shm(big, ipc_host=True) == []
    assert shm(small, ipc_host=False) == []


def test_plan_sizes_max_model_len_when_the_config_is_known(tmp_path) -> None:
    import json
    import shutil
    from pathlib import Path

    model = tmp_path / "llama"
    model.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures/model_configs/llama-3.1-8b.json", model / "config.json")
    spec = {"services": [{"name": "llama", "storage_uri": f"file://{model}", "gpus": [0]}]}
    svc = plan(spec, vllm_fleet_gpus={"count": 1, "memory_mib": 23034}).services[0]
    assert svc.max_model_len_sized == 28416
    assert svc.engine_args[-2:] == ["--max-model-len", "28416"]
    assert json.loads((model / "config.json").read_text())["hidden_size"] == 4096
    # Adapters take their slots' memory from the KV cache: 4 derived slots of rank 16 (0.27 GiB) cost 2176 tokens.
    spec["services"][0]["adapters"] = [{"name": "llama-support", "storage_uri": "hf://acme/llama-support"}]
    with_adapters = plan(spec, vllm_fleet_gpus={"count": 1, "memory_mib": 23034}).services[0]
    assert (with_adapters.max_loras, with_adapters.max_lora_rank) == (4, 16)
    assert svc.max_model_len_sized - with_adapters.max_model_len_sized in range(2176 - 255, 2176 + 256)


def test_every_flag_the_spec_renders_is_a_flag_of_the_pinned_vllm() -> None:
    from vllm_fleet.vllm_flags import known_flags

    spec = {"services": [
        {"name": "a", "storage_uri": "hf://org/m", "gpus": [0, 1, 2, 3], "tensor_parallel_size": 2,
         "pipeline_parallel_size": 2, "engine": {
             "max_model_len": 4096, "dtype": "bfloat16", "quantization": "gptq", "enable_prefix_caching": False,
             "tool_call_parser": "hermes", "reasoning_parser": "deepseek_r1", "chat_template": "/t.jinja",
             "enforce_eager": True, "max_num_seqs": 8},
         "adapters": [{"name": "a-support", "storage_uri": "hf://org/lora"}]},
        {"name": "b", "task": "score", "storage_uri": "hf://org/r", "gpus": [4], "port": 8001},
    ]}
    rendered = [a for svc in plan(spec).services for a in svc.engine_args if a.startswith("--")]
    assert len(set(rendered)) >= 22
    assert [a for a in rendered if a not in known_flags()] == []


@pytest.mark.parametrize(("args", "problem"), [
    (["--max-num-seqs", "8", "--enable-chunked-prefill"], None),
    (["--no-enable-chunked-prefill"], None),
    (["--max-num-seq", "8"], "did you mean --max-num-seqs?"),
    (["--kv-cache-dtype", "int3"], "does not accept 'int3'"),
    (["--enable-chunked-prefill=yes"], "takes no value"),
    (["--max-num-batched-tokens"], "needs a value"),
    (["--max-num-batched-tokens", "--enforce-eager"], "needs a value"),
    (["8192"], "no flag before it"),
])
def test_extra_args_are_checked_against_the_real_flag_table(args: list[str], problem: str | None) -> None:
    from vllm_fleet.vllm_flags import check_extra_args

    found = check_extra_args(args)
    if problem is None:
        assert found == []
    else:
        assert found and problem in " ".join(p + " " + f for _, p, f in found)


@pytest.mark.parametrize("arg", ["--max_num_seqs=8", "--compilation-config.mode=3"])
def test_spellings_vllm_takes_but_the_spec_refuses_never_reach_the_flag_check(arg: str) -> None:
    from vllm_fleet.spec import SpecError

    spec = {"services": [{"name": "a", "storage_uri": "file:///m/a", "accelerator": "cpu", "gpus": 0,
                          "engine": {"extra_args": [arg]}}]}
    with pytest.raises(SpecError, match="malformed flag"):
        plan_for_host(spec, "h", variables={})


def test_a_port_published_by_a_foreign_container_is_a_conflict() -> None:
    services = plan().services
    containers = [
        {"Names": ["/nginx"], "Ports": [{"PrivatePort": 80, "PublicPort": 8001, "Type": "tcp"}], "Labels": {}},
        {"Names": ["/vllm-chat"], "Ports": [{"PrivatePort": 8000, "PublicPort": 8000}], "Labels": {}},
        {"Names": ["/vllm-tiny-candidate"], "Ports": [{"PrivatePort": 8000, "PublicPort": 18001}]},
        {"Names": ["/other"], "Ports": [{"PrivatePort": 8000}], "Labels": {}},
    ]
    problems = host_problems(HostPlan(services=services, address="10.0.0.5"), mounts=[], ipc_host=False,
                             containers=containers, gpu_facts=None)
    assert len(problems) == 1 and "port 8001 of service tiny" in problems[0] and "nginx" in problems[0]


def test_gpu_ids_are_checked_against_the_real_gpus() -> None:
    services = plan().services

    def gpus(services: list, facts: dict) -> list[str]:
        return host_problems(HostPlan(services=services, address="10.0.0.5"), mounts=[], ipc_host=False, containers=[],
                             gpu_facts=facts)

    # gpu_facts as the prepare stage's module reports them: the problems read its summary.
    assert gpus(services, {"gpu_count": 4, "summary": {"count": 4, "memory_mib": 81920}}) == []
    assert "asks for 2 GPU(s); this host has 1" in gpus(services, {"gpu_count": 1, "summary": {"count": 1}})[0]
    high = [services[0].model_copy(update={"device_ids": [2, 3]})]
    assert "GPU id(s) [3] do not exist" in gpus(high, {"gpu_count": 3, "summary": {"count": 3}})[0]
    assert gpus(services, {}) == []


def test_gpu_counts_get_their_own_ids_beside_listed_ones() -> None:
    spec = {"services": [
        {"name": "a", "storage_uri": "hf://org/a", "gpus": 2, "tensor_parallel_size": 2, "port": 8000},
        {"name": "b", "storage_uri": "hf://org/b", "gpus": [0], "port": 8001},
        {"name": "c", "storage_uri": "hf://org/c", "gpus": 1, "port": 8002},
    ]}
    ids = {s.name: s.device_ids for s in plan(spec).services}
    assert ids == {"a": [1, 2], "b": [0], "c": [3]}
    params = container.container_params(plan(spec).services[2], settings=SETTINGS,
                                      weights_dirs={"c": {"path": "/m/c/r", "revision": "r"}})
    assert params["device_requests"][0]["device_ids"] == ["3"] and "count" not in params["device_requests"][0]


def test_an_api_key_comes_from_a_mounted_file_through_a_wrapper_never_from_argv_or_env() -> None:
    tiny = plan().services[1]
    key = "sk-unit-key-never-printed-0123456789"
    params = container.container_params(tiny, settings=SETTINGS.model_copy(update={"secrets_dir": "/etc/vf/secrets"}),
                                        image_entrypoint=["python3", "-m", "vllm.entrypoints.openai.api_server"],
                                        api_key=key)
    assert key not in repr(params)
    assert params["entrypoint"] == container.API_KEY_WRAPPER
    assert params["command"][:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert params["command"][3:] == tiny.engine_args
    (mount,) = [m for m in params["mounts"] if m["target"] == container.API_KEY_MOUNT]
    assert mount["read_only"] and mount["source"].startswith("/etc/vf/secrets/tiny-")
    rotated = container.container_params(tiny, settings=SETTINGS.model_copy(update={"secrets_dir": "/etc/vf/secrets"}),
                                         api_key=key + "x")
    (other,) = [m for m in rotated["mounts"] if m["target"] == container.API_KEY_MOUNT]
    assert other["source"] != mount["source"]  # a rolled-back container keeps reading its own key
    assert "entrypoint" not in container.container_params(tiny, settings=SETTINGS)


def test_container_names_come_from_the_plan_with_the_inventory_prefix() -> None:
    tiny = plan(vllm_fleet_container_prefix="llm-").services[1]
    assert (tiny.container.name, tiny.container.candidate, tiny.container.fallback) == (
        "llm-tiny", "llm-tiny-candidate", "llm-tiny-previous")
    params = container.container_params(tiny, settings=SETTINGS)
    assert params["name"] == "llm-tiny" and container.canary_params(params, tiny, 1)["name"] == "llm-tiny-candidate"
    assert plan().services[1].container.name == "vllm-tiny"


def test_mig_gpus_are_not_handed_out_to_counts_and_float16_passes_on_turing() -> None:
    spec = {"services": [{"name": "a", "storage_uri": "hf://org/a", "gpus": 2, "tensor_parallel_size": 2,
                          "engine": {"dtype": "float16"}}]}
    gpus = {"count": 4, "memory_mib": 15360, "compute_capability": "7.5", "mig_gpus": [0, 2]}
    assert plan(spec, vllm_fleet_gpus=gpus).services[0].device_ids == [1, 3]


ADAPTED = {"services": [{
    "name": "chat", "storage_uri": "file:///srv/models/chat", "accelerator": "cpu", "gpus": 0,
    "adapters": [{"name": "chat-support", "storage_uri": "hf://acme/support-lora", "rank": 8},
                 {"name": "acme/legal", "storage_uri": "s3://loras/legal",
                  "storage": {"credentials": {"s3": {"access_key_id": {"env": "K"},
                                                     "secret_access_key": {"env": "S"}}}}}],
}]}
ADAPTER_DIRS = {"chat@chat-support": {"path": "/var/lib/vllm-fleet/adapters/chat/chat-support/0123abcd"},
                "chat@acme/legal": {"path": "/var/lib/vllm-fleet/adapters/chat/acme_legal/s3-9f2e"}}


def test_a_service_with_adapters_reserves_them_and_starts_with_the_ones_fetched() -> None:
    import json

    svc = plan_for_host(ADAPTED, "10.0.0.5").services[0]
    assert [(a.name, a.weights_name, a.source.scheme) for a in svc.adapters] == [
        ("chat-support", "chat-support", "hf"), ("acme/legal", "acme_legal", "s3")]
    assert svc.adapters[1].secrets.given() == {"s3_access_key_id": {"env": "K"}, "s3_secret_access_key": {"env": "S"}}
    assert svc.adapters[0].secrets.given() == {} and svc.secrets.given() == {}
    assert (svc.max_loras, svc.max_lora_rank) == (4, 16)
    args = svc.engine_args
    assert args[args.index("--max-loras") + 1] == "4" and args[args.index("--max-lora-rank") + 1] == "16"
    assert "--enable-lora" in args and "--lora-modules" not in args
    params = container.container_params(svc, settings=SETTINGS, weights_dirs=ADAPTER_DIRS)
    assert params["env"][container.RUNTIME_LORA_ENV] == "True"
    assert {"type": "bind", "source": "/var/lib/vllm-fleet/adapters/chat", "target": "/mnt/adapters",
            "read_only": True} in params["mounts"]
    command = params["command"]
    modules = [json.loads(m) for m in command[command.index("--lora-modules") + 1:]]
    assert modules == [
        {"name": "chat-support", "path": "/mnt/adapters/chat-support/0123abcd", "base_model_name": "chat"},
        {"name": "acme/legal", "path": "/mnt/adapters/acme_legal/s3-9f2e", "base_model_name": "chat"}]


def test_adding_an_adapter_keeps_the_spec_hash_and_changing_the_limits_moves_it() -> None:
    def hashed(spec: dict, dirs: dict) -> str:
        svc = plan_for_host(spec, "10.0.0.5").services[0]
        return container.container_params(svc, settings=SETTINGS, weights_dirs=dirs)["labels"][
            f"{container.LABEL_PREFIX}.spec-hash"]

    one = copy.deepcopy(ADAPTED)
    one["services"][0]["adapters"] = one["services"][0]["adapters"][:1]
    assert hashed(one, ADAPTER_DIRS) == hashed(ADAPTED, ADAPTER_DIRS)
    limited = copy.deepcopy(ADAPTED)
    limited["services"][0]["lora"] = {"max_lora_rank": 32}
    assert hashed(limited, ADAPTER_DIRS) != hashed(ADAPTED, ADAPTER_DIRS)
    none = copy.deepcopy(ADAPTED)
    none["services"][0]["adapters"] = []
    assert hashed(none, {}) != hashed(ADAPTED, ADAPTER_DIRS)  # no adapters: no LoRA reserved at all


def test_an_adapter_without_fetched_files_or_outside_its_directory_is_refused() -> None:
    svc = plan_for_host(ADAPTED, "10.0.0.5").services[0]
    with pytest.raises(container.ServingError, match=r"adapter acme/legal .*run the weights stage"):
        container.container_params(svc, settings=SETTINGS, weights_dirs={"chat@chat-support": ADAPTER_DIRS[
            "chat@chat-support"]})
    with pytest.raises(container.ServingError, match="outside /var/lib/vllm-fleet/adapters/chat"):
        container.container_params(svc, settings=SETTINGS, weights_dirs={
            **ADAPTER_DIRS, "chat@acme/legal": {"path": "/srv/elsewhere/legal"}})


def test_the_label_prefix_setting_names_every_label_the_hash_and_the_canarys() -> None:
    tiny = plan().services[1]
    custom = SETTINGS.model_copy(update={"label_prefix": "com.acme.llm"})
    params = container.container_params(tiny, settings=custom)
    assert params["labels"] and all(k.startswith("com.acme.llm.") for k in params["labels"])
    assert params["labels"]["com.acme.llm.spec-hash"] == container.container_params(tiny, settings=custom)[
        "labels"]["com.acme.llm.spec-hash"]
    canary = container.canary_params(params, tiny, 10000, "com.acme.llm")
    assert canary["labels"]["com.acme.llm.managed"] == "candidate"


def test_host_paths_name_the_cache_directory_and_key_file_the_mounts_take() -> None:
    tiny = plan().services[1]
    params = container.container_params(tiny, settings=SETTINGS, api_key="k1")
    mounts = {m["target"]: m["source"] for m in params["mounts"]}
    assert params["host_paths"] == {"vllm_cache": mounts[container.VLLM_CACHE_MOUNT],
                                    "api_key_file": mounts[container.API_KEY_MOUNT]}
    assert container.container_params(tiny, settings=SETTINGS)["host_paths"]["api_key_file"] is None
