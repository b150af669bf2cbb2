DOCUMENTATION = r"""
---
module: repositories_reachable
short_description: Check, before anything changes, that the host reaches every repository the run installs from
description:
  - Asks each URL once, from the host, with the same HTTP client as M(ansible.builtin.get_url) (the proxy
    environment and the host's CA store apply alike), and fails listing every one that did not answer.
  - Each entry names the variable that fixes it (a mirror, another source, or a switch that turns the part off),
    so a run on a host behind a mirror or with no route out stops at once, before any host changes, instead of
    halfway through a stage.
  - The roles list their own repositories (C(tasks_from=repositories) of the docker, nvidia_driver,
    nvidia_container_toolkit and monitoring roles); playbooks/deploy-vllm.yml runs this right after it reached every
    host.
version_added: "0.1.0"
author: vllm-fleet
options:
  repositories:
    description: What to reach.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - The first URL the role fetches from the repository (usually its signing key).
          - A user and password in it are never printed or returned.
        type: str
        required: true
      what:
        description: The repository, in words, for the message.
        type: str
        required: true
      fix:
        description: The variables that fix an unreachable repository.
        type: str
        required: true
  timeout:
    description: Seconds to wait for each answer.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - It changes nothing, so check mode runs it as well.
"""

EXAMPLES = r"""
- name: Reach Grafana's repository before anything changes
  vllmfleet.fleet.repositories_reachable:
    repositories:
      - url: https://apt.grafana.com/gpg.key
        what: Grafana's apt repository
        fix: set monitoring_grafana_apt_url and monitoring_grafana_apt_key_url to a mirror, or monitoring_grafana false
"""

RETURN = r"""
reached:
  description: The URLs that answered.
  returned: always
  type: list
  elements: str
unreachable:
  description: Each repository that did not answer, with why and the fix.
  returned: always
  type: list
  elements: dict
"""

from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url


def shown(url):
    """The URL as it may be printed: a mirror's user and password (https://user:token@mirror/...) are replaced."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def unreachable_message(problems):
    """One message naming every repository the host did not reach, why, and the variables that fix it."""
    lines = [f"{len(problems)} repository(ies) this run installs from cannot be reached from this host; nothing "
             "was changed on any host:"]
    for p in problems:
        lines.append(f"  - {p['what']} ({shown(p['url'])}): {p['error']}. Fix: {p['fix']}")
    return "\n".join(lines)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repositories=dict(type="list", elements="dict", required=True, options=dict(
                url=dict(type="str", required=True),
                what=dict(type="str", required=True),
                fix=dict(type="str", required=True),
            )),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    reached, problems = [], []
    seen = set()
    for repo in module.params["repositories"]:
        if repo["url"] in seen:
            continue
        seen.add(repo["url"])
        response, info = fetch_url(module, repo["url"], method="GET", timeout=module.params["timeout"])
        status = int(info.get("status") or -1)
        if response is not None:
            response.close()
        if 200 <= status < 400:
            reached.append(shown(repo["url"]))
        else:
            error = f"HTTP {status}" if status > 0 else str(info.get("msg") or "no answer")
            problems.append(dict(repo, url=shown(repo["url"]), error=error.replace(repo["url"], shown(repo["url"]))))
    result = dict(changed=False, reached=reached, unreachable=problems)
    if problems:
        module.fail_json(msg=unreachable_message(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
