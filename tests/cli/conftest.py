"""Fixtures for the cli tier: the CLI in this process (`run`, tests/conftest.py) against the
in-memory driver, whose clouds live in this process; and for the group-lock tests, other
processes: `hold_lock` (a command holding a group's lock until released) and `skyctl_process`
(the CLI in another process, so a test can watch it wait)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import federation


@pytest.fixture
def two_sites(sky_file: Callable[[dict[str, Any]], Path]) -> Path:
    """home (local, 2 instances) and cc (remote, 8 instances)."""
    return sky_file(federation(
        home={"driver": "memory", "tier": "local", "instances": 2},
        cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
    ))


# ---------------------------------------------------------------- another process: a lock holder, a waiter

_HOLD = """
import os, sys
from skyctl.ops.grouplock import group_lock
ns = {}
exec(os.environ["HOLD_BEFORE"], ns)   # before taking the lock
with group_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()              # the test says: let go
    exec(os.environ["HOLD_UNDER"], ns)  # still under the lock
print("released", flush=True)
"""


class LockHolder:
    """Another process (another skyctl command, for this machine's lock) holding a group's
    lock until the test releases it: no clock decides when it lets go."""

    def __init__(self, group: str, before: str, under: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, group], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "HOLD_BEFORE": before, "HOLD_UNDER": under})
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"
        self.pid = self.proc.pid

    def release(self) -> None:
        """Let go (after running `under`), and wait until the lock is free."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        assert self.proc.stdout.readline().strip() == "released"
        assert self.proc.wait() == 0

    def kill(self) -> None:
        """Die holding it (kill -9): the kernel frees the lock."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def hold_lock() -> Iterator[Callable[..., LockHolder]]:
    """`hold_lock(group, before="", under="")`: a LockHolder; `before` runs before the lock is
    taken, `under` after release() is called and before the lock is let go (Python code)."""
    holders: list[LockHolder] = []

    def start(group: str, *, before: str = "", under: str = "") -> LockHolder:
        holders.append(LockHolder(group, before, under))
        return holders[-1]

    yield start
    for h in holders:
        h.kill()


_CLI = """
import json, sys
from skyctl.cli.main import main
from skyctl.drivers import registry
from skyctl.testing import memory
registry.register("memory", memory.MemoryDriver)
for line in sys.stdin:
    try:
        main(json.loads(line))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    print("@@", file=sys.stderr, flush=True)   # its stderr ends here
    print("@@" + json.dumps({"code": code, "vms": sum(len(c.nodes) for c in memory.CLOUDS.values())}), flush=True)
"""


@dataclass
class Done:
    code: int
    vms: int      # nodes on the memory clouds of that process, after the command
    out: str      # its stdout
    err: str      # its stderr

    def json(self) -> Any:
        return json.loads(self.out)


class CliProcess:
    """skyctl's CLI in another process with the memory driver (its clouds live there), one
    command at a time: `run(...)` waits for it; `start(...)`, then `wait_for(text)` reads its
    stderr until `text` shows (failing if the command ends first), then `finish()`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CLI], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "500"})
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.err: list[str] = []
        self.out: list[str] = []
        self._result: str | None = None   # the ended command's result line, not yet taken
        self._err_done = False             # the ended command's stderr end mark was read
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            self.events.put((name, line))
        self.events.put((name, ""))

    def _next(self) -> tuple[str, str]:
        # Generous: only a broken run gets here (this is no timing under test).
        name, line = self.events.get(timeout=300)
        assert line, f"skyctl process ended:\n{''.join(self.err)}"
        if name == "err":
            self.err.append(line)
        elif not line.startswith("@@"):
            self.out.append(line)
        return name, line

    def start(self, *args: str) -> None:
        assert self.proc.stdin is not None
        self.err, self.out = [], []
        self.proc.stdin.write(json.dumps(list(args)) + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str) -> str:
        """Its stderr until a line holds `text` (that line); an error if the command ends first."""
        while True:
            name, line = self._next()
            if name == "err" and text in line:
                return line
            assert not line.startswith("@@"), f"ended before saying {text!r}:\n{''.join(self.err)}"

    def running(self) -> bool:
        """The command has not ended yet (it ends by writing its end marks)."""
        while self._result is None and not self.events.empty():
            name, line = self._next()
            if name == "out" and line.startswith("@@"):
                self._result = line
            elif name == "err" and line.startswith("@@"):
                self._err_done = True
        return self._result is None and not self._err_done

    def finish(self) -> Done:
        line, self._result = self._result, None
        err_done = self._err_done
        while line is None or not err_done:
            name, text = self._next()
            if name == "out" and text.startswith("@@"):
                line = text
            elif name == "err" and text.startswith("@@"):
                err_done = True
        self._err_done = False
        data = json.loads(line[2:])
        return Done(data["code"], data["vms"], "".join(self.out), "".join(ln for ln in self.err if ln != "@@\n"))

    def run(self, *args: str) -> Done:
        self.start(*args)
        return self.finish()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def skyctl_process() -> Iterator[CliProcess]:
    """skyctl's CLI in another process, memory driver registered (same SKYCTL_HOME/CONFIG)."""
    proc = CliProcess()
    yield proc
    proc.close()
