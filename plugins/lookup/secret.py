"""Resolve a vllm-fleet secret reference on the controller."""

DOCUMENTATION = r"""
---
name: secret
short_description: "Resolve a vllm-fleet secret reference ({env: NAME} or {vault: variable})"
description:
  - Returns the secret a spec reference points at, read on the controller.
  - "C({env: NAME}) reads the controller's environment; C({vault: name}) reads an inventory or extra
    variable, typically one encrypted with Ansible Vault."
  - Fails with the reference (never a value) when the secret is missing or empty.
  - "Use it only in tasks with C(no_log: true)."
version_added: "0.1.0"
author: vllm-fleet
options:
  _terms:
    description: One or more secret references (mappings).
    required: true
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Start the server with its key
  no_log: true
  ansible.builtin.set_fact:
    _api_key: "{{ lookup('vllmfleet.fleet.secret', {'env': 'VLLM_API_KEY'}) }}"
"""

RETURN = r"""
_raw:
  description: The secret values, in the order given.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        values = []
        for ref in terms:
            if not isinstance(ref, dict) or len(ref) != 1:
                raise AnsibleLookupError("a secret reference is a mapping with one key: env or vault")
            kind, name = next(iter(ref.items()))
            if kind == "env":
                value = os.environ.get(name, "")
                where = f"environment variable {name} on the controller"
            elif kind == "vault":
                value = (variables or {}).get(name, "")
                if value:
                    value = self._templar.template(value)
                where = f"variable {name} (Ansible Vault)"
            else:
                raise AnsibleLookupError(f"secret reference kind {kind!r} cannot be resolved on a VM; use env or vault")
            if not value:
                raise AnsibleLookupError(f"the secret {where} is not set or empty")
            values.append(str(value))
        return values
