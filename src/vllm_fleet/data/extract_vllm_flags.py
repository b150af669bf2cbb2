"""Dump the option table of vLLM's OpenAI server argparser as JSON. Runs INSIDE the vLLM image.

Regenerate the checked-in table with `python -m vllm_fleet.sandbox.flag_table --regenerate` (uses the local
vLLM CPU image, `python -m vllm_fleet.sandbox.vllm_image`).
"""

import contextlib
import json
import sys

try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:  # older layouts
    from vllm.utils import FlexibleArgumentParser

import vllm

try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:  # vLLM before the launchers package
    from vllm.entrypoints.openai.cli_args import make_arg_parser

parser = make_arg_parser(FlexibleArgumentParser())
flags = {}
for action in parser._actions:
    if not action.option_strings or action.dest == "help":
        continue
    entry = {"dest": action.dest, "takes_value": action.nargs != 0}
    if action.choices is not None:
        with contextlib.suppress(TypeError):
            entry["choices"] = sorted({str(c) for c in action.choices})
    for option in action.option_strings:
        flags[option] = entry
json.dump({"vllm_version": vllm.__version__, "flags": dict(sorted(flags.items()))}, sys.stdout, indent=1,
          sort_keys=True)
