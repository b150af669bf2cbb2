"""Benchmark: `vllm-fleet bundle create` and `verify` on a synthetic model and the real vLLM CPU image.

A fleet of one host (planned only: nothing is deployed) serving a file:// model of --model-bytes random bytes with
the test world's vLLM CPU image. Prints the bundle's size by kind of item, the wall time of `create` and of `verify`,
then changes one small file of the model and prints `create --since` against the first: its size and time, as
ratios of the full bundle's. Signed with a GnuPG key made for the run. The deploy from a bundle is not built yet
(issue 24), so no deploy time is printed.

    python benchmarks/bundle.py [--model-bytes 1073741824] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vllm_fleet.sandbox import aptcache  # noqa: E402
from vllm_fleet.sandbox.inventory import write_inventory  # noqa: E402
from vllm_fleet.sandbox.signing import forget, signing_key  # noqa: E402
from vllm_fleet.sandbox.vllm_image import ensure_vllm_image  # noqa: E402
from vllm_fleet.vm.planning.inventory import check_inventory  # noqa: E402
from vllm_fleet.vm.running.bundle import create, verify  # noqa: E402


def synthetic_model(path: Path, size: int) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with (path / "model.safetensors").open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 << 20))
            f.write(chunk)
            left -= len(chunk)


def sizes(manifest: object) -> str:
    by: Counter[str] = Counter()
    for item in manifest.items:  # type: ignore[attr-defined]
        by[item.kind] += item.size
    return ", ".join(f"{kind} {size / 1e6:,.1f} MB" for kind, size in sorted(by.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-bytes", type=int, default=1 << 30)
    ap.add_argument("--work", type=Path, default=None)
    ns = ap.parse_args()
    work = ns.work or Path(tempfile.mkdtemp(prefix="vllm-fleet-bundle-bench-"))
    home = Path(tempfile.mkdtemp(prefix="vfb"))
    aptcache.ensure_apt_cache()
    os.environ["http_proxy"] = aptcache.url()  # Debian's packages through the machine's apt cache
    try:
        image, _ = ensure_vllm_image()
        key, public = signing_key(home, "vllm-fleet bundle benchmark <bench@example.invalid>")
        synthetic_model(work / "model", ns.model_bytes)
        inv = write_inventory(work / "hosts.yml", {"h1": {"ansible_host": "10.0.0.1"}}, {"services": [
            {"name": "chat", "storage_uri": f"file://{work / 'model'}", "accelerator": "cpu", "gpus": 0,
             "image": image}]})
        plan = check_inventory(inv, secrets=False)
        full = work / "full.bundle"
        started = time.monotonic()
        manifest, _ = create(plan, full, key=key, gnupg_home=home, log=lambda _: None)
        made = time.monotonic() - started
        started = time.monotonic()
        verify(full, public, plan=plan)
        checked = time.monotonic() - started
        print(f"bundle: {full.stat().st_size / 1e6:,.1f} MB in {len(manifest.items)} items ({sizes(manifest)})")
        print(f"create {made:.1f} s, verify {checked:.1f} s (verify/create {checked / made:.2f})")
        (work / "model" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "v": 2}))
        delta = work / "delta.bundle"
        started = time.monotonic()
        _, staged = create(plan, delta, key=key, gnupg_home=home, since=full, since_key=public, log=lambda _: None)
        again = time.monotonic() - started
        written = [s.item for s in staged if s.file is not None]
        ratio = delta.stat().st_size / full.stat().st_size
        print(f"since: {delta.stat().st_size / 1e3:,.1f} kB, {len(written)} of {len(staged)} items written "
              f"({', '.join(i.path for i in written)}); size since/full {ratio:.5f}, "
              f"time since/full {again / made:.2f}")
    finally:
        forget(home)
        shutil.rmtree(home, ignore_errors=True)
        if ns.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
