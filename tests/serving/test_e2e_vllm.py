"""Real vLLM (CPU) in containers on a sandbox container host, driven by playbooks/deploy-vllm.yml.

The steps share one host and run in order: deploy (the session's `fleet`, gateway included), no-op re-run, tiny-chat's
LoRA adapter against its base, a second adapter added and removed at runtime and one that does not fit, one
changed argument rolled out at -vvv, a broken argument (rolled back while the old container keeps answering), a
slower change failing its benchmark gate in a canary, a broken image, and a replace-strategy rollback. The backends
are called straight on the internal network here; the gateway's own steps follow in test_gateway_e2e.py.
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.worlds import FLEET_SPEC, KEY, ServingHost
from vllm_fleet.sandbox.tiny_models import lessons

# The first test also waits for the vLLM CPU image build (minutes on a fresh machine) and the deploy.
pytestmark = [pytest.mark.world, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(3000)]

SPEC = FLEET_SPEC  # changed in place by the steps that change the deployment for good
CONTAINERS = sorted(f"vllm-{s['name']}" for s in SPEC["services"])


def need(*names: str) -> None:
    missing = [n for n in names if n not in {s["name"] for s in SPEC["services"]}]
    if missing:
        pytest.skip(f"VLLM_FLEET_E2E_ONLY leaves out {', '.join(missing)}")


def http(url: str, body: dict | None = None, key: str | None = KEY, timeout: float = 60) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def chat(host: ServingHost, key: str | None = KEY) -> tuple[int, Any]:
    """Straight to the backend, on the internal network (as the gateway reaches it)."""
    return http(f"http://{host.backend_address}:8000/v1/chat/completions",
                {"model": "tiny-chat", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}, key)


class Poller(threading.Thread):
    """Asks the chat service for a completion every half second while a deploy runs."""

    def __init__(self, host: ServingHost) -> None:
        super().__init__(daemon=True)
        self.host, self.statuses, self._stop_event = host, [], threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.statuses.append(chat(self.host)[0])
            self._stop_event.wait(0.5)

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join(60)
        return self.statuses


@pytest.fixture(scope="module")
def deployed(fleet: dict[str, Any]) -> dict[str, Any]:
    return fleet


def ask(host: ServingHost, model: str, question: str) -> tuple[int, Any]:
    """A greedy chat answer, straight to tiny-chat's backend."""
    return http(f"http://{host.backend_address}:8000/v1/chat/completions",
                {"model": model, "max_tokens": 48, "temperature": 0,
                 "messages": [{"role": "user", "content": question}]})


def test_chat_answers_with_the_key_and_refuses_without(serving_host: ServingHost, deployed: dict) -> None:
    """tiny-chat answers each question it was taught with the taught sentence, word for word."""
    for lesson in lessons()["model"]:
        status, body = ask(serving_host, "tiny-chat", lesson["user"])
        assert status == 200 and body["model"] == "tiny-chat"
        assert body["choices"][0]["message"]["content"] == lesson["assistant"], lesson
        assert body["choices"][0]["finish_reason"] == "stop"
    assert chat(serving_host, key=None)[0] == 401
    assert chat(serving_host, key="wrong-key")[0] == 401
    assert KEY not in deployed["output"]
    rows = {e["service"]: e["url"] for e in deployed["endpoints"]}
    assert rows["tiny-chat"] == f"http://{serving_host.backend_address}:8000/v1"


def test_embeddings_and_rerank_answer_for_real(serving_host: ServingHost, deployed: dict) -> None:
    need("tiny-embed", "tiny-rerank")
    base = f"http://{serving_host.backend_address}"
    status, body = http(f"{base}:8001/v1/embeddings", {"model": "tiny-embed", "input": ["a cat", "a dog"]})
    assert status == 200 and len(body["data"]) == 2 and len(body["data"][0]["embedding"]) == 128
    assert http(f"{base}:8001/v1/embeddings", {"model": "tiny-embed", "input": "x"}, key=None)[0] == 401
    status, body = http(f"{base}:8002/rerank", {"model": "tiny-rerank", "query": "capital of France",
                                                "documents": ["Paris is the capital.", "A fox."]})
    assert status == 200 and sorted(r["index"] for r in body["results"]) == [0, 1]
    status, body = http(f"{base}:8002/score", {"model": "tiny-rerank", "text_1": "a", "text_2": ["b", "c"]})
    assert status == 200 and len(body["data"]) == 2 and isinstance(body["data"][0]["score"], float)


def test_containers_carry_the_contract(serving_host: ServingHost, deployed: dict) -> None:
    info = json.loads(serving_host.docker("inspect", "vllm-tiny-chat").stdout)[0]
    labels = info["Config"]["Labels"]
    assert labels["io.vllm-fleet.service"] == "tiny-chat" and len(labels["io.vllm-fleet.spec-hash"]) == 16
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/mnt/models"]["RW"] is False
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["HostConfig"]["LogConfig"]["Config"] == {"max-file": "5", "max-size": "100m"}
    assert info["HostConfig"]["ShmSize"] == 1024**3
    assert info["Config"]["Healthcheck"]["Test"][:2] == ["CMD", "curl"]
    # The key reaches vLLM from a root-only file, never through argv, the environment or inspect output.
    assert KEY not in json.dumps(info)
    key_mount = mounts["/run/secrets/vllm-api-key"]
    assert key_mount["RW"] is False
    mode = serving_host.exec("stat", "-c", "%a %U", key_mount["Source"]).stdout.split()
    assert mode == ["400", "root"]
    assert KEY not in serving_host.exec("ps", "-eo", "args").stdout
    assert not info["HostConfig"].get("DeviceRequests")


def test_second_run_changes_and_restarts_nothing(serving_host: ServingHost, deployed: dict) -> None:
    before = {c: serving_host.started_at(c) for c in CONTAINERS}
    result = serving_host.deploy(SPEC)
    assert result["ok"], result["output"][-4000:]
    assert result["hosts"][serving_host.name]["changed"] == 0
    assert {c: serving_host.started_at(c) for c in CONTAINERS} == before
    # tiny-chat has a benchmark gate: neither its first deploy nor an unchanged re-run benchmarks it.
    assert deployed["gates"] == [] and result["gates"] == []


def completion(host: ServingHost, model: str) -> tuple[int, Any]:
    """A greedy completion of a fixed prompt, straight to tiny-chat's backend."""
    return http(f"http://{host.backend_address}:8000/v1/completions",
                {"model": model, "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0,
                 "seed": 7})


def served(host: ServingHost) -> dict[str, str | None]:
    """{model id: parent} from tiny-chat's /v1/models."""
    status, body = http(f"http://{host.backend_address}:8000/v1/models")
    assert status == 200
    return {m["id"]: m.get("parent") for m in body["data"]}


def test_the_adapter_answers_by_its_name_unlike_its_base_and_is_listed_beside_it(serving_host: ServingHost,
                                                                                deployed: dict) -> None:
    """Asked the same question, the base model gives its taught answer and the adapter, by its own name, the
    adapter's taught answer; greedy, so asking again gives the same text."""
    need("tiny-chat")
    assert served(serving_host) == {"tiny-chat": None, "tiny-chat-lora": "tiny-chat"}
    (taught,) = lessons()["adapter"]
    base_status, base = ask(serving_host, "tiny-chat", taught["user"])
    lora_status, lora = ask(serving_host, "tiny-chat-lora", taught["user"])
    assert (base_status, lora_status) == (200, 200)
    assert lora["model"] == "tiny-chat-lora"
    base_text, lora_text = base["choices"][0]["message"]["content"], lora["choices"][0]["message"]["content"]
    print(f"asked {taught['user']!r}: tiny-chat answers {base_text!r}; tiny-chat-lora answers {lora_text!r}")
    assert lora_text == taught["assistant"]
    assert base_text == next(x["assistant"] for x in lessons()["model"] if x["user"] == taught["user"])
    assert ask(serving_host, "tiny-chat-lora", taught["user"])[1]["choices"][0]["message"]["content"] == lora_text
    # A raw completion (no chat template) through the adapter runs too.
    assert completion(serving_host, "tiny-chat-lora")[0] == 200
    # Served from the copy the weights stage published in the service's adapters directory, mounted read-only.
    info = json.loads(serving_host.docker("inspect", "vllm-tiny-chat").stdout)[0]
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/mnt/adapters"]["Source"] == "/var/lib/vllm-fleet/adapters/tiny-chat"
    assert mounts["/mnt/adapters"]["RW"] is False
    assert "--enable-lora" in info["Config"]["Cmd"]


def test_an_adapter_added_then_removed_is_loaded_and_unloaded_without_restarting_the_base_model(
        serving_host: ServingHost, deployed: dict) -> None:
    """A second adapter (a file:// source elsewhere on the host) joins at runtime through the serve stage and
    answers through the gateway too; taken out of the spec, it is unloaded. The base container never restarts."""
    import requests

    from tests.worlds import CLIENT_KEYS, MODELS_MOUNT

    need("tiny-chat")
    serving_host.exec("sh", "-c", f"mkdir -p /srv/e2e-adapters && rm -rf /srv/e2e-adapters/second && "
                                  f"cp -r {MODELS_MOUNT}/tiny-chat-lora /srv/e2e-adapters/second")
    started = serving_host.started_at("vllm-tiny-chat")
    spec = copy.deepcopy(SPEC)
    chat_svc = next(s for s in spec["services"] if s["name"] == "tiny-chat")
    chat_svc["adapters"].append({"name": "tiny-chat-lora-2", "storage_uri": "file:///srv/e2e-adapters/second"})

    added = serving_host.deploy(spec)

    assert added["ok"], added["output"][-6000:]
    assert serving_host.started_at("vllm-tiny-chat") == started
    assert served(serving_host)["tiny-chat-lora-2"] == "tiny-chat"
    assert completion(serving_host, "tiny-chat-lora-2")[0] == 200
    reply = requests.post(f"{serving_host.gateway_url}/v1/chat/completions", verify=str(serving_host.pki / "ca.pem"),
                          headers={"Authorization": f"Bearer {CLIENT_KEYS['E2E_CLIENT_APP']}"}, timeout=120,
                          json={"model": "tiny-chat-lora-2", "max_tokens": 2,
                                "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200 and reply.json()["model"] == "tiny-chat-lora-2"

    removed = serving_host.deploy(SPEC)

    assert removed["ok"], removed["output"][-6000:]
    assert serving_host.started_at("vllm-tiny-chat") == started
    assert served(serving_host) == {"tiny-chat": None, "tiny-chat-lora": "tiny-chat"}
    assert completion(serving_host, "tiny-chat-lora-2")[0] == 404
    assert completion(serving_host, "tiny-chat-lora")[0] == 200


def test_an_adapter_that_does_not_fit_is_refused_before_it_is_published_and_nothing_restarts(
        serving_host: ServingHost, deployed: dict) -> None:
    """An adapter of rank 64 on tiny-chat (whose derived --max-lora-rank is 16), its rank not given in the spec: the
    weights stage reads its adapter_config.json on the host and refuses it before publishing anything, so no
    container changes and the adapters directory holds no trace of it."""
    from tests.worlds import MODELS_MOUNT

    need("tiny-chat")
    serving_host.exec("sh", "-c", "rm -rf /srv/e2e-adapters/wide && mkdir -p /srv/e2e-adapters && "
                                  f"cp -r {MODELS_MOUNT}/tiny-chat-lora /srv/e2e-adapters/wide && "
                                  "sed -i 's/\"r\": 8/\"r\": 64/' /srv/e2e-adapters/wide/adapter_config.json")
    started = serving_host.started_at("vllm-tiny-chat")
    spec = copy.deepcopy(SPEC)
    next(s for s in spec["services"] if s["name"] == "tiny-chat")["adapters"].append(
        {"name": "tiny-chat-wide", "storage_uri": "file:///srv/e2e-adapters/wide"})

    result = serving_host.deploy(spec)

    assert not result["ok"]
    assert "has rank 64, above the service's max_lora_rank 16" in result["output"]
    assert serving_host.started_at("vllm-tiny-chat") == started
    assert serving_host.exec("ls", "-A", "/var/lib/vllm-fleet/adapters/tiny-chat/tiny-chat-wide",
                             check=False).stdout.split() in ([], [".lock"])
    assert "tiny-chat-wide" not in served(serving_host)


def test_one_changed_argument_at_vvv_restarts_exactly_that_service_and_the_key_is_in_no_output_inspect_or_ps(
        serving_host: ServingHost, deployed: dict, tmp_path) -> None:
    """One rollout at -vvv (the key file, the canary, the start and the readiness check run): only the changed service
    restarts, and the API key is in no CLI output, runner artifact, `docker inspect` or process list."""
    need("tiny-chat", "tiny-embed")
    before = {c: serving_host.started_at(c) for c in CONTAINERS}
    spec = copy.deepcopy(SPEC)
    embed = next(i for i, s in enumerate(spec["services"]) if s["name"] == "tiny-embed")
    spec["services"][embed]["engine"]["max_num_seqs"] = 8
    result = serving_host.deploy(spec, verbose=3, artifacts=tmp_path / "runner")
    assert result["ok"], result["output"][-4000:]
    after = {c: serving_host.started_at(c) for c in CONTAINERS}
    assert [c for c in CONTAINERS if after[c] != before[c]] == ["vllm-tiny-embed"]
    args = json.loads(serving_host.docker("inspect", "-f", "{{json .Args}}", "vllm-tiny-embed").stdout)
    assert args[args.index("--max-num-seqs") + 1] == "8"
    assert serving_host.containers() == CONTAINERS  # no canary or fallback left behind
    SPEC["services"][embed] = spec["services"][embed]

    places: dict[str, str] = {"CLI output": result["output"]}
    artifacts = [p for p in (tmp_path / "runner").rglob("*") if p.is_file()]
    places |= {f"runner artifact {p.name}": p.read_text(errors="replace") for p in artifacts}
    log = "\n".join(text for where, text in places.items() if where.endswith("stdout"))
    assert "ESTABLISH" in log or "<127.0.0.1>" in log or "Using module file" in log, "the run was not verbose"
    for container in serving_host.containers():
        places[f"docker inspect {container}"] = serving_host.docker("inspect", container).stdout
    places["ps on the host"] = serving_host.exec("ps", "-eo", "args").stdout
    leaks = [where for where, text in places.items() if KEY in text]
    print(f"searched {len(places)} places ({len(artifacts)} runner artifacts) for the API key: {len(leaks)} hits")
    assert len(artifacts) > 10 and leaks == []


def test_broken_argument_is_rolled_back_while_the_old_container_answers(serving_host: ServingHost,
                                                                        deployed: dict) -> None:
    before = serving_host.started_at("vllm-tiny-chat")
    spec = copy.deepcopy(SPEC)
    spec["services"][0]["engine"]["max_model_len"] = 4096  # beyond the model's 1024 positions: vLLM refuses
    poller = Poller(serving_host)
    poller.start()
    result = serving_host.deploy(spec, tags="weights,serve")
    statuses = poller.stop()
    assert not result["ok"]
    error = result["hosts"][serving_host.name]["error"]
    assert "canary" in error and "not touched" in error and "max_model_len" in error.lower()
    assert len(statuses) >= 10 and set(statuses) == {200}, statuses
    assert serving_host.started_at("vllm-tiny-chat") == before
    assert serving_host.containers() == CONTAINERS
    assert chat(serving_host)[0] == 200


def test_a_slower_change_fails_its_gate_in_a_canary_while_the_running_container_answers(
        serving_host: ServingHost, deployed: dict) -> None:
    """The canary strategy (CPU's default) benchmarks the running container and the canary beside it; one sequence
    at a time fails tiny-chat's gate, the canary goes, and the running container was never touched.
    64 tokens out per request, as in the gateway's rollback test: with 16, a CI run under load measured the slowdown
    inside the 250% allowance; a request's wait behind the ones ahead grows with their length."""
    need("tiny-chat")
    before = serving_host.started_at("vllm-tiny-chat")
    spec = copy.deepcopy(SPEC)
    chat = next(s for s in spec["services"] if s["name"] == "tiny-chat")
    chat["engine"]["max_num_seqs"] = 1
    chat["gate"] = chat["gate"] | {"output_len": 64}
    poller = Poller(serving_host)
    poller.start()
    result = serving_host.deploy(spec, tags="weights,serve")
    statuses = poller.stop()
    assert not result["ok"], result["gates"]
    (gate,) = result["gates"]
    print(f"gate in a canary: {gate['message']}")
    assert gate["host"] == serving_host.name and not gate["ok"] and gate["after"] > gate["before"] > 0
    error = result["hosts"][serving_host.name]["error"]
    assert "failed its benchmark gate in a canary" in error and "not touched" in error and gate["message"] in error
    assert len(statuses) >= 10 and set(statuses) == {200}, statuses
    assert serving_host.started_at("vllm-tiny-chat") == before
    assert serving_host.containers() == CONTAINERS


def test_broken_image_fails_before_any_container_changes(serving_host: ServingHost, deployed: dict) -> None:
    before = {c: serving_host.started_at(c) for c in CONTAINERS}
    spec = copy.deepcopy(SPEC)
    spec["services"][0]["image"] = "vllm-fleet/vllm-cpu:no-such-tag"
    poller = Poller(serving_host)
    poller.start()
    result = serving_host.deploy(spec, tags="weights,serve")
    statuses = poller.stop()
    assert not result["ok"]
    assert "no-such-tag" in result["hosts"][serving_host.name]["error"]
    assert statuses and set(statuses) == {200}
    assert {c: serving_host.started_at(c) for c in CONTAINERS} == before


def test_replace_strategy_restores_the_previous_container(serving_host: ServingHost, deployed: dict) -> None:
    """A broken change with the replace strategy: the running container is stopped and set aside, the new one fails
    its readiness check, and the very same container (its id and spec hash) is renamed back and answers; the next
    deploy of the unchanged spec then succeeds and changes nothing."""
    need("tiny-rerank")

    def identity() -> tuple[str, str]:
        info = json.loads(serving_host.docker("inspect", "vllm-tiny-rerank").stdout)[0]
        return info["Id"], info["Config"]["Labels"]["io.vllm-fleet.spec-hash"]

    before = identity()
    spec = copy.deepcopy(SPEC)
    rerank = next(i for i, s in enumerate(spec["services"]) if s["name"] == "tiny-rerank")
    spec["services"][rerank]["engine"]["max_model_len"] = 4096  # beyond the BERT's 256 positions
    result = serving_host.deploy(spec, tags="weights,serve", extra_vars={"vllm_server_update_strategy": "replace"})
    assert not result["ok"]
    error = result["hosts"][serving_host.name]["error"]
    assert "previous container was restored" in error
    assert serving_host.containers() == CONTAINERS
    assert identity() == before  # the same container, not a new one of the old configuration
    status, body = http(f"http://{serving_host.backend_address}:8002/score",
                        {"model": "tiny-rerank", "text_1": "a", "text_2": "b"})
    assert status == 200 and len(body["data"]) == 1
    again = serving_host.deploy(SPEC)
    assert again["ok"], again["output"][-4000:]
    assert again["hosts"][serving_host.name]["changed"] == 0
    assert identity() == before
