#!/usr/bin/python
"""Make the LoRA adapters a running vLLM service has loaded match a list, without restarting it."""

DOCUMENTATION = r"""
---
module: vllm_adapters
short_description: Load and unload LoRA adapters in a running vLLM service to match a list
description:
  - Reads the adapters the service serves from C(/v1/models) (the entries whose C(parent) is the base model), then
    unloads those not listed or listed with another path and loads the missing ones through vLLM's runtime
    endpoints C(/v1/unload_lora_adapter) and C(/v1/load_lora_adapter), which the container enables with
    C(VLLM_ALLOW_RUNTIME_LORA_UPDATING). The base model keeps running and serving throughout.
  - Reads C(/v1/models) again at the end and fails unless it lists exactly the adapters asked for.
  - Runs on the host against the published port (loopback or the internal address); the runtime endpoints are
    never reachable through the gateway, which routes only each task's public routes.
  - In check mode, reports what it would load and unload, and calls nothing but C(/v1/models).
version_added: "0.1.0"
author: vllm-fleet
options:
  base_model:
    description: The service's served model name, the C(parent) of its adapters.
    type: str
    required: true
  adapters:
    description: The adapters the service must serve, by model name and path inside the container.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The model name clients call the adapter by.
        type: str
        required: true
      path:
        description: The adapter's directory inside the container.
        type: str
        required: true
  timeout:
    description: Seconds per request (loading reads the adapter's files and moves them to the device).
    type: int
    default: 120
extends_documentation_fragment:
  - vllmfleet.fleet.service_endpoint
"""

EXAMPLES = r"""
- name: Load the chat service's adapters
  vllmfleet.fleet.vllm_adapters:
    port: 8000
    base_model: chat
    adapters:
      - {name: chat-support, path: /mnt/adapters/chat-support/3f1c2e}
    api_key: "{{ _api_key }}"
  no_log: true
"""

RETURN = r"""
loaded:
  description: Adapters loaded by this run.
  returned: always
  type: list
  elements: str
unloaded:
  description: Adapters unloaded by this run (no longer listed, or listed with another path and loaded again).
  returned: always
  type: list
  elements: str
adapters:
  description: The adapters the service serves at the end, name to path.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.vllm_http import SERVICE_ENDPOINT_ARGS, call


def served_adapters(base, port, host, api_key, timeout):
    """{name: path} of the adapters /v1/models lists under the base model, or (None, reason)."""
    reply = call(f"http://{host}:{port}/v1/models", api_key=api_key, timeout=timeout)
    body = reply.json()
    if reply.status != 200 or not isinstance(body, dict):
        return None, f"/v1/models answered {reply.status or reply.error}"
    return {m["id"]: m.get("root") for m in body.get("data", [])
            if m.get("parent") == base and m.get("id") != base}, None


def plan(served, wanted):
    """(unload, load): names to unload (not wanted, or at another path) and to load (missing or moved)."""
    unload = sorted(n for n, path in served.items() if wanted.get(n) != path)
    load = sorted(n for n, path in wanted.items() if served.get(n) != path)
    return unload, load


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **SERVICE_ENDPOINT_ARGS,
            base_model=dict(type="str", required=True),
            adapters=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True), path=dict(type="str", required=True))),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    base, host, port, key, timeout = p["base_model"], p["host"], p["port"], p["api_key"], p["timeout"]
    wanted = {a["name"]: a["path"] for a in p["adapters"]}
    served, problem = served_adapters(base, port, host, key, timeout)
    if served is None:
        module.fail_json(msg=f"cannot read the adapters of {base} on {host}:{port}: {problem}")
    unload, load = plan(served, wanted)
    result = dict(changed=bool(unload or load), loaded=load, unloaded=unload, adapters=served)
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    for name in unload:
        reply = call(f"http://{host}:{port}/v1/unload_lora_adapter", "POST", {"lora_name": name}, key, timeout)
        if reply.status != 200:
            module.fail_json(msg=f"{base}: unloading adapter {name} failed ({reply.status or reply.error}): "
                                 f"{reply.body[:500]}", **result)
    for name in load:
        reply = call(f"http://{host}:{port}/v1/load_lora_adapter", "POST",
                     {"lora_name": name, "lora_path": wanted[name]}, key, timeout)
        if reply.status != 200:
            module.fail_json(msg=f"{base}: loading adapter {name} from {wanted[name]} failed "
                                 f"({reply.status or reply.error}): {reply.body[:500]}", **result)
    served, problem = served_adapters(base, port, host, key, timeout)
    result["adapters"] = served
    if served != wanted:
        module.fail_json(msg=f"{base} serves adapters {served or problem} after loading, not {wanted}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
