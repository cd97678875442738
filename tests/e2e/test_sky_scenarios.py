"""Sky computing on the sandbox's default federation, as an admin would see it (issue: placement,
failover, bursting, moving load home): home (local, 8), cc (remote, cost 1, 16), sara (remote,
cost 2, 32), rule overflow-home with a home policy."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL, SkyCli as Sky



@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory, skyctl_sandbox: Any) -> Iterator[Sky]:
    with skyctl_sandbox(tmp_path_factory.mktemp("sky-home"), boot_delay=0.2) as s:
        yield s


def test_overflow_move_home_and_fill_order(sky: Sky) -> None:
    sky.run("launch", "pin", "--count", "8", "--site", "home")
    plan = sky.json("launch", "g1", "--count", "4", "--dry-run")
    reasons = {d["site"]: " ".join(r["text"] for r in d["reasons"]) for d in plan["sites"]}
    codes = {d["site"]: [r["code"] for r in d["reasons"]] for d in plan["sites"]}
    assert codes["home"] == ["quota"] and codes["cc"] == ["cost_order"]
    assert {d["site"]: d["count"] for d in plan["sites"] if d["count"]} == {"cc": 4}
    assert "quota: instances 8/8" in reasons["home"] and "cost 1" in reasons["cc"]

    launched = sky.json("launch", "g1", "--count", "4")
    assert Counter(n["site"] for n in launched["nodes"]) == {"cc": 4}

    sky.run("delete", "pin", "--yes")
    # While the tick runs, g1 must never have fewer than 4 running nodes.
    low: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            running = [n for n in sky.json("ps", "g1") if n["state"] == "running"]
            low.append(len(running))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        tick = sky.json("burst", "run")
    finally:
        done.set()
        watcher.join()
    assert [a["ok"] for a in tick["actions"]] == [True] * 4
    assert sky.sites_of("g1") == {"home": 4}
    assert low and min(low) >= 4, low

    fill = sky.json("launch", "big", "--count", "24")
    order = [n["site"] for n in fill["nodes"]]
    assert Counter(order) == {"home": 4, "cc": 16, "sara": 4}
    assert order == sorted(order, key=["home", "cc", "sara"].index)  # home, then cc, then sara

    more = sky.json("launch", "more", "--count", "30", ok=(3,))
    assert more["created"] == 28 and more["missing"] == 2
    assert Counter(n["site"] for n in more["nodes"]) == {"sara": 28}
    sky.run("launch", "one", "--count", "1", ok=(4,))


class Running:
    """skyctl started as a user would, its stderr read as it comes, so a test can act on
    what skyctl said (never on how long it took)."""

    def __init__(self, sky: Sky, *args: str) -> None:
        import queue

        self.proc = subprocess.Popen([SKYCTL, *args], env=sky.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=lambda: [self._lines.put(ln) for ln in self.proc.stderr],  # type: ignore[union-attr]
                                        daemon=True)
        self._reader.start()

    def _drain(self) -> str:
        import queue

        while True:
            try:
                self.seen.append(self._lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)

    def wait_for(self, text: str) -> None:
        for _ in iterate_timeout(60, f"skyctl to say {text!r}", interval=0.05):
            if text in self._drain():
                return

    def interrupt(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends

    def finish(self) -> tuple[int, str]:
        self.proc.wait(timeout=120)
        self._reader.join(timeout=60)  # it ends at the end of skyctl's stderr
        return self.proc.returncode, self._drain()


def _vms(sky: Sky, site: str) -> int:
    status = sky.json("sandbox", "status")
    return int(next(s for s in status["sites"] if s["name"] == site)["vms"])


def test_ctrl_c_mid_launch_keeps_what_was_made_and_loses_nothing(sky: Sky) -> None:
    """The sandbox holds creates after the second, so the interrupt lands, whatever the
    machine's speed, when the cloud holds two VMs and more creates are on the wire."""
    sky.wipe()
    sky.run("sandbox", "fault", "sara", "--hold-creates-after", "2")
    run = Running(sky, "launch", "cc1", "--count", "30", "--site", "sara")
    try:
        for _ in iterate_timeout(60, "sara to hold 2 VMs", interval=0.05):
            if _vms(sky, "sara") >= 2:
                break
        run.interrupt()
        run.wait_for("interrupted: waiting for")
    finally:
        sky.run("sandbox", "fault", "sara", "--release-creates")
    code, stderr = run.finish()
    assert code == 130, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "Traceback" not in stderr
    on_cloud = sky.json("ps", "cc1")
    assert 2 < len(on_cloud) < 30  # the two, plus the creates that were on the wire; no more
    # Nothing is lost: what the cloud holds is exactly what skyctl recorded.
    rec = sky.json("reconcile")
    assert rec["adopted"] == [] and rec["orphans"] == [] and rec["duplicates"] == []
    sky.run("delete", "cc1", "--yes")


def test_burst_watch_stops_cleanly_on_ctrl_c(sky: Sky) -> None:
    run = Running(sky, "burst", "watch", "--interval", "1")
    run.wait_for("tick 1:")
    run.interrupt()
    code, stderr = run.finish()
    # Ctrl-C is an interruption (130, as the README's exit codes say); SIGTERM is a clean stop
    assert code == 130, stderr
    assert "stopped after" in stderr and "Traceback" not in stderr


def _on_a_terminal(sky: Sky, args: list[str], answer: str) -> tuple[int, str]:
    """Run skyctl with a pseudo-terminal as stdin/stdout/stderr, type `answer` at its prompt."""
    import os
    import pty
    import select
    import time

    main_fd, tty_fd = pty.openpty()
    proc = subprocess.Popen([SKYCTL, *args], env=sky.env, stdin=tty_fd, stdout=tty_fd, stderr=tty_fd,
                            start_new_session=True)
    os.close(tty_fd)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/n]" in seen:
            os.write(main_fd, answer.encode() + b"\r")
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(main_fd)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_delete_asks_on_a_terminal(sky: Sky) -> None:
    sky.wipe()
    sky.run("launch", "ask", "--count", "2", "--site", "home")
    code, screen = _on_a_terminal(sky, ["delete", "ask"], "n")
    assert "Delete 2 node(s): ask-0, ask-1?" in screen and code == 1
    assert len(sky.json("ps", "ask")) == 2
    code, screen = _on_a_terminal(sky, ["delete", "ask"], "y")
    assert code == 0, screen
    assert sky.json("ps") == []
