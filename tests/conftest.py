"""Shared fixtures: the test world (a Docker engine, the host image) and sandbox container hosts."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.worlds import (  # noqa: F401 - session fixtures
    LIVE_HOSTS,
    alert_receiver,
    fleet,
    second_serving_host,
    serving_host,
    vllm_world,
)
from vllm_fleet.sandbox import ledger
from vllm_fleet.sandbox.ledger import LEDGER_ENV

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
# This run's name for what it starts on a Docker engine another run may share (Molecule's instances and their
# stand-in repositories: `${VLLM_FLEET_RUN:-local}` in the scenarios).
os.environ.setdefault("VLLM_FLEET_RUN", f"r{os.getpid():x}")
# The cost ledger (vllm_fleet.sandbox.ledger): `make test` names one file for both of its phases; a run of its own
# gets one of its own. Every playbook the tests start reports to it through the test-world callback.
os.environ.setdefault(LEDGER_ENV, os.path.join(tempfile.gettempdir(), f"vllm-fleet-ledger-{os.getpid()}.jsonl"))
_CALLBACKS = str(REPO / "tests" / "ansible_plugins" / "callback")
if _CALLBACKS not in os.environ.get("ANSIBLE_CALLBACK_PLUGINS", ""):
    os.environ["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(
        p for p in (os.environ.get("ANSIBLE_CALLBACK_PLUGINS"), _CALLBACKS) if p)
if "vllm_fleet_ledger" not in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", ""):
    os.environ["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(
        p for p in (os.environ.get("ANSIBLE_CALLBACKS_ENABLED"), "vllm_fleet_ledger") if p)


def _collection_on_path() -> None:
    """Tests import the collection's plugins under their collection name, through the link in .collections."""
    from vllm_fleet.vm.running.paths import ensure_collection_link

    ensure_collection_link()
    collections = str(REPO / ".collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)


_collection_on_path()


@pytest.fixture(scope="session")
def world() -> str:
    """A running Docker engine and the Debian 12 systemd host image; returns the image tag."""
    from vllm_fleet.sandbox.engine import ensure_engine
    from vllm_fleet.sandbox.hostimage import ensure_host_image
    from vllm_fleet.vm.running.paths import ensure_collection_link

    ensure_collection_link()
    ensure_engine()
    tag, _ = ensure_host_image()
    return tag


@pytest.fixture
def sandbox_hosts(world: str) -> Iterator[Callable[..., list[str]]]:
    """Start container hosts on demand; every one is removed after the test."""
    from vllm_fleet.sandbox.hosts import HostSpec, host_down, host_up

    started: list[str] = []

    def start(count: int = 1, prefix: str = "t", **kwargs: object) -> list[str]:
        names = []
        for _ in range(count):
            name = f"vf-{prefix}-{uuid.uuid4().hex[:6]}"
            started.append(name)
            host_up(HostSpec(name=name, image=world, **kwargs))  # type: ignore[arg-type]
            names.append(name)
        return names

    yield start
    for name in started:
        host_down(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On parallel workers (`make test`'s first phase), the long tests go out first, Molecule's before the other
    slow ones, so that no worker is left with a long test at the end while the others idle."""
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: 0 if item.get_closest_marker("molecule") else
                   1 if item.get_closest_marker("slow") else 2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After each test (setup and teardown included), the cost ledger gets the vLLM engines the serving world's
    hosts started meanwhile."""
    yield
    for host in list(LIVE_HOSTS.values()):
        host.count_engine_starts(test=item.nodeid)


# Lines a passing test prints that are figures for the log (secret searches, route probes, gate verdicts): shown in
# every run.
FIGURE_LINE = re.compile(r"^((searched|probed|failover:|rolling update:|monitoring:) \d+ |gate[a-z ]*: |scan: "
                         r"|group sizing: )")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures passing tests printed, and the wall time per test area (setup, call and teardown of its tests,
    fixtures included), in every run; the times are also recorded in $VLLM_FLEET_PHASES when .ci/run asks. Only the
    process that started the run reports: parallel workers send it their tests' reports."""
    if hasattr(terminalreporter.config, "workerinput"):
        return
    figures = [f"{report.nodeid.split('::')[-1]}: {line}"
               for report in terminalreporter.stats.get("passed", []) if isinstance(report, pytest.TestReport)
               for line in report.capstdout.splitlines() if FIGURE_LINE.match(line)]
    if figures:
        terminalreporter.section("figures printed by passing tests")
        for line in figures:
            terminalreporter.write_line(line)
    # `make test` runs two phases (parallel workers, then the vLLM worlds alone) and names each; on parallel
    # workers an area's figure is the sum of its tests' times, not wall time.
    phase = os.environ.get("VLLM_FLEET_TEST_PHASE")
    prefix = f"pytest:{phase}:" if phase else "pytest:"
    areas: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                area = ledger.area_of(report.nodeid)
                areas[area] = areas.get(area, 0.0) + report.duration
    if not areas:
        return
    terminalreporter.section("wall time per test area (seconds)")
    for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{prefix}{area} {seconds:.0f}")
        ledger.record("seconds", seconds, test="", area=area)
    phases = os.environ.get("VLLM_FLEET_PHASES")
    if phases:
        with open(phases, "a") as out:
            out.writelines(f"{prefix}{area} {seconds:.0f}\n" for area, seconds in sorted(areas.items()))
    if not phases:  # `make test` prints the ledger of both phases at its end
        terminalreporter.section("cost ledger")
        terminalreporter.write_line(ledger.render(Path(os.environ[LEDGER_ENV])))
