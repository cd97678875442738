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
from tests.skycli import SkyCli as Sky
from tests.skycli import SKYCTL, sandbox



@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sky]:
    with sandbox(tmp_path_factory.mktemp("sky-home"), boot_delay=0.2) as s:
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


def _vms(sky: Sky, site: str) -> int:
    status = sky.json("sandbox", "status")
    return int(next(s for s in status["sites"] if s["name"] == site)["vms"])


def test_ctrl_c_mid_launch_keeps_what_was_made_and_loses_nothing(sky: Sky) -> None:
    """The sandbox holds creates after the second, so the interrupt lands, whatever the
    machine's speed, when the cloud holds two VMs and more creates are on the wire."""
    import queue
    import signal
    import threading

    sky.wipe()
    sky.run("sandbox", "fault", "sara", "--hold-creates-after", "2")
    proc = subprocess.Popen([SKYCTL, "launch", "cc1", "--count", "30", "--site", "sara"], env=sky.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        for _ in iterate_timeout(60, "sara to hold 2 VMs", interval=0.05):
            if _vms(sky, "sara") >= 2:
                break
        proc.send_signal(signal.SIGINT)
        seen: list[str] = []
        for _ in iterate_timeout(60, "skyctl to say it waits for the creates on the wire", interval=0.05):
            if any("interrupted: waiting for" in ln for ln in _drain(lines, seen)):
                break
    finally:
        sky.run("sandbox", "fault", "sara", "--release-creates")
    proc.wait(timeout=120)
    stderr = "".join(seen + _drain(lines, []))
    assert proc.returncode == 130, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "Traceback" not in stderr
    on_cloud = sky.json("ps", "cc1")
    assert 2 < len(on_cloud) < 30  # the two, plus the creates that were on the wire; no more
    # Nothing is lost: what the cloud holds is exactly what skyctl recorded.
    rec = sky.json("reconcile")
    assert rec["adopted"] == [] and rec["orphans"] == [] and rec["duplicates"] == []
    sky.run("delete", "cc1", "--yes")


def _drain(lines: Any, seen: list[str]) -> list[str]:
    """What the reader thread has put in `lines` so far, added to `seen`."""
    import queue

    while True:
        try:
            seen.append(lines.get_nowait())
        except queue.Empty:
            return seen


def test_burst_watch_stops_cleanly_on_ctrl_c(sky: Sky) -> None:
    import signal

    # Ctrl-C once the first tick has been reported (a fixed delay raced the tick on a busy machine).
    proc = subprocess.Popen([SKYCTL, "burst", "watch", "--interval", "1"], env=sky.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("tick 1:"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)
    assert done.returncode == 0, done.stderr
    assert "tick 1:" in done.stderr and "stopped after" in done.stderr
    assert "Traceback" not in done.stderr


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
