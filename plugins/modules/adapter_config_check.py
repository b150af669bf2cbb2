#!/usr/bin/python
"""Check a hub LoRA adapter's adapter_config.json against its service before any host changes."""

DOCUMENTATION = r"""
---
module: adapter_config_check
short_description: Check a hub LoRA adapter's adapter_config.json against its service, before any host changes
description:
  - Reads only C(adapter_config.json) of an C(hf://) adapter at its revision (a few hundred bytes, through
    huggingface_hub, with the service's hub endpoint and token) and fails when it is not a LoRA adapter, when its
    rank is above the service's C(--max-lora-rank), or when its C(base_model_name_or_path) names another hub repo
    than the service's model.
  - C(deploy-vllm.yml) runs it on the controller in its validation play, so a mismatch stops the run before any
    host is touched. The weights stage checks the complete files again on the host before publishing them (the
    model's hidden size included), for every scheme.
  - When the hub cannot be reached from where it runs, it warns and leaves the check to the weights stage.
version_added: "0.1.0"
author: vllm-fleet
options:
  name:
    description: The adapter's weights entry name (C(<service>@<adapter>)), for messages.
    type: str
    required: true
  source:
    description: The adapter's source as the plan has it (C(uri), C(revision), C(endpoint)).
    type: dict
    required: true
  fit:
    description: What the adapter must fit - C(max_rank), and C(base_repo) when the service's model is a hub repo.
    type: dict
    required: true
  hf_token:
    description: The hub token, for a private repository.
    type: str
  timeout:
    description: Seconds for the request.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Check tiny-chat's adapter before any host changes
  vllmfleet.fleet.adapter_config_check:
    name: chat@chat-support
    source: {uri: "hf://acme/qwen-support-lora", revision: 3f1c2e0b}
    fit: {max_rank: 16, base_repo: Qwen/Qwen2.5-7B-Instruct}
    hf_token: "{{ lookup('vllmfleet.fleet.secret', {'env': 'HF_TOKEN'}) }}"
  delegate_to: localhost
"""

RETURN = r"""
checked:
  description: Whether adapter_config.json was read and checked here.
  returned: always
  type: bool
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.adapter_check import ADAPTER_CONFIG, config_problems
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_sources import hub_repo


def unreadable(module, display, exc):
    """Not readable from here (no route to the hub, a proxy, a timeout): the host checks it before publishing."""
    module.warn(f"adapter {module.params['name']} ({display}): {ADAPTER_CONFIG} could not be read from here "
                f"({type(exc).__name__}); the weights stage checks it on the host before publishing it")
    module.exit_json(changed=False, checked=False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            source=dict(type="dict", required=True),
            fit=dict(type="dict", required=True),
            hf_token=dict(type="str", no_log=True),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    source, fit = p["source"], p["fit"]
    display = source.get("display_uri") or source.get("uri", "?")
    if not str(source.get("uri", "")).startswith("hf://"):
        module.exit_json(changed=False, checked=False, msg=f"{display}: not a hub adapter; the weights stage checks it")
    repo, revision = hub_repo(source["uri"], source.get("revision"))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    os.environ.pop("HF_TOKEN", None)  # only the token the spec names
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = hf_hub_download(repo, ADAPTER_CONFIG, revision=revision, endpoint=source.get("endpoint") or None,
                                   token=p["hf_token"] or False, local_dir=tmp, etag_timeout=p["timeout"])
            with open(path, encoding="utf-8") as fh:
                config = json.load(fh)
    except LocalEntryNotFoundError as exc:  # the hub did not answer (it subclasses EntryNotFoundError)
        unreadable(module, display, exc)
    except EntryNotFoundError:
        module.fail_json(msg=f"adapter {p['name']} ({display}) has no {ADAPTER_CONFIG}: it is not a PEFT LoRA "
                             "adapter; point storage_uri at the directory PEFT's save_pretrained wrote")
    except RepositoryNotFoundError:
        module.fail_json(msg=f"adapter {p['name']} ({display}): the hub has no such repository or revision, or it "
                             "is private and the token does not open it; check storage_uri, revision and "
                             "storage.credentials.hf_token")
    except (HfHubHTTPError, OSError, ValueError) as exc:
        unreadable(module, display, exc)
    problems = config_problems(config if isinstance(config, dict) else {}, int(fit["max_rank"]),
                               fit.get("base_repo"))
    if problems:
        module.fail_json(msg=f"adapter {p['name']} ({display}) does not fit its service: it "
                             + "; it ".join(problems) + ". Nothing was changed on any host.")
    module.exit_json(changed=False, checked=True)


if __name__ == "__main__":
    main()
