"""One writer per group: while another process holds a group's lock, a command that changes
the group waits for it, or stops naming the holder; a killed holder's lock ends with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner

HOLD = """
import sys, time
from skyctl.ops.grouplock import group_lock
with group_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(group: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, group, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _count() -> int:
    return sum(len(site.nodes) for site in memdriver.CLOUDS.values())


def test_a_busy_group_stops_naming_the_holder_and_a_killed_holder_frees_it(
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "web", "--count", "2").code == 0
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "0.5")
    holder = _holder("web", 60)
    try:
        for args in (("scale", "web", "4"), ("launch", "web"), ("delete", "web", "--yes")):
            res = run(*args)
            assert res.code == 1, (args, res.err)
            assert f"pid {holder.pid}" in res.err and "being changed" in res.err, res.err
        assert _count() == 2  # nothing changed
        assert run("launch", "db").code == 0  # other groups are not held up
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    assert run("scale", "web", "4").code == 0  # the lock ended with its process
    assert time.monotonic() - started < 5
    assert _count() == 5


def test_a_second_caller_waits_for_the_first(run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "web", "--count", "2").code == 0
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "30")
    holder = _holder("web", 1.0)
    try:
        res = run("scale", "web", "3")
    finally:
        holder.wait()
    assert res.code == 0, res.err
    assert "waiting for it" in res.err
    assert _count() == 3


def _orphan(group: str) -> None:
    """Make `group` unknown here while its nodes stay on the clouds (what a launch racing a
    delete left behind in issue 15)."""
    from skyctl.state import State

    st = State()
    try:
        st.delete_group(group)
    finally:
        st.close()


def test_reconcile_deletes_orphans_only_holding_their_groups_lock(
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "web", "--count", "3").code == 0
    _orphan("web")
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "0.5")
    holder = _holder("web", 60)  # a launch of web still running elsewhere on this machine
    try:
        res = run("reconcile", "--delete-orphans", "--yes")
        assert res.code == 1, res.err
        assert f"pid {holder.pid}" in res.err and "being changed" in res.err, res.err
        assert _count() == 3  # nothing deleted while someone else changes the group
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    res = run("reconcile", "--delete-orphans", "--yes", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(res.json()["deleted"]) == ["web-0", "web-1", "web-2"]
    assert _count() == 0


RESTORE = """
import sys, time
from skyctl.ops.grouplock import group_lock
from skyctl.state import State
st = State()
spec = st.group_spec(sys.argv[1])
st.delete_group(sys.argv[1])
with group_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    st.ensure_group(sys.argv[1], spec)  # the launch records its group, then lets go
st.close()
"""


def test_a_launch_that_records_its_group_while_reconcile_waits_keeps_its_nodes(
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "web", "--count", "3").code == 0
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "60")
    proc = subprocess.Popen([sys.executable, "-c", RESTORE, "web", "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        res = run("reconcile", "--delete-orphans", "--yes", "-o", "json")
    finally:
        proc.wait()
    assert res.code == 0, res.err
    assert res.json()["deleted"] == []  # seen as orphans before the lock, kept after it
    assert _count() == 3
