"""A generate service's LoRA adapters in the spec: the limits derived for vLLM and the fleet-wide names a gateway
key can be scoped to."""

from __future__ import annotations

import pytest

from vllm_fleet.spec import Adapter, LoraLimits, SpecError, validate_spec
from vllm_fleet.spec.adapters import derived_limits
from vllm_fleet.vm.planning.rules import VM_TARGET


def adapters(*ranks: int | None) -> list[Adapter]:
    return [Adapter(name=f"a{i}", storage_uri=f"hf://acme/lora-{i}", rank=r) for i, r in enumerate(ranks)]


@pytest.mark.parametrize(("ranks", "limits", "want"), [
    ((None,), None, (4, 16)),            # room for 4 adapters of rank 16 whatever one adapter needs
    ((8, 8, 8, 8, 8), None, (8, 16)),    # 5 adapters: the next power of two
    ((32, None), None, (4, 32)),         # the largest known rank, as an accepted rank
    ((40,), None, (4, 64)),              # 40 is not accepted by vLLM: the next one up
    ((8,), LoraLimits(max_loras=2, max_lora_rank=8), (2, 8)),  # the spec's values as given
])
def test_limits_derived_from_the_adapters_leave_room_or_are_taken_from_the_spec(
        ranks: tuple[int | None, ...], limits: LoraLimits | None, want: tuple[int, int]) -> None:
    assert derived_limits(adapters(*ranks), limits) == want


def fleet(**gateway_clients: list[str]) -> dict:
    return {
        "services": [{"name": "chat", "storage_uri": "hf://Qwen/Qwen2.5-7B-Instruct", "api_key": {"env": "BACKEND"},
                      "adapters": [{"name": "chat-support", "storage_uri": "hf://acme/support-lora",
                                    "storage": {"credentials": {"hf_token": {"env": "ADAPTER_TOKEN"}}}}]}],
        "gateway": {"clients": [{"name": n, "key": {"env": f"KEY_{n.upper()}"}, "models": m}
                                for n, m in gateway_clients.items()]},
    }


def test_a_gateway_key_can_be_scoped_to_an_adapter_and_not_to_an_unknown_name() -> None:
    dep = validate_spec(fleet(support=["chat-support"]), VM_TARGET)
    assert dep.services[0].adapters[0].name == "chat-support"
    with pytest.raises(SpecError) as err:
        validate_spec(fleet(support=["chat-legal"]), VM_TARGET)
    assert [i.path for i in err.value.issues] == ["gateway.clients[0].models"]
    assert "chat-support" in err.value.issues[0].fix


def test_an_adapters_credentials_are_references_of_the_service_under_their_own_path() -> None:
    dep = validate_spec(fleet(support=["*"]), VM_TARGET)
    refs = dep.services[0].secret_refs()
    assert refs["adapters[0].storage.credentials.hf_token"].env == "ADAPTER_TOKEN"
    assert "storage.credentials.hf_token" not in refs  # the base model's own storage has none


def test_an_adapters_credential_a_vm_cannot_resolve_is_refused_at_its_path() -> None:
    spec = fleet(support=["*"])
    spec["services"][0]["adapters"][0]["storage"]["credentials"]["hf_token"] = {"pulumi_config": "hfToken"}
    with pytest.raises(SpecError) as err:
        validate_spec(spec, VM_TARGET)
    assert "services[0].adapters[0].storage.credentials.hf_token" in [i.path for i in err.value.issues]
