"""The drills' own runner knobs, for the drills that deliver Ctrl-C or kill -9 (marked
`interrupt`): they control when the signal lands (a sandbox knob holds creates), so they
must pass however busy the machine is. To prove it:

    SKYCTL_DRILL_REPEAT=20 SKYCTL_DRILL_BUSY=1 pytest -m drill tests/drills -k interrupt

runs each of them 20 times with a busy-loop process on a second core for each run
(`.ci/run` does this). Defaults: once, no extra load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.testing.cli import SkyCli

BUSY_LOOP = "while True:\n    pass\n"


def _repeat() -> int:
    try:
        return max(1, int(os.environ.get("SKYCTL_DRILL_REPEAT", "1")))
    except ValueError:
        return 1


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    n = _repeat()
    if n > 1 and metafunc.definition.get_closest_marker("interrupt") is not None:
        metafunc.fixturenames.append("drill_run")
        metafunc.parametrize("drill_run", range(1, n + 1), ids=lambda i: f"run{i}of{n}")


@pytest.fixture(scope="package")
def sky(tmp_path_factory: pytest.TempPathFactory, skyctl_sandbox: Any) -> Iterator[SkyCli]:
    """One sandbox for every drill module (interleaved repeated runs move between modules)."""
    with skyctl_sandbox(tmp_path_factory.mktemp("drill-home"), boot_delay=0.3) as s:
        # A command killed with -9 leaves its group's lease on the clouds until it expires;
        # the next drill's clean-up waits for that, so a short TTL keeps the drills quick.
        s.env["SKYCTL_LEASE_TTL"] = "15"
        yield s


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """When repeating, run 1 of every interrupt drill first, then run 2 of each...: a run cut
    short still has the same number of runs of every drill."""
    def run_of(item: pytest.Item) -> int:
        spec = getattr(item, "callspec", None)
        return int(spec.params.get("drill_run", 0)) if spec is not None else 0

    if _repeat() > 1:
        items.sort(key=run_of)  # stable: within a run, the files' own order


@pytest.fixture(autouse=True)
def busy_core(request: pytest.FixtureRequest) -> Iterator[None]:
    """With SKYCTL_DRILL_BUSY=1, an interrupt drill runs next to a process that keeps one core
    busy (the load the test makes itself), so a drill that races the machine fails here."""
    if os.environ.get("SKYCTL_DRILL_BUSY") != "1" or request.node.get_closest_marker("interrupt") is None:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()
