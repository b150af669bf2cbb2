"""Check, without reading any value, that every secret a VM spec references can be resolved."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from vllm_fleet.spec.errors import SpecIssue
from vllm_fleet.spec.model import Deployment


def unresolved_secrets(
    dep: Deployment, environ: Mapping[str, str], variables: Mapping[str, Any]
) -> Iterator[SpecIssue]:
    refs = [(f"services[{i}].{path}", ref) for i, svc in enumerate(dep.services)
            for path, ref in svc.secret_refs().items()]
    for block, at in ((dep.gateway, "gateway"), (dep.monitoring, "monitoring")):
        refs += [(f"{at}.{path}", ref) for path, ref in (block.secret_refs() if block is not None else {}).items()]
    for path, ref in refs:
        if ref.env is not None and not environ.get(ref.env):
            yield SpecIssue(path, f"{{env: {ref.env}}}",
                            f"environment variable {ref.env} is not set (or empty) on the controller",
                            f"export {ref.env} before the run, or reference an Ansible Vault variable")
        elif ref.vault is not None and variables.get(ref.vault) in (None, ""):
            yield SpecIssue(path, f"{{vault: {ref.vault}}}",
                            f"variable {ref.vault} is not defined for this host",
                            f"define {ref.vault} with `ansible-vault encrypt_string` in group_vars, "
                            "and pass --ask-vault-pass or --vault-password-file")
