#!/usr/bin/python
"""Remove old weight revisions of one service once the new one serves."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_weights_prune
short_description: Keep the newest completed weight revisions of a service and remove the rest
description:
  - Removes completed revision directories under O(models_root)/O(service)/ beyond the O(keep) newest, never the
    O(active) one, and leftover staging directories of other revisions.
  - Call it only after the service is healthy on its new revision.
version_added: "0.1.0"
author: vllm-fleet
extends_documentation_fragment:
  - vllmfleet.fleet.weights_store
options:
  keep:
    description: How many completed revisions to keep, the active one included.
    type: int
    default: 2
  active:
    description: Revision the service runs now; it is always kept.
    type: str
"""

EXAMPLES = r"""
- name: Keep the active revision and one older
  vllmfleet.fleet.model_weights_prune:
    service: chat
    active: "{{ model_weights_paths.chat.revision }}"
    keep: 2
"""

RETURN = r"""
removed:
  description: Directory names removed.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vllmfleet.fleet.plugins.module_utils.weights_fetch import (
    WEIGHTS_STORE_ARGS,
    WeightsError,
    prune,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            WEIGHTS_STORE_ARGS,
            keep=dict(type="int", default=2),
            active=dict(type="str"),
        ),
        supports_check_mode=False,
    )
    p = module.params
    if p["keep"] < 1:
        module.fail_json(msg="keep must be at least 1")
    try:
        removed = prune(p["models_root"], p["service"], p["keep"], p["active"])
    except (WeightsError, OSError) as exc:
        module.fail_json(msg=f"service {p['service']}: {exc}")
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
