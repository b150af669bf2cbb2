#!/usr/bin/python
"""Fetch one service's model weights to <models_root>/<service>/<revision>/ atomically."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_weights
short_description: Fetch model weights from a storage URI into a completed, verified revision directory
description:
  - Resolves the storage URI of one service (C(hf://), C(ms://), C(s3://), C(gs://), C(https://), C(file://)) to a
    revision with metadata requests only, and returns at once when C(<models_root>/<service>/<revision>/) is
    already complete (no bytes are read from the origin).
  - Otherwise checks free disk space before any byte is fetched, downloads into a staging directory on the same
    filesystem (resuming an earlier interrupted transfer), verifies sizes, sha256 digests the origin or the spec
    gives, C(config.json) and safetensors headers, writes a manifest, and renames the directory into place.
  - C(file://) paths are verified in place and never copied.
  - URIs mean what they mean to KServe's storage initializer.
  - Runs with the Python of the fetch venv (huggingface_hub, boto3, requests).
version_added: "0.1.0"
author: vllm-fleet
extends_documentation_fragment:
  - vllmfleet.fleet.weights_store
options:
  source:
    description: The C(source) mapping of a service in C(vllm_fleet_plan).
    type: dict
    required: true
  state:
    description:
      - C(present) fetches when needed.
      - C(check) only reports whether the revision is complete here (RV(present)); it fetches nothing.
    type: str
    choices: [present, check]
    default: present
  revision:
    description: The revision expected (peer copies and C(state=check) with a known revision).
    type: str
  peer_url:
    description: Copy a completed revision from this URL of another host instead of the origin.
    type: str
  require_config:
    description: Fail unless the model directory has a top-level C(config.json).
    type: bool
    default: true
  copy_local:
    description:
      - For a C(file://) source, copy its files into I(models_root) (verified, atomic, resumable, one revision per
        content) instead of checking the directory in place. The weights stage copies LoRA adapters, which must lie
        in the directory their service's container mounts.
    type: bool
    default: false
  adapter_fit:
    description:
      - For a LoRA adapter, what its files must fit before they are published (and what an already published
        revision must still fit) - C(max_rank), the service's C(--max-lora-rank); C(base_repo), the hub repo the
        service serves, compared with the adapter's C(base_model_name_or_path); C(base_dir), the service's model
        directory on this host, whose hidden size the adapter's projections must take.
      - The files are refused, and nothing of them published, when the adapter is not a PEFT LoRA adapter or does
        not fit.
    type: dict
  verify_existing:
    description: How to check a revision already on disk; C(sha256) re-reads every file.
    type: str
    choices: [size, sha256]
    default: size
  reserve_mib:
    description: Free space to leave on the filesystem besides the weights.
    type: int
    default: 512
  ca_bundle:
    description:
      - PEM file on the host that TLS origins (https, S3 endpoints, hub mirrors) are verified against.
      - Unset, the host's trust store is used (C(/etc/ssl/certs/ca-certificates.crt) and its RHEL equivalent),
        not the client libraries' bundled CA lists, so a CA the host trusts is trusted here too.
    type: path
  hf_token:
    description: Hugging Face token for gated or private repositories.
    type: str
  modelscope_token:
    description: ModelScope token.
    type: str
  s3_access_key_id:
    description: S3 access key id.
    type: str
  s3_secret_access_key:
    description: S3 secret access key.
    type: str
  s3_session_token:
    description: S3 session token.
    type: str
  gcs_credentials:
    description: Content of a Google service-account JSON key.
    type: str
notes:
  - Credentials are module parameters marked no_log; they travel in the module payload, never on a command line,
    and are never written to the manifest.
"""

EXAMPLES = r"""
- name: Fetch the weights of one planned service
  vllmfleet.fleet.model_weights:
    service: "{{ svc.name }}"
    source: "{{ svc.source }}"
    models_root: /var/lib/vllm-fleet/models
  vars:
    ansible_python_interpreter: /opt/vllm-fleet/fetch-venv/bin/python
"""

RETURN = r"""
path:
  description: Completed model directory to give vLLM (C(--model)); the C(file://) path itself for local URIs.
  type: str
  returned: when present
revision:
  description: Revision directory name (a hub commit, or a fingerprint of ETag/Last-Modified/size).
  type: str
  returned: always
manifest:
  description: Path of the manifest (source display URI, revision, files, sizes, sha256).
  type: str
  returned: when present and not file://
present:
  description: Whether the revision is complete on this host.
  type: bool
  returned: always
bytes_downloaded:
  description: Bytes read from the origin (or peer) by this run.
  type: int
  returned: when fetched
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import WEIGHTS_STORE_ARGS, WeightsError
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_run import ensure

SECRET_OPTIONS = ("hf_token", "modelscope_token", "s3_access_key_id", "s3_secret_access_key", "s3_session_token",
                  "gcs_credentials")


def main():
    spec = dict(
        WEIGHTS_STORE_ARGS,
        source=dict(type="dict", required=True),
        state=dict(type="str", choices=["present", "check"], default="present"),
        revision=dict(type="str"),
        peer_url=dict(type="str"),
        require_config=dict(type="bool", default=True),
        copy_local=dict(type="bool", default=False),
        adapter_fit=dict(type="dict"),
        verify_existing=dict(type="str", choices=["size", "sha256"], default="size"),
        reserve_mib=dict(type="int", default=512),
        ca_bundle=dict(type="path"),
    )
    spec.update({name: dict(type="str", no_log=True) for name in SECRET_OPTIONS})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    source = dict(p["source"], ca_bundle=p["ca_bundle"])
    display = source.get("display_uri") or source.get("uri", "?")
    if not source.get("uri"):
        module.fail_json(msg=f"service {p['service']}: source.uri is missing")
    creds = {name: p[name] for name in SECRET_OPTIONS}
    # Libraries that also read the environment (AWS_*, HF_TOKEN) must not pick up a stray value from the host.
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_PROFILE"):
        os.environ.pop(var, None)
    try:
        result = ensure(
            p["models_root"], p["service"], source, creds,
            require_config=p["require_config"], deep_verify=p["verify_existing"] == "sha256",
            reserve_bytes=p["reserve_mib"] << 20, peer_url=p["peer_url"], peer_revision=p["revision"],
            check_only=p["state"] == "check" or module.check_mode,
            log=lambda msg: module.log(f"{display}: {msg}"),
            copy_local=p["copy_local"], fit=p["adapter_fit"],
        )
    except WeightsError as exc:
        module.fail_json(msg=_scrub(f"service {p['service']} ({display}): {exc}", creds))
    except Exception as exc:  # a library error must still name the URI
        module.fail_json(msg=_scrub(f"service {p['service']} ({display}): {type(exc).__name__}: {exc}", creds))
    module.exit_json(**result)


def _scrub(text, creds):
    for value in creds.values():
        if value:
            text = text.replace(value, "********")
    return text


if __name__ == "__main__":
    main()
