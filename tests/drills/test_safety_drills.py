"""Drills of issue 15 on the sandbox (nothing lost, nothing foreign): Ctrl-C that lands at a
held create or in the wait, a site that goes silent during a wait, a group lock that holds
across two machines (two installations on the same clouds), and two owners with the same
group name on the same project, counted on the clouds directly.

Every signal lands at a point the sandbox holds (creates held, VMs that never finish
booting), never after a sleep, so the drills marked `interrupt` pass however loaded the
machine is (the runner repeats them under a busy core: tests/drills/conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.polling import Expired, iterate_timeout
from skyctl.testing.cli import SKYCTL, SkyCli as Sky

pytestmark = pytest.mark.drill


def _normal(sky: Sky) -> None:
    for site in ("home", "cc", "sara"):
        sky.fault(site, down=False, hold_creates_after=-1, boot_delay=0.3)


@pytest.fixture
def clean(sky: Sky) -> Iterator[Sky]:
    _normal(sky)
    sky.wipe()
    yield sky
    _normal(sky)


def _site(sky: Sky, name: str) -> dict[str, Any]:
    return sky.live(name)


class Running:
    """A skyctl command in the background; its stderr is read as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([SKYCTL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr or []), daemon=True)
        self._reader.start()

    def wait_for(self, text: str) -> None:
        for _ in iterate_timeout(120, f"skyctl to say {text!r}", interval=0.05):
            if any(text in ln for ln in list(self.lines)):
                return
            assert self.proc.poll() is None, "".join(self.lines)

    def finish(self) -> tuple[int, str]:
        self.proc.wait(timeout=300)
        self._reader.join(timeout=60)
        return self.proc.returncode, "".join(self.lines)


def _one_error_line(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def _until_sara_holds(sky: Sky, before: int, more: int, run: Running) -> None:
    """Until sara holds `more` VMs beyond the `before` it had, and no create is still being
    made; the command must still be running (its stderr tells why if not)."""
    try:
        for _ in iterate_timeout(300, f"sara to hold {more} more VMs", interval=0.05):
            assert run.proc.poll() is None, "".join(run.lines)
            s = _site(sky, "sara")
            if s["vms"] >= before + more and s["creates_in_progress"] == 0:
                return
    except Expired:
        raise AssertionError(f"sara holds {_site(sky, 'sara')}; skyctl said: {''.join(run.lines)}") from None


# ---------------------------------------------------------------- Ctrl-C at controlled points


@pytest.mark.interrupt
def test_ctrl_c_at_a_held_create_keeps_what_was_made_and_loses_nothing(clean: Sky) -> None:
    clean.fault("sara", hold_creates_after=3)
    run = Running(clean.env, "launch", "cc1", "--count", "12", "--site", "sara")
    try:
        for _ in iterate_timeout(120, "sara to hold 3 VMs and a create on the wire", interval=0.05):
            s = _site(clean, "sara")
            if s["vms"] >= 3 and s["creates_held"] >= 1:
                break
        run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        run.wait_for("interrupted: waiting for")
    finally:
        clean.fault("sara", hold_creates_after=-1)
    code, stderr = run.finish()
    assert code == 130, stderr
    assert "were created and are kept" in _one_error_line(stderr)
    assert 3 < len(clean.nodes("cc1")) <= 12
    rec = clean.json("reconcile")  # nothing lost: what the cloud holds is what skyctl recorded
    assert rec["adopted"] == [] and rec["orphans"] == [] and rec["duplicates"] == []


@pytest.mark.interrupt
def test_ctrl_c_in_launch_wait_keeps_the_nodes_and_says_so(clean: Sky) -> None:
    clean.fault("sara", boot_delay=3600)  # they never finish booting in this drill
    before = _site(clean, "sara")["vms"]
    run = Running(clean.env, "launch", "lw", "--count", "3", "--site", "sara", "--wait")
    _until_sara_holds(clean, before, 3, run)  # all made: the launch now waits for them
    run.proc.send_signal(signal.SIGINT)
    code, stderr = run.finish()
    assert code == 130, stderr
    # The signal lands once the cloud made all three; the launch may still be closing its
    # create round (which counts them) or already waiting: either line says they are kept.
    line = _one_error_line(stderr)
    assert "interrupted" in line and ("nodes already created are kept" in line or "3 node(s)" in line), line
    assert len(clean.nodes("lw")) == 3
    rec = clean.json("reconcile")
    assert rec["adopted"] == [] and rec["orphans"] == [] and rec["duplicates"] == []


# ---------------------------------------------------------------- waits that notice


def test_a_site_that_goes_silent_during_launch_wait_ends_it_early(clean: Sky) -> None:
    clean.fault("sara", boot_delay=3600)
    before = _site(clean, "sara")["vms"]
    run = Running(clean.env, "launch", "sw", "--count", "2", "--site", "sara", "--wait")
    _until_sara_holds(clean, before, 2, run)
    clean.fault("sara", down=True)
    code, stderr = run.finish()  # long before sara's ready_timeout (600 s) runs out
    assert code == 3, stderr
    line = _one_error_line(stderr)
    assert "sara did not answer" in line and "sw-0 (sara" in line and "sw-1 (sara" in line, line
    clean.fault("sara", down=False)
    assert len(clean.nodes("sw")) == 2  # kept


def test_a_site_that_goes_silent_during_skyctl_wait_ends_it_early(clean: Sky) -> None:
    clean.fault("sara", boot_delay=3600)
    clean.run("launch", "sv", "--count", "2", "--site", "sara")
    run = Running(clean.env, "-v", "wait", "sv")
    run.wait_for("sv-1: address")  # the wait has begun: both nodes are at their first stage
    clean.fault("sara", down=True)
    code, stderr = run.finish()
    assert code == 3, stderr
    line = _one_error_line(stderr)
    assert "sara did not answer" in line and "sv-0 (sara" in line, line


# ---------------------------------------------------------------- one writer per group, across machines

HOLD = """
import sys, time
from skyctl.cli.runtime import open_sky
from skyctl.ops.grouplock import group_lock
with open_sky() as sky, group_lock(sys.argv[1], sky=sky):
    print("held", flush=True)
    time.sleep(3600)
"""


def _holder(env: dict[str, str], group: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, group], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _machine(sky: Sky, home: Path, **env: str) -> Sky:
    """Another installation (its own state and lock files: another machine) on the same clouds."""
    other = Sky(home)
    other.env["SKYCTL_CONFIG"] = sky.json("sandbox", "status")["config"]  # the sandbox's federation file
    other.env.update(env)
    return other


def test_a_group_lock_holds_across_machines_and_a_dead_holder_loses_it(clean: Sky, tmp_path: Path) -> None:
    ttl = {"SKYCTL_LEASE_TTL": "5"}
    clean.run("launch", "web", "--count", "2", "--site", "sara")
    b = _machine(clean, tmp_path / "machine-b", **ttl, SKYCTL_LOCK_WAIT="1")
    holder = _holder({**clean.env, **ttl}, "web")  # machine A is changing web
    try:
        res = b.run("delete", "web", "--yes", ok=(1,))
        assert f"pid {holder.pid}" in res.stderr and "lock kept on home" in res.stderr, res.stderr
        assert _site(clean, "sara")["vms"] == 2  # machine B did not touch A's group
        res = b.run("launch", "web", "--count", "1", "--site", "sara", ok=(1,))
        assert "being changed" in res.stderr
        assert _site(clean, "sara")["vms"] == 2
    finally:
        holder.send_signal(signal.SIGKILL)  # A dies holding the lease
        holder.wait()
    b.env["SKYCTL_LOCK_WAIT"] = "120"
    res = b.run("delete", "web", "--yes")  # waits until the lease went TTL seconds without renewal
    assert "waiting for it" in res.stderr and "deleted 2 node(s)" in res.stderr, res.stderr
    assert _site(clean, "sara")["vms"] == 0
    res = b.run("launch", "web", "--count", "1", "--site", "sara")  # the lease was given back: no wait
    assert "waiting" not in res.stderr, res.stderr


# ---------------------------------------------------------------- two owners, one project


def test_two_owners_with_the_same_group_name_never_touch_each_others_nodes(clean: Sky, tmp_path: Path) -> None:
    alice = _machine(clean, tmp_path / "alice", SKYCTL_OWNER="alice", SKYCTL_LOCK_WAIT="1")
    bob = _machine(clean, tmp_path / "bob", SKYCTL_OWNER="bob", SKYCTL_LOCK_WAIT="1")
    alice.run("launch", "web", "--count", "3", "--site", "sara")
    bob.run("launch", "web", "--count", "2", "--site", "sara")
    assert _site(clean, "sara")["vms"] == 5  # counted by the cloud itself
    holder = _holder(alice.env, "web")  # alice is changing her web: bob's web is another lock
    try:
        bob.run("scale", "web", "1")
        assert _site(clean, "sara")["vms"] == 4
        bob.run("delete", "web", "--yes")
        assert _site(clean, "sara")["vms"] == 3
    finally:
        holder.send_signal(signal.SIGINT)  # alice's command ends normally: her lease is given back
        holder.wait()
    everyone = json.loads(alice.run("ps", "--all-owners", "-o", "json").stdout)
    assert sorted((n["name"], n["labels"].get("owner") if "labels" in n else n.get("owner")) for n in everyone) == [
        ("web-0", "alice"), ("web-1", "alice"), ("web-2", "alice")]
    alice.run("delete", "web", "--yes")
    assert _site(clean, "sara")["vms"] == 0
