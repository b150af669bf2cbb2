

DOCUMENTATION = r"""
---
module: daemon_json
short_description: Merge settings into Docker's daemon.json, keeping every key others put there
description:
  - Reads the existing file, deep-merges O(settings) over it, adds O(defaults) only where a key is absent and
    removes keys listed in O(remove_if_equal) when they hold the given value.
  - Nested objects (such as C(runtimes) or C(log-opts)) are merged key by key; lists and scalars are replaced.
  - The file is written only when the parsed content changes, so re-runs report no change.
  - An existing file that is not a JSON object fails the task and is left untouched.
version_added: "0.1.0"
author: vllm-fleet
options:
  path:
    description: The daemon.json file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: Keys to set; they win over existing values.
    type: dict
    default: {}
  defaults:
    description: Keys to set only where absent (an existing value, such as an existing C(nvidia) runtime, is kept).
    type: dict
    default: {}
  remove_if_equal:
    description: Keys to remove when their current value equals the value given here.
    type: dict
    default: {}
  mode:
    description: File mode when the file is written.
    type: str
    default: "0644"
  backup:
    description: Keep a timestamped copy of the previous file when it changes.
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Rotate container logs, keeping other daemon.json keys
  vllmfleet.fleet.daemon_json:
    settings:
      log-driver: json-file
      log-opts: {max-size: 100m, max-file: "3"}

- name: Register the NVIDIA runtime unless one is already configured
  vllmfleet.fleet.daemon_json:
    defaults:
      runtimes:
        nvidia: {path: nvidia-container-runtime, args: []}
"""

RETURN = r"""
config:
  description: The merged daemon.json content.
  returned: success
  type: dict
backup_file:
  description: The backup copy, when one was made.
  returned: changed and backup
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible_collections.vllmfleet.fleet.plugins.module_utils import daemon_json


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            settings=dict(type="dict", default={}),
            defaults=dict(type="dict", default={}),
            remove_if_equal=dict(type="dict", default={}),
            mode=dict(type="str", default="0644"),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    before_text = ""
    if os.path.exists(path):
        with open(path, "rb") as handle:
            before_text = to_native(handle.read())
    try:
        current = daemon_json.load(before_text)
    except daemon_json.DaemonJsonError as exc:
        module.fail_json(msg=f"{path}: {exc}")

    params = module.params
    merged = daemon_json.merge(current, params["settings"], params["defaults"], params["remove_if_equal"])
    changed = merged != current or (not os.path.exists(path) and bool(merged))
    result = dict(changed=changed, config=merged, path=path)
    if module._diff:
        result["diff"] = dict(before=before_text, after=daemon_json.dump(merged), before_header=path, after_header=path)

    if changed and not module.check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        if module.params["backup"] and os.path.exists(path):
            result["backup_file"] = module.backup_local(path)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(daemon_json.dump(merged)))
        os.chmod(tmp, int(module.params["mode"], 8))
        module.atomic_move(tmp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
