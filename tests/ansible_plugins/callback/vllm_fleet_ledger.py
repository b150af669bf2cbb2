"""Test-world callback: records every playbook run in the cost ledger (vllm_fleet.sandbox.ledger).

Enabled by tests/conftest.py for every ansible-playbook the tests start (directly, through the CLI's
ansible-runner or through Molecule), through ANSIBLE_CALLBACK_PLUGINS and ANSIBLE_CALLBACKS_ENABLED. It records
nothing when $VLLM_FLEET_LEDGER is unset, and nothing of a play's data: only the playbook's file name.
"""

from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

from vllm_fleet.sandbox import ledger

DOCUMENTATION = """
name: vllm_fleet_ledger
type: aggregate
short_description: counts playbook runs for the test suite's cost ledger
description:
  - Appends one JSON line per playbook run to the file named by VLLM_FLEET_LEDGER, with the test that ran it.
requirements:
  - enabled in callbacks_enabled
"""

# Runs of the deploy playbook are the ledger's "deploys"; every other playbook (the day-2 playbooks, a role's
# Molecule converge and verify, the tests' own playbooks) is counted apart.
DEPLOY_PLAYBOOK = "deploy-vllm.yml"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vllm_fleet_ledger"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook: object) -> None:
        name = os.path.basename(getattr(playbook, "_file_name", "") or "")
        ledger.record("deploys" if name == DEPLOY_PLAYBOOK else "playbooks", 1, playbook=name)
