

DOCUMENTATION = r"""
---
module: vllm_ready
short_description: Wait until a vLLM container is healthy and serves its model
description:
  - Polls C(/health) until it answers 200, then C(/v1/models) (with the API key) until it lists the served name.
  - Watches the container while waiting; when it exits, restarts or does not exist, fails at once with the
    container's last log lines instead of waiting out the timeout.
  - Recognises vLLM's shared-memory refusal and says which setting to raise.
  - Runs on the host, against the published port on loopback.
version_added: "0.1.0"
author: vllm-fleet
options:
  container:
    description: Name of the container serving the model.
    type: str
    required: true
  served_model_name:
    description: The name C(/v1/models) must list.
    type: str
    required: true
  timeout:
    description: Seconds to wait in all.
    type: int
    default: 900
  interval:
    description: Seconds between polls.
    type: float
    default: 2
  log_lines:
    description: How many of the container's last log lines to return on failure.
    type: int
    default: 40
extends_documentation_fragment:
  - vllmfleet.fleet.service_endpoint
"""

EXAMPLES = r"""
- name: Wait for the service to serve its model
  vllmfleet.fleet.vllm_ready:
    container: vllm-chat
    port: 8000
    served_model_name: gpt-4
    api_key: "{{ _api_key }}"
  no_log: true
"""

RETURN = r"""
seconds:
  description: Seconds until the model was listed.
  returned: success
  type: float
models:
  description: The model ids C(/v1/models) listed.
  returned: success
  type: list
  elements: str
log_tail:
  description: The container's last log lines.
  returned: failure
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.vllm_http import (
    SERVICE_ENDPOINT_ARGS,
    call,
    container_logs,
    container_state,
    shm_hint,
)


def wait_ready(module, p, clock=time.monotonic, sleep=time.sleep):
    base = f"http://{p['host']}:{p['port']}"
    start = clock()
    deadline = start + p["timeout"]
    first_restarts = None
    phase = "health"
    last = ""
    while True:
        state = container_state(module, p["container"])
        if state is None:
            return False, "container {} does not exist".format(p["container"]), None
        if first_restarts is None:
            first_restarts = state["RestartCount"]
        if not state.get("Running") or state.get("Restarting") or state["RestartCount"] > first_restarts:
            return False, (f"container {p['container']} stopped while starting (status {state.get('Status')}, "
                           f"exit code {state.get('ExitCode')}, restarts {state['RestartCount']})"), None
        if phase == "health":
            reply = call(base + "/health", timeout=5)
            last = f"GET /health: {reply.status or reply.error}"
            if reply.status == 200:
                phase = "models"
        if phase == "models":
            reply = call(base + "/v1/models", api_key=p["api_key"], timeout=10)
            data = reply.json() if reply.status == 200 else None
            ids = [m.get("id") for m in (data or {}).get("data", [])] if isinstance(data, dict) else []
            last = f"GET /v1/models: {reply.status or reply.error}, lists {ids}"
            if p["served_model_name"] in ids:
                return True, round(clock() - start, 1), ids
            if reply.status in (401, 403):
                return False, f"GET /v1/models answered {reply.status} with the configured API key", None
        if clock() >= deadline:
            return False, f"not ready after {p['timeout']}s (last: {last})", None
        sleep(p["interval"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            SERVICE_ENDPOINT_ARGS,
            container=dict(type="str", required=True),
            served_model_name=dict(type="str", required=True),
            timeout=dict(type="int", default=900),
            interval=dict(type="float", default=2),
            log_lines=dict(type="int", default=40),
        ),
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: readiness not probed")
    ok, detail, ids = wait_ready(module, module.params)
    if ok:
        module.exit_json(changed=False, seconds=detail, models=ids)
    tail = container_logs(module, module.params["container"], module.params["log_lines"])
    hint = shm_hint(tail)
    msg = "{} is not serving {}: {}".format(module.params["container"], module.params["served_model_name"], detail)
    if hint:
        msg += ". " + hint
    if tail:
        msg += ". Last log lines:\n" + "\n".join(tail[-15:])
    module.fail_json(msg=msg, log_tail=tail)


if __name__ == "__main__":
    main()
