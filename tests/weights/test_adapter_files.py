"""An adapter's files in the weights stage: a file:// adapter is copied into its service's adapters directory (one
revision per content, a re-run copies nothing), and files that do not fit their service (rank, base model, hidden
size, not LoRA) are refused before anything of them is published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights.origins import make_adapter, make_model

from ansible_collections.vllmfleet.fleet.plugins.module_utils.adapter_check import (  # isort: skip
    config_problems,
    declared_rank,
)
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import WeightsError  # isort: skip
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure  # isort: skip


def source(path: Path) -> dict[str, str]:
    return {"uri": f"file://{path}", "scheme": "file", "display_uri": f"file://{path}"}


def published(service_dir: Path) -> list[str]:
    """What the service directory holds besides the publisher's lock file: revisions and staging directories."""
    return sorted(p.name for p in service_dir.iterdir() if p.name != ".lock") if service_dir.is_dir() else []


def test_a_file_adapter_is_copied_once_per_content_and_a_rerun_copies_nothing(tmp_path):
    adapter = make_adapter(tmp_path / "src")
    root = tmp_path / "adapters" / "chat"
    fit = {"max_rank": 16, "base_repo": "acme/base"}

    first = ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True, fit=fit)
    again = ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True, fit=fit)

    assert first["changed"] is True and first["path"].startswith(str(root / "support") + "/")
    assert (Path(first["path"]) / "adapter_model.safetensors").read_bytes() == \
        (adapter / "adapter_model.safetensors").read_bytes()
    assert again["changed"] is False and again["path"] == first["path"] and again["bytes_downloaded"] == 0
    make_adapter(adapter)  # new weights: another revision beside the first
    third = ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True, fit=fit)
    assert third["changed"] is True and third["path"] != first["path"]


def test_a_file_model_is_still_checked_in_place_and_not_copied(tmp_path):
    model = make_model(tmp_path / "model")

    result = ensure(str(tmp_path / "models"), "chat", source(model), {})

    assert result["path"] == str(model) and result["changed"] is False
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(("adapter_args", "fit", "says"), [
    ({"rank": 32}, {"max_rank": 16}, "has rank 32, above the service's max_lora_rank 16"),
    ({"base": "other/model"}, {"max_rank": 16, "base_repo": "acme/base"},
     "was trained on other/model, and the service serves acme/base"),
    ({"width": 64}, {"max_rank": 16, "base_dir": "MODEL"}, "takes 64 inputs, and the service's model has hidden "
                                                           "size 128"),
    ({"peft_type": "IA3"}, {"max_rank": 16}, "is a IA3 adapter; vLLM serves LoRA adapters only"),
])
def test_an_adapter_that_does_not_fit_its_service_is_refused_and_nothing_is_published(tmp_path, adapter_args, fit,
                                                                                      says):
    adapter = make_adapter(tmp_path / "src", **adapter_args)
    model = make_model(tmp_path / "model")  # hidden_size 128
    fit = {k: str(model) if v == "MODEL" else v for k, v in fit.items()}
    root = tmp_path / "adapters" / "chat"

    with pytest.raises(WeightsError) as err:
        ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True, fit=fit)

    assert says in str(err.value)
    assert published(root / "support") == []  # no revision, no staging directory left behind


def test_a_published_adapter_that_no_longer_fits_fails_the_rerun(tmp_path):
    adapter = make_adapter(tmp_path / "src", rank=16)
    root = tmp_path / "adapters" / "chat"
    ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True, fit={"max_rank": 16})

    with pytest.raises(WeightsError, match=r"has rank 16, above the service's max_lora_rank 8"):
        ensure(str(root), "support", source(adapter), {}, require_config=False, copy_local=True,
               fit={"max_rank": 8})


def test_a_directory_without_adapter_config_is_refused(tmp_path):
    model = make_model(tmp_path / "not-an-adapter")

    with pytest.raises(WeightsError, match=r"has no readable adapter_config\.json"):
        ensure(str(tmp_path / "adapters"), "support", source(model), {}, require_config=False, copy_local=True,
               fit={"max_rank": 16})


def test_an_adapter_config_names_its_largest_rank() -> None:
    assert declared_rank({"r": 8, "rank_pattern": {"q_proj": 32}}) == 32
    assert declared_rank({"r": 16}) == 16
    assert declared_rank({}) is None


def test_a_base_model_is_compared_only_where_both_sides_are_hub_repos() -> None:
    qwen = "Qwen/Qwen2.5-7B-Instruct"
    assert config_problems({"base_model_name_or_path": "qwen/qwen2.5-7b-instruct"}, 16, qwen) == []
    problems = config_problems({"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}, 16, qwen)
    assert problems == ["was trained on meta-llama/Llama-3.1-8B, and the service serves Qwen/Qwen2.5-7B-Instruct"]
    # A local path, a missing field or a service from S3 (no hub repo: base_repo None) cannot be told apart.
    assert config_problems({"base_model_name_or_path": "/data/base"}, 16, qwen) == []
    assert config_problems({}, 16, qwen) == []
    assert config_problems({"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}, 16, None) == []
