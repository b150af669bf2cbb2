"""How ansible-runner's events become a host's progress and error (vm/runner.EventTracker)."""

from __future__ import annotations

from vllm_fleet.vm.running.runner import EventTracker

CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"


def test_an_unreachable_task_under_no_log_is_named_and_said_to_be_hidden() -> None:
    tracker = EventTracker()
    tracker({"event": "runner_on_unreachable", "event_data": {
        "host": "gpu-1", "task": "Write the key file the container mounts - vllm-tiny-chat",
        "res": {"censored": CENSORED, "unreachable": True, "changed": False}}})
    host = tracker.result.hosts["gpu-1"]
    assert host.unreachable
    assert host.last_error == ("unreachable in 'Write the key file the container mounts - vllm-tiny-chat': "
                               "the task's output is hidden by no_log")


def test_an_unreachable_task_keeps_its_message() -> None:
    tracker = EventTracker()
    tracker({"event": "runner_on_unreachable", "event_data": {
        "host": "gpu-2", "task": "Gathering Facts", "res": {"msg": "Could not find container \"gpu-2\"",
                                                            "unreachable": True}}})
    assert tracker.result.hosts["gpu-2"].last_error == (
        "unreachable in 'Gathering Facts': Could not find container \"gpu-2\"")


def test_a_failed_loop_names_why_each_failed_item_failed_and_that_a_hidden_one_is_hidden() -> None:
    tracker = EventTracker()
    tracker({"event": "runner_on_failed", "event_data": {
        "host": "gpu-3", "task": "Verify file:// models in place", "res": {
            "msg": "One or more items failed", "failed": True, "results": [
                {"failed": False, "changed": False, "path": "/srv/models/chat"},
                {"failed": True, "msg": "service wide (file:///srv/wide): the adapter has rank 64"},
                {"failed": True, "censored": CENSORED}]}}})
    assert tracker.result.hosts["gpu-3"].last_error == (
        "Verify file:// models in place: One or more items failed: service wide (file:///srv/wide): the adapter "
        "has rank 64; the item's output is hidden by no_log")
