"""Tiny models for the embedded default and the end-to-end tests, generated inside the vLLM image.

The controller needs no torch/transformers: the generator script runs in a throw-away container of the
vLLM CPU image, which has them, and writes into a bind-mounted cache directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from vllm_fleet.sandbox.vllm_image import IMAGE, cache_dir
from vllm_fleet.versions import PEFT_WHEELS

MODELS = ("tiny-chat", "tiny-embed", "tiny-rerank")
# LoRA adapters on the tiny models: tiny-chat-lora on tiny-chat.
ADAPTERS = ("tiny-chat-lora",)
GENERATOR_VERSION = "4"
# What tiny-chat and its adapter are trained to answer (the generator checks it; tests and the demo read it).
LESSONS = "tiny_chat_lessons.json"


def lessons() -> dict[str, list[dict[str, str]]]:
    """{"model": [...], "adapter": [...]}: each a list of {"user": question, "assistant": the greedy answer}."""
    import json

    return dict(json.loads(resources.files("vllm_fleet.sandbox").joinpath(LESSONS).read_text()))


def models_dir() -> Path:
    return cache_dir().parent / f"tiny-models-v{GENERATOR_VERSION}"


def peft_wheels(log=print) -> Path:
    """PEFT_WHEELS as wheels in a cache directory (downloaded once on this machine; the container has no network)."""
    wheels = cache_dir().parent / ("peft-wheels-" + "-".join(p.replace("==", "") for p in PEFT_WHEELS))
    if len(list(wheels.glob("*.whl"))) == len(PEFT_WHEELS):
        return wheels
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"pip download {' '.join(PEFT_WHEELS)} into {wheels}")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(wheels), *PEFT_WHEELS], check=True)
    return wheels


def generate(image: str = IMAGE, out: Path | None = None, log=print) -> Path:
    """Return the directory holding MODELS, generating them once (a few seconds)."""
    out = (out or models_dir()).resolve()
    if all((out / name / "config.json").exists() for name in MODELS) and \
            all((out / name / "adapter_config.json").exists() for name in ADAPTERS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    script = resources.files("vllm_fleet.sandbox").joinpath("tiny_models_gen.py").read_text()
    wheels = peft_wheels(log)
    log(f"generating tiny models into {out} (tiny-chat and its adapter learn their lessons: about a minute)")
    with resources.as_file(resources.files("vllm_fleet.sandbox").joinpath(LESSONS)) as taught:
        made = subprocess.run(
            ["docker", "run", "--rm", "-i", "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}",
             "-e", "HOME=/tmp", "-v", f"{out}:/out", "-v", f"{wheels}:/wheels:ro",
             "-v", f"{taught}:/lessons.json:ro", "--entrypoint", "python3", image, "-", "/out", "/wheels",
             "/lessons.json"],
            input=script, text=True, check=False, capture_output=True,
        )
    if made.returncode != 0:
        raise RuntimeError(f"tiny model generation failed:\n{made.stdout[-2000:]}{made.stderr[-4000:]}")
    missing = [n for n in MODELS if not (out / n / "config.json").exists()]
    missing += [n for n in ADAPTERS if not (out / n / "adapter_config.json").exists()]
    if missing:
        raise RuntimeError(f"tiny model generation wrote no config for {', '.join(missing)}")
    return out


def main() -> None:
    print(generate(log=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":
    main()
