"""A scientist's day on the sandbox (issue 16 items 3, 4 and 9): stop/start/reboot with the
clouds' real refusals, console and cloud-init logs, port forwarding, exec's argv, cp's parents
and gathering, delete --all and ps filters, all through `skyctl` in its own processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL


class Day:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        (self.home / "user").mkdir(parents=True)
        self.env = {"SKYCTL_HOME": str(self.home), "HOME": str(self.home / "user"), "NO_COLOR": "1",
                    "PATH": os.environ["PATH"]}

    def __call__(self, *args: str, ok: tuple[int, ...] | None = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=120,
                              cwd=self.tmp)
        if ok is not None:
            assert proc.returncode in ok, f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str, ok: tuple[int, ...] | None = (0,)) -> Any:
        return json.loads(self(*args, "-o", "json", ok=ok).stdout)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    d = Day(tmp_path_factory.mktemp("day"))
    d("sandbox", "up", "--boot-delay", "0.2")
    try:
        d.env["SKYCTL_CONFIG"] = d.json("sandbox", "status")["config"]
        d("launch", "os", "--count", "2", "--site", "home", "--wait")
        d("launch", "one", "--count", "1", "--site", "cc", "--wait")
        yield d
    finally:
        d("sandbox", "down", ok=None)


def states(day: Day, group: str) -> dict[str, str]:
    return {n["name"]: n["state"] for n in day.json("ps", group)}


def test_stop_start_reboot_on_both_clouds(day: Day) -> None:
    stopped = day.json("stop", "os-0", "one-0", "--wait")
    assert {n["name"]: n["state"] for n in stopped} == {"os-0": "stopped", "one-0": "stopped"}
    assert states(day, "os") == {"os-0": "stopped", "os-1": "running"}
    assert sorted(n["name"] for n in day.json("ps", "--state", "stopped")) == ["one-0", "os-0"]
    day("stop", "os-0", "one-0")  # already stopped: fine, as `openstack server stop` is not

    # a stopped VM's SSH is gone; the clouds refuse a soft reboot with their own words
    assert day("exec", "os-0", "--", "true", ok=None).returncode != 0
    nova = day("reboot", "os-0", ok=(1,))
    assert "Cannot 'reboot' instance" in nova.stderr and "while it is in vm_state stopped" in nova.stderr
    assert nova.stderr.count("\n") == 1
    oned = day("reboot", "one-0", ok=(1,))
    assert 'Error performing action "reboot": This action is not available for state POWEROFF' in oned.stderr

    started = day.json("start", "os", "one", "--wait")
    assert {n["state"] for n in started} == {"running"}
    day("wait", "os-0", "one-0")
    back = json.loads(day("exec", "os-0", "one-0", "-o", "json", "--", "echo", "back").stdout)
    assert [d["stdout"] for d in back] == ["back\n", "back\n"]

    # a reboot in progress (held by a long boot) is REBOOT, and Nova refuses a stop meanwhile
    day("sandbox", "fault", "home", "--boot-delay", "600")
    try:
        day("reboot", "os-1")
        assert states(day, "os")["os-1"] == "pending"
        busy = day("stop", "os-1", ok=(1,))
        assert "Cannot 'stop' instance" in busy.stderr and "while it is in task_state reboot_started" in busy.stderr
    finally:
        day("sandbox", "fault", "home", "--boot-delay", "0.2")
    day("reboot", "os-1", "--hard", "--wait")
    assert states(day, "os")["os-1"] == "running"


def test_console_and_cloud_init_logs(day: Day) -> None:
    console = day("logs", "os-1")
    assert "Cloud-init v." in console.stdout and "login:" in console.stdout
    tail = day("logs", "os-1", "-n", "2")
    assert len(tail.stdout.splitlines()) <= 2
    none = day("logs", "one-0", ok=(1,))
    assert "OpenNebula serves no console log" in none.stderr and "--cloud-init" in none.stderr
    ci = day("logs", "one-0", "--cloud-init")
    assert ci.stdout.strip(), "the guest's cloud-init output is empty"
    assert day("logs", "os-0", "--cloud-init").stdout.strip()
