"""Package and repository selection of the three roles, rendered with Ansible's own templating for OSes that cannot
run here (Ubuntu 22.04/24.04, Rocky 9, arm64) and for Debian 12. Vars are loaded the way the roles load them:
defaults, then the first_found OS file (distribution, then OS family), then vars/main.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = Path(__file__).resolve().parents[2] / "roles"

FACTS = {
    "ubuntu2204": {"distribution": "Ubuntu", "os_family": "Debian", "distribution_version": "22.04",
                   "distribution_major_version": "22", "distribution_release": "jammy", "architecture": "x86_64",
                   "kernel": "5.15.0-144-generic"},
    "ubuntu2404": {"distribution": "Ubuntu", "os_family": "Debian", "distribution_version": "24.04",
                   "distribution_major_version": "24", "distribution_release": "noble", "architecture": "x86_64",
                   "kernel": "6.8.0-79-generic"},
    "ubuntu2404-arm": {"distribution": "Ubuntu", "os_family": "Debian", "distribution_version": "24.04",
                       "distribution_major_version": "24", "distribution_release": "noble",
                       "architecture": "aarch64", "kernel": "6.8.0-79-generic-64k"},
    "debian12": {"distribution": "Debian", "os_family": "Debian", "distribution_version": "12.12",
                 "distribution_major_version": "12", "distribution_release": "bookworm", "architecture": "x86_64",
                 "kernel": "6.1.0-40-amd64"},
    "rocky9": {"distribution": "Rocky", "os_family": "RedHat", "distribution_version": "9.6",
               "distribution_major_version": "9", "distribution_release": "Blue Onyx", "architecture": "x86_64",
               "kernel": "5.14.0-570.17.1.el9_6.x86_64"},
}


def _trust(value: Any) -> Any:
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


class Rendered:
    def __init__(self, role: str, host: str, **overrides: Any) -> None:
        self.role = ROLES / role
        loader = DataLoader()
        facts = FACTS[host]
        variables: dict[str, Any] = {}
        variables.update(_trust(loader.load_from_file(str(self.role / "defaults" / "main.yml"))))
        for candidate in (facts["distribution"], facts["os_family"]):
            path = self.role / "vars" / f"{candidate}.yml"
            if path.exists():
                variables.update(_trust(loader.load_from_file(str(path))))
                break
        variables.update(_trust(loader.load_from_file(str(self.role / "vars" / "main.yml"))))
        variables.update(_trust(overrides))
        variables["ansible_facts"] = facts
        variables["ansible_managed"] = "managed"
        self.templar = Templar(loader=loader, variables=variables)

    def __getitem__(self, name: str) -> Any:
        return self.templar.template(trust_as_template("{{ " + name + " }}"))

    def template(self, name: str) -> str:
        return self.templar.template(trust_as_template((self.role / "templates" / name).read_text()))


# --- nvidia_driver ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("host", "repo"),
    [
        ("ubuntu2204", "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64"),
        ("ubuntu2404", "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"),
        ("ubuntu2404-arm", "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/sbsa"),
        ("debian12", "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64"),
        ("rocky9", "https://developer.download.nvidia.com/compute/cuda/repos/rhel9/x86_64"),
    ],
)
def test_driver_repository_per_os(host, repo):
    r = Rendered("nvidia_driver", host)
    assert r["_nvidia_driver_repo_url"] == repo
    key = "D42D0685.pub" if host == "rocky9" else "3bf863cc.pub"
    assert r["_nvidia_driver_repo_key"] == f"{repo}/{key}"


def test_driver_mirror_and_key_override():
    r = Rendered("nvidia_driver", "ubuntu2204", nvidia_driver_repo_base_url="http://mirror.local/cuda/repos/",
                 nvidia_driver_repo_key_url="http://mirror.local/keys/cuda.asc")
    assert r["_nvidia_driver_repo_url"] == "http://mirror.local/cuda/repos/ubuntu2204/x86_64"
    assert r["_nvidia_driver_repo_key"] == "http://mirror.local/keys/cuda.asc"
    assert "URIs: http://mirror.local/cuda/repos/ubuntu2204/x86_64/" in r.template("nvidia-cuda.sources.j2")


@pytest.mark.parametrize(
    ("host", "overrides", "driver", "fabric_manager"),
    [
        ("ubuntu2404", {"nvidia_driver_branch": 580}, ["nvidia-open-580"], ["nvidia-fabricmanager-580"]),
        ("ubuntu2204", {"nvidia_driver_flavor": "proprietary"}, ["cuda-drivers-570"], ["nvidia-fabricmanager-570"]),
        ("ubuntu2204", {"nvidia_driver_version": "570.172.08"}, ["nvidia-open-570=570.172.08-*"],
         ["nvidia-fabricmanager-570=570.172.08-*"]),
        ("ubuntu2404", {"nvidia_driver_source": "distribution", "nvidia_driver_branch": 570},
         ["nvidia-driver-570-server-open"], ["nvidia-fabricmanager-570"]),
        ("ubuntu2204", {"nvidia_driver_source": "distribution", "nvidia_driver_flavor": "proprietary",
                        "nvidia_driver_version": "580.82.07"},
         ["nvidia-driver-580-server=580.82.07-*"], ["nvidia-fabricmanager-580=580.82.07-*"]),
        ("debian12", {}, ["nvidia-open-570"], ["nvidia-fabricmanager-570"]),
        ("rocky9", {}, ["@nvidia-driver:570-open"], ["nvidia-fabric-manager"]),
        ("rocky9", {"nvidia_driver_flavor": "proprietary", "nvidia_driver_branch": 580},
         ["@nvidia-driver:580-dkms"], ["nvidia-fabric-manager"]),
        ("rocky9", {"nvidia_driver_version": "570.172.08"}, ["@nvidia-driver:570-open"],
         ["nvidia-fabric-manager-570.172.08"]),
        ("rocky9", {"nvidia_driver_source": "distribution"}, [], []),
    ],
)
def test_driver_packages(host, overrides, driver, fabric_manager):
    r = Rendered("nvidia_driver", host, **overrides)
    assert r["_nvidia_driver_packages"] == driver
    assert r["_nvidia_driver_fabric_manager_packages"] == fabric_manager


def test_driver_kernel_headers_follow_the_running_kernel():
    assert Rendered("nvidia_driver", "ubuntu2404")["_nvidia_driver_kernel_headers"] == [
        "linux-headers-6.8.0-79-generic"]
    assert Rendered("nvidia_driver", "rocky9")["_nvidia_driver_kernel_headers"] == [
        "kernel-devel-5.14.0-570.17.1.el9_6.x86_64", "kernel-headers-5.14.0-570.17.1.el9_6.x86_64"]


def test_driver_exact_version_apt_pin():
    pref = Rendered("nvidia_driver", "ubuntu2404", nvidia_driver_version="570.172.08").template("nvidia-driver.pref.j2")
    assert "Pin: version 570.172.08-*" in pref
    assert "Pin-Priority: 1001" in pref


# --- nvidia_container_toolkit ----------------------------------------------------------------------------------

TOOLKIT = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
           "libnvidia-container1"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("ubuntu2204", "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"),
        ("ubuntu2404-arm", "https://nvidia.github.io/libnvidia-container/stable/deb/arm64"),
        ("debian12", "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"),
    ],
)
def test_toolkit_apt_repository(host, url):
    r = Rendered("nvidia_container_toolkit", host)
    assert r["_nvidia_container_toolkit_apt_url"] == url
    assert r["_nvidia_container_toolkit_key"] == "https://nvidia.github.io/libnvidia-container/gpgkey"
    source = r.template("nvidia-container-toolkit.sources.j2")
    assert f"URIs: {url}" in source
    assert "Suites: /" in source


def test_toolkit_rpm_repository_and_mirror():
    r = Rendered("nvidia_container_toolkit", "rocky9", nvidia_container_toolkit_repo_base_url="https://m.local/lnc")
    assert r["_nvidia_container_toolkit_rpm_url"] == "https://m.local/lnc/stable/rpm/$basearch"
    assert r["_nvidia_container_toolkit_key"] == "https://m.local/lnc/gpgkey"


@pytest.mark.parametrize(
    ("host", "version", "expected"),
    [
        ("ubuntu2404", "", TOOLKIT),
        ("ubuntu2404", "1.17.8-1", [f"{p}=1.17.8-1" for p in TOOLKIT]),
        ("rocky9", "1.17.8-1", [f"{p}-1.17.8-1" for p in TOOLKIT]),
    ],
)
def test_toolkit_one_pin_for_all_packages(host, version, expected):
    r = Rendered("nvidia_container_toolkit", host, nvidia_container_toolkit_version=version)
    assert r["_nvidia_container_toolkit_pinned"] == expected


# --- docker ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("host", "uri", "suite", "arch"),
    [
        ("ubuntu2204", "https://download.docker.com/linux/ubuntu", "jammy", "amd64"),
        ("ubuntu2404-arm", "https://download.docker.com/linux/ubuntu", "noble", "arm64"),
        ("debian12", "https://download.docker.com/linux/debian", "bookworm", "amd64"),
    ],
)
def test_docker_apt_repository(host, uri, suite, arch):
    r = Rendered("docker", host)
    source = r.template("docker.sources.j2")
    assert f"URIs: {uri}" in source
    assert f"Suites: {suite}" in source
    assert f"Architectures: {arch}" in source
    assert r["_docker_repo_key"] == f"{uri}/gpg"


def test_docker_rocky_and_mirror():
    r = Rendered("docker", "rocky9", docker_repo_base_url="https://mirrors.tuna.tsinghua.edu.cn/docker-ce/linux")
    assert r["_docker_repo_url"] == "https://mirrors.tuna.tsinghua.edu.cn/docker-ce/linux/rhel"
    assert r["_docker_repo_key"] == "https://mirrors.tuna.tsinghua.edu.cn/docker-ce/linux/rhel/gpg"


@pytest.mark.parametrize(
    ("host", "overrides", "expected"),
    [
        ("ubuntu2404", {}, ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin",
                            "docker-compose-plugin"]),
        ("ubuntu2204", {"docker_version": "28.3.3", "docker_install_compose": False},
         ["docker-ce=5:28.3.3*", "docker-ce-cli=5:28.3.3*", "containerd.io", "docker-buildx-plugin"]),
        ("rocky9", {"docker_version": "28.3.3"},
         ["docker-ce-28.3.3", "docker-ce-cli-28.3.3", "containerd.io", "docker-buildx-plugin",
          "docker-compose-plugin"]),
        ("ubuntu2404", {"docker_source": "distribution"}, ["docker.io", "docker-compose-v2"]),
        ("debian12", {"docker_source": "distribution", "docker_install_compose": False}, ["docker.io"]),
        ("rocky9", {"docker_source": "distribution"}, []),
    ],
)
def test_docker_packages(host, overrides, expected):
    assert Rendered("docker", host, **overrides)["_docker_packages"] == expected


def test_docker_daemon_settings_only_what_was_asked():
    r = Rendered("docker", "debian12", docker_registry_mirrors=["https://docker.m.daocloud.io"],
                 docker_data_root="/data/docker", docker_daemon_options={"log-opts": {"compress": "true"}})
    assert r["_docker_daemon_settings"] == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "100m", "max-file": "3", "compress": "true"},
        "data-root": "/data/docker",
        "registry-mirrors": ["https://docker.m.daocloud.io"],
    }
