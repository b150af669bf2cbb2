"""Rebuild the vLLM flag table (vllm_fleet/data) from the argparser of the local vLLM CPU image, or check
arguments against it:

    python -m vllm_fleet.sandbox.flag_table --regenerate
    python -m vllm_fleet.sandbox.flag_table -- --max-num-seqs 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import resources
from typing import Any

from vllm_fleet.sandbox.vllm_image import IMAGE
from vllm_fleet.versions import VLLM_VERSION
from vllm_fleet.vllm_flags import DATA_FILE, check_extra_args


def regenerate(image: str | None = None) -> dict[str, Any]:
    script = resources.files("vllm_fleet.data").joinpath("extract_vllm_flags.py").read_text()
    out = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "python3", image or IMAGE, "-"],
        input=script, capture_output=True, text=True, check=True,
    ).stdout
    table = json.loads(out)
    if table["vllm_version"] != VLLM_VERSION:
        raise RuntimeError(f"the image has vLLM {table['vllm_version']}, the pin is {VLLM_VERSION}")
    return dict(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--regenerate", action="store_true", help="rebuild the table from the vLLM CPU image")
    parser.add_argument("--image", default=None)
    parser.add_argument("check", nargs="*", help="arguments to check")
    ns = parser.parse_args()
    if ns.regenerate:
        table = regenerate(ns.image)
        target = resources.files("vllm_fleet.data").joinpath(DATA_FILE)
        with resources.as_file(target) as path:
            path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        print(f"{len(table['flags'])} flags of vLLM {table['vllm_version']} -> {DATA_FILE}")
        return
    bad = check_extra_args(ns.check)
    for index, problem, fix in bad:
        print(f"[{index}] {problem}: {fix}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
