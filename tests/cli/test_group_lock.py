"""One writer per group: while another process holds a group's lock, a command that changes
the group waits for it, or stops naming the holder; a killed holder's lock ends with it.

Nothing here waits on a clock: the holder lets go when the test tells it to, and the test
tells it only after reading the waiter's "waiting for it" line (the waiter runs in another
process, `skyctl_process`, so its stderr can be read while it waits)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner


def _count() -> int:
    return sum(len(site.nodes) for site in memdriver.CLOUDS.values())


def test_a_busy_group_stops_naming_the_holder_and_a_killed_holder_frees_it(
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch, hold_lock: Callable[..., Any]) -> None:
    assert run("launch", "web", "--count", "2").code == 0
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "0.5")
    holder = hold_lock("web")
    for args in (("scale", "web", "4"), ("launch", "web"), ("delete", "web", "--yes")):
        res = run(*args)
        assert res.code == 1, (args, res.err)
        assert f"pid {holder.pid}" in res.err and "being changed" in res.err, res.err
    assert _count() == 2  # nothing changed
    assert run("launch", "db").code == 0  # other groups are not held up
    holder.kill()
    res = run("scale", "web", "4")  # the lock ended with its process (else: busy after 0.5 s)
    assert res.code == 0, res.err
    assert "waiting" not in res.err
    assert _count() == 5


def test_a_second_caller_waits_for_the_first(
        two_sites: Path, monkeypatch: pytest.MonkeyPatch, hold_lock: Callable[..., Any], skyctl_process: Any) -> None:
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "600")
    assert skyctl_process.run("launch", "web", "--count", "2").code == 0
    holder = hold_lock("web")
    skyctl_process.start("scale", "web", "3")
    line = skyctl_process.wait_for("waiting for it")
    assert f"pid {holder.pid}" in line, line
    assert skyctl_process.running()  # the lock is still held: it cannot have gone on
    holder.release()
    done = skyctl_process.finish()
    assert done.code == 0, done.err
    assert done.vms == 3  # it did its work after the holder let go


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
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch, hold_lock: Callable[..., Any]) -> None:
    assert run("launch", "web", "--count", "3").code == 0
    _orphan("web")
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "0.5")
    holder = hold_lock("web")  # a launch of web still running elsewhere on this machine
    res = run("reconcile", "--delete-orphans", "--yes")
    assert res.code == 1, res.err
    assert f"pid {holder.pid}" in res.err and "being changed" in res.err, res.err
    assert _count() == 3  # nothing deleted while someone else changes the group
    holder.kill()
    res = run("reconcile", "--delete-orphans", "--yes", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(res.json()["deleted"]) == ["web-0", "web-1", "web-2"]
    assert _count() == 0


# A launch of web in another process: its group is not recorded yet while it creates (the
# nodes look like orphans), and it records the group before it lets go of the lock.
BEFORE = """
from skyctl.state import State
st = State()
spec = st.group_spec("web")
st.delete_group("web")
"""
UNDER = """
st.ensure_group("web", spec)
st.close()
"""


def test_a_launch_that_records_its_group_while_reconcile_waits_keeps_its_nodes(
        two_sites: Path, monkeypatch: pytest.MonkeyPatch, hold_lock: Callable[..., Any], skyctl_process: Any) -> None:
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "600")
    assert skyctl_process.run("launch", "web", "--count", "3").code == 0
    holder = hold_lock("web", before=BEFORE, under=UNDER)
    skyctl_process.start("reconcile", "--delete-orphans", "--yes", "-o", "json")
    skyctl_process.wait_for("waiting for it")  # it saw web's nodes as orphans, and waits
    assert skyctl_process.running()
    holder.release()
    done = skyctl_process.finish()
    assert done.code == 0, done.err
    assert done.json()["deleted"] == []
    assert done.vms == 3  # seen as orphans before the lock, kept after it


def test_the_same_reconcile_deletes_orphans_whose_group_stays_unknown(
        two_sites: Path, monkeypatch: pytest.MonkeyPatch, hold_lock: Callable[..., Any], skyctl_process: Any) -> None:
    """The control for the test above: a holder that does not record the group lets reconcile
    delete the orphans once it lets go (so "kept" above is the lock's doing)."""
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "600")
    assert skyctl_process.run("launch", "web", "--count", "3").code == 0
    holder = hold_lock("web", before=BEFORE, under="st.close()")
    skyctl_process.start("reconcile", "--delete-orphans", "--yes", "-o", "json")
    skyctl_process.wait_for("waiting for it")
    assert skyctl_process.running()
    holder.release()
    done = skyctl_process.finish()
    assert done.code == 0, done.err
    assert sorted(done.json()["deleted"]) == ["web-0", "web-1", "web-2"]
    assert done.vms == 0
