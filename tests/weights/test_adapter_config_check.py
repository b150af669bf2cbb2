"""vllmfleet.fleet.adapter_config_check against the hub layout served by nginx: a hub adapter's adapter_config.json
is read alone on the controller and a mismatch with its service fails before any host is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.weights.conftest import REPO
from tests.weights.hub import hub_repo_layout
from tests.weights.origins import Nginx, free_port, make_adapter, start_nginx

COMMIT = "a1" * 20
HF_TOKEN = "hf_adapterCheckTokenDoNotLeak0042"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Nginx]:
    www = tmp_path / "www"
    good = make_adapter(tmp_path / "good", base="org/base")
    other = make_adapter(tmp_path / "other", base="other/model")
    locations = "\n".join([hub_repo_layout(www, "acme/good-lora", good, COMMIT),
                           hub_repo_layout(www, "acme/other-lora", other, COMMIT),
                           hub_repo_layout(www, "acme/private-lora", good, COMMIT, token=HF_TOKEN)])
    origin = start_nginx(tmp_path / "nginx", www, extra=locations)
    yield origin
    origin.stop()


def check(uri: str, endpoint: str, *, base_repo: str | None = "org/base", max_rank: int = 16,
          token: str | None = None) -> subprocess.CompletedProcess[str]:
    args = {"name": "chat@lora", "source": {"uri": uri, "endpoint": endpoint, "display_uri": uri},
            "fit": {"max_rank": max_rank, "base_repo": base_repo}}
    if token:
        args["hf_token"] = token
    ansible = str(Path(sys.executable).parent / "ansible")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([ansible, "localhost", "-vvv", "-e", f"ansible_python_interpreter={sys.executable}",
                           "-m", "vllmfleet.fleet.adapter_config_check", "-a", json.dumps(args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_a_fitting_adapter_passes_and_only_its_config_is_read(hub: Nginx) -> None:
    hub.reset_log()
    result = check("hf://acme/good-lora", hub.url)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "checked: true" in result.stdout
    gets = [r["uri"] for r in hub.requests() if r["method"] == "GET" and "/resolve/" in r["uri"]]
    assert gets == ["/acme/good-lora/resolve/main/adapter_config.json"]


def test_an_adapter_trained_on_another_model_fails_naming_both(hub: Nginx) -> None:
    result = check("hf://acme/other-lora", hub.url)
    assert result.returncode != 0
    assert "adapter chat@lora (hf://acme/other-lora) does not fit its service: it was trained on other/model, and " \
           "the service serves org/base. Nothing was changed on any host." in result.stdout


def test_a_rank_above_the_limit_fails(hub: Nginx) -> None:
    result = check("hf://acme/good-lora", hub.url, max_rank=4)
    assert result.returncode != 0 and "has rank 8, above the service's max_lora_rank 4" in result.stdout


def test_a_private_adapter_is_read_with_its_token_which_no_output_shows(hub: Nginx) -> None:
    opened = check("hf://acme/private-lora", hub.url, token=HF_TOKEN)
    refused = check("hf://acme/private-lora", hub.url, token="hf_wrongTokenForThisRepo0000000001")
    assert opened.returncode == 0, opened.stdout[-3000:]
    assert refused.returncode != 0 and "the token does not open it" in refused.stdout
    assert HF_TOKEN not in opened.stdout + opened.stderr + refused.stdout + refused.stderr


def test_a_hub_out_of_reach_leaves_the_check_to_the_weights_stage(hub: Nginx) -> None:
    result = check("hf://acme/good-lora", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "checked: false" in result.stdout and "the weights stage checks it on the host" in result.stderr + \
        result.stdout
