"""daemon.json merging: what other roles and users wrote survives, re-runs are no-ops."""

from __future__ import annotations

import json

import pytest

NVIDIA = {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
DOCKER_SETTINGS = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m", "max-file": "3"},
    "registry-mirrors": ["https://mirror.example.org"],
}


def test_user_key_and_nvidia_runtime_survive_docker_settings(daemon_json):
    existing = {"experimental": True, "runtimes": {"nvidia": {"path": "/opt/nvidia/runtime", "args": ["-x"]}}}
    merged = daemon_json.merge(existing, settings=DOCKER_SETTINGS)
    assert merged["experimental"] is True
    assert merged["runtimes"] == existing["runtimes"]
    assert merged["registry-mirrors"] == ["https://mirror.example.org"]
    assert existing == {"experimental": True, "runtimes": {"nvidia": {"path": "/opt/nvidia/runtime", "args": ["-x"]}}}


def test_existing_nvidia_runtime_kept_when_given_as_default(daemon_json):
    existing = {
        "runtimes": {"nvidia": {"path": "/opt/nvidia/runtime", "args": ["-d"]}, "crun": {"path": "/usr/bin/crun"}}
    }
    merged = daemon_json.merge(existing, defaults={"runtimes": NVIDIA})
    assert merged == existing


def test_runtime_added_next_to_other_runtimes(daemon_json):
    existing = {"runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    merged = daemon_json.merge(existing, defaults={"runtimes": NVIDIA})
    assert merged["runtimes"] == {"crun": {"path": "/usr/bin/crun"}, **NVIDIA}


def test_nested_objects_merged_lists_replaced(daemon_json):
    existing = {"log-opts": {"max-size": "10m", "labels": "team"}, "registry-mirrors": ["https://old"]}
    merged = daemon_json.merge(existing, settings=DOCKER_SETTINGS)
    assert merged["log-opts"] == {"max-size": "100m", "max-file": "3", "labels": "team"}
    assert merged["registry-mirrors"] == ["https://mirror.example.org"]


@pytest.mark.parametrize("order", ["docker-then-toolkit", "toolkit-then-docker"])
def test_both_roles_in_either_order_converge_to_the_same_file(daemon_json, order):
    existing = {"my-key": "kept", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    steps = [
        {"settings": DOCKER_SETTINGS},
        {"defaults": {"runtimes": NVIDIA}, "settings": {"default-runtime": "nvidia"}},
    ]
    if order == "toolkit-then-docker":
        steps.reverse()
    config = existing
    for step in steps:
        config = daemon_json.merge(config, **step)
    assert config["my-key"] == "kept"
    assert config["runtimes"] == NVIDIA
    assert config["default-runtime"] == "nvidia"
    assert config["log-opts"]["max-file"] == "3"
    # A second pass of every step changes nothing.
    again = config
    for step in steps:
        again = daemon_json.merge(again, **step)
    assert again == config
    assert daemon_json.dump(again) == daemon_json.dump(config)


def test_remove_if_equal_only_removes_matching_value(daemon_json):
    assert "default-runtime" not in daemon_json.merge(
        {"default-runtime": "nvidia"}, remove_if_equal={"default-runtime": "nvidia"}
    )
    kept = daemon_json.merge({"default-runtime": "crun"}, remove_if_equal={"default-runtime": "nvidia"})
    assert kept["default-runtime"] == "crun"


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_empty_file_is_empty_config(daemon_json, text):
    assert daemon_json.load(text) == {}


@pytest.mark.parametrize(("text", "message"), [('{"a": 1,', "not valid JSON"), ("[1, 2]", "JSON object")])
def test_broken_file_refused(daemon_json, text, message):
    with pytest.raises(daemon_json.DaemonJsonError, match=message):
        daemon_json.load(text)


def test_dump_is_stable_json(daemon_json):
    text = daemon_json.dump({"b": 1, "a": {"d": 2, "c": 3}})
    assert text.endswith("\n")
    assert json.loads(text) == {"b": 1, "a": {"d": 2, "c": 3}}
    assert text.index('"a"') < text.index('"b"')
