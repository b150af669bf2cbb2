"""HTTP and container helpers shared by the vllm_ready and vllm_smoke modules (stdlib only: runs on hosts)."""

import json
import socket

try:
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen
except ImportError:  # pragma: no cover - Python 2 is not supported on hosts
    raise

# The options of every module that talks to a running vLLM service; documented once in the doc fragment
# vllmfleet.fleet.service_endpoint.
SERVICE_ENDPOINT_ARGS = dict(
    port=dict(type="int", required=True),
    host=dict(type="str", default="127.0.0.1"),
    api_key=dict(type="str", no_log=True),
)

SHM_MARKERS = ("/dev/shm", "shm_size", "Insufficient space in /dev/shm")


class Reply:
    def __init__(self, status, body, error=None):
        self.status = status
        self.body = body
        self.error = error

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def call(url, method="GET", payload=None, api_key=None, timeout=30.0):
    """One HTTP request; never raises for HTTP or connection errors (status 0 = no connection)."""
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"only http(s) URLs are probed: {url}")
    req = Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked above
    try:
        resp = urlopen(req, timeout=timeout)  # noqa: S310
        return Reply(resp.status, resp.read().decode("utf-8", "replace"))
    except HTTPError as exc:
        return Reply(exc.code, exc.read().decode("utf-8", "replace"))
    except (URLError, socket.timeout, ConnectionError, OSError) as exc:
        return Reply(0, "", str(getattr(exc, "reason", exc)))


def container_state(module, name, docker="docker"):
    """(state dict or None) from `docker inspect`."""
    rc, out, _ = module.run_command([docker, "inspect", "--format", "{{json .State}}|{{.RestartCount}}", name])
    if rc != 0:
        return None
    state_json, _, restarts = out.strip().rpartition("|")
    try:
        state = json.loads(state_json)
    except ValueError:
        return None
    state["RestartCount"] = int(restarts or 0)
    return state


def container_logs(module, name, lines=40, docker="docker"):
    rc, out, err = module.run_command([docker, "logs", "--tail", str(lines), name])
    if rc != 0:
        return []
    return [line for line in (out + err).splitlines() if line.strip()][-lines:]


def shm_hint(log_lines):
    """A clear message when vLLM refused to start for lack of shared memory, else None."""
    for line in log_lines:
        if any(marker in line for marker in SHM_MARKERS):
            return ("vLLM needs more shared memory than the container has (" + line.strip()[-200:] + "); raise "
                    "the service's shm_size (e.g. 16g on GPU hosts), or give the host a larger /dev/shm when "
                    "vllm_server_ipc_host is true")
    return None
