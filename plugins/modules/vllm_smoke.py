

DOCUMENTATION = r"""
---
module: vllm_smoke
short_description: Smoke-test a running vLLM service through its OpenAI-compatible API
description:
  - "For every task: C(/v1/models) answers 401 without the API key (when one is set) and lists the model with it."
  - "C(generate): a chat completion returns a message; with C(tools), a forced function call returns a tool call."
  - "C(embed): C(/v1/embeddings) returns a vector for each input."
  - "C(score): C(/rerank) ranks two documents and C(/score) scores a pair."
  - Changes nothing; runs on the host against the published port.
version_added: "0.1.0"
author: vllm-fleet
options:
  task:
    description: What the service does.
    type: str
    choices: [generate, embed, score]
    required: true
  served_model_name:
    description: Model name the requests use.
    type: str
    required: true
  tools:
    description: Also check a tool call (the service runs with a tool-call parser).
    type: bool
    default: false
  adapters:
    description:
      - The service's LoRA adapters, by the model name clients call them; each must be listed by C(/v1/models) with
        the base model as its C(parent), and answer a chat completion by its name.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds per request.
    type: int
    default: 120
extends_documentation_fragment:
  - vllmfleet.fleet.service_endpoint
"""

EXAMPLES = r"""
- name: Smoke-test the chat service
  vllmfleet.fleet.vllm_smoke:
    port: 8000
    task: generate
    served_model_name: gpt-4
    api_key: "{{ _api_key }}"
    tools: true
  no_log: true
"""

RETURN = r"""
checks:
  description: One entry per request, with name, status and seconds.
  returned: always
  type: list
  elements: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.vllm_http import SERVICE_ENDPOINT_ARGS, call

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class SmokeFailure(Exception):
    pass


def _check(checks, name, reply, started, expect=200, validate=None):
    seconds = round(time.monotonic() - started, 2)
    checks.append({"name": name, "status": reply.status, "seconds": seconds})
    if reply.status != expect:
        raise SmokeFailure(f"{name} answered {reply.status or reply.error}, expected {expect}: "
                           f"{(reply.body or '')[:300]}")
    if validate is not None:
        problem = validate(reply.json())
        if problem:
            raise SmokeFailure(f"{name}: {problem}")


def _chat_ok(data):
    try:
        msg = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return "no choices[0].message in the reply"
    if msg.get("content") is None and not msg.get("tool_calls"):
        return "the message has neither content nor tool calls"
    return None


def _tool_ok(data):
    try:
        calls = data["choices"][0]["message"].get("tool_calls") or []
    except (KeyError, IndexError, TypeError):
        return "no choices[0].message in the reply"
    if not calls or calls[0].get("function", {}).get("name") != "get_weather":
        return "no get_weather tool call in the reply"
    return None


def _embed_ok(data):
    try:
        vectors = [d["embedding"] for d in data["data"]]
    except (KeyError, TypeError):
        return "no data[].embedding in the reply"
    if len(vectors) != 2 or not all(vectors) or not all(isinstance(x, float) for x in vectors[0]):
        return "expected two non-empty float vectors"
    return None


def _rerank_ok(data):
    results = (data or {}).get("results") if isinstance(data, dict) else None
    if not results or len(results) != 2 or not all("relevance_score" in r for r in results):
        return "expected two results with relevance_score"
    return None


def _score_ok(data):
    try:
        float(data["data"][0]["score"])
    except (KeyError, IndexError, TypeError, ValueError):
        return "no data[0].score in the reply"
    return None


def _adapters_listed(data, base, adapters):
    parents = {m.get("id"): m.get("parent") for m in (data or {}).get("data", [])}
    missing = [a for a in adapters if parents.get(a) != base]
    return f"adapters not served on {base}: {', '.join(missing)}" if missing else None


def smoke(p):
    base = f"http://{p['host']}:{p['port']}"
    key, model, timeout = p["api_key"], p["served_model_name"], p["timeout"]
    checks = []
    if key:
        t = time.monotonic()
        _check(checks, "GET /v1/models without key", call(base + "/v1/models", timeout=timeout), t, expect=401)
    t = time.monotonic()
    _check(checks, "GET /v1/models", call(base + "/v1/models", api_key=key, timeout=timeout), t,
           validate=lambda d: None if model in [m.get("id") for m in (d or {}).get("data", [])]
           else f"{model} is not listed")
    if p["task"] == "generate":
        t = time.monotonic()
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
        _check(checks, "POST /v1/chat/completions",
               call(base + "/v1/chat/completions", "POST", body, key, timeout), t, validate=_chat_ok)
        if p["tools"]:
            t = time.monotonic()
            body = {"model": model, "max_tokens": 64, "tools": [WEATHER_TOOL],
                    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                    "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
            _check(checks, "POST /v1/chat/completions (tool call)",
                   call(base + "/v1/chat/completions", "POST", body, key, timeout), t, validate=_tool_ok)
        if p["adapters"]:
            t = time.monotonic()
            _check(checks, "GET /v1/models (adapters)", call(base + "/v1/models", api_key=key, timeout=timeout), t,
                   validate=lambda d: _adapters_listed(d, model, p["adapters"]))
        for adapter in p["adapters"]:
            t = time.monotonic()
            body = {"model": adapter, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
            _check(checks, f"POST /v1/chat/completions (adapter {adapter})",
                   call(base + "/v1/chat/completions", "POST", body, key, timeout), t, validate=_chat_ok)
    elif p["task"] == "embed":
        t = time.monotonic()
        body = {"model": model, "input": ["hello world", "vLLM on a host"]}
        _check(checks, "POST /v1/embeddings", call(base + "/v1/embeddings", "POST", body, key, timeout), t,
               validate=_embed_ok)
    else:
        t = time.monotonic()
        body = {"model": model, "query": "capital of France",
                "documents": ["Paris is the capital of France.", "The quick brown fox."]}
        _check(checks, "POST /rerank", call(base + "/rerank", "POST", body, key, timeout), t,
               validate=_rerank_ok)
        t = time.monotonic()
        body = {"model": model, "text_1": "capital of France", "text_2": "Paris is the capital of France."}
        _check(checks, "POST /score", call(base + "/score", "POST", body, key, timeout), t, validate=_score_ok)
    return checks


def main():
    module = AnsibleModule(
        argument_spec=dict(
            SERVICE_ENDPOINT_ARGS,
            task=dict(type="str", required=True, choices=["generate", "embed", "score"]),
            served_model_name=dict(type="str", required=True),
            tools=dict(type="bool", default=False),
            adapters=dict(type="list", elements="str", default=[]),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, checks=[], msg="check mode: no requests sent")
    checks = []
    try:
        checks = smoke(module.params)
    except SmokeFailure as exc:
        module.fail_json(msg="smoke test of {} ({}) failed: {}".format(
            module.params["served_model_name"], module.params["task"], exc), checks=checks)
    module.exit_json(changed=False, checks=checks)


if __name__ == "__main__":
    main()
