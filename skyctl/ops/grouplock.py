"""One writer per group: commands that change a group (launch, scale, delete, moves home)
hold that group's lock, so two of them never interleave their listings and creates.

The lock is an advisory `flock` on `<state dir>/locks/<group>.lock`, per installation (one
person's skyctl on one machine; another person has another state folder). The kernel
releases it when its process ends, however it ends (Ctrl-C, kill -9, a crash), so a dead
holder never leaves a stale lock. The file holds who took it (pid, host, command, time) so
a second caller can say who it waits for; it waits up to SKYCTL_LOCK_WAIT seconds (default
600), then stops with that line.

That file is the fast path on one machine. Given the Sky, the lock also takes the group's
lease on the federation's lock site (skyctl.ops.cloudlock), so other machines that use the
same clouds with the same owner wait too; a lock site that does not answer is said once and
the command goes on with this machine's lock only.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from skyctl.errors import DriverError, SkyError
from skyctl.polling import Expired, iterate_timeout, remaining

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.ops.cloudlock import CloudLease
    from skyctl.ops.sky import Sky

DEFAULT_WAIT_S = 600.0

_held: dict[Path, int] = {}  # lock file -> how deep this process holds it (re-entrant)
_mutex = threading.Lock()


class GroupBusy(SkyError):
    """Another command is changing the group and did not finish in time."""


def lock_dir() -> Path:
    from skyctl.paths import base, private_dir
    from skyctl.state import problem

    folder = base("state") / "locks"
    try:
        return private_dir(folder)
    except OSError as e:
        raise problem(folder, e) from None


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%H:%M:%S", time.localtime(float(info["at"])))
        return f"pid {info['pid']} on {info['host']} ('{info['command']}', since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another skyctl"


def _wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SKYCTL_LOCK_WAIT", DEFAULT_WAIT_S)))
    except ValueError:
        return DEFAULT_WAIT_S


@contextmanager
def group_lock(group: str, *, say: object = None, sky: Sky | None = None,
               wait: float | None = None) -> Iterator[None]:
    """Hold `group`'s lock for the block (re-entrant in one process). `say(text)` is told
    once when the lock is held by someone else and this call waits for it. With `sky`, the
    group's lease on the lock site is held too (other machines). `wait` bounds the wait below
    SKYCTL_LOCK_WAIT (a caller with its own deadline: Slurm's programs)."""
    from skyctl.state import problem

    limit = _wait_s() if wait is None else min(_wait_s(), max(0.0, wait))
    deadline = time.monotonic() + limit

    path = lock_dir() / f"{group}.lock"
    with _mutex:
        depth = _held.get(path, 0)
        if depth:
            _held[path] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _mutex:
                _held[path] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:  # a read-only state folder: one line naming the file
        raise problem(path, e) from None
    try:
        _take(fd, group, say, limit)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time(),
              "command": " ".join(["skyctl", *sys.argv[1:]])[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        with _mutex:
            _held[path] = 1
        lease = None
        try:
            lease = _take_lease(sky, group, say, round(remaining(deadline) or 0.0, 1)) if sky is not None else None
            yield
        finally:
            if lease is not None:
                lease.give_back()
            with _mutex:
                _held.pop(path, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def group_locks(groups: Iterable[str], *, say: object = None, sky: Sky | None = None,
                wait: float | None = None) -> Iterator[None]:
    """Hold the locks of several groups for the block, taken in sorted order: two commands
    that need some of the same groups never wait for each other in a circle. All of them are
    waited for within one `wait` (default SKYCTL_LOCK_WAIT), not one each."""
    limit = _wait_s() if wait is None else min(_wait_s(), max(0.0, wait))
    deadline = time.monotonic() + limit
    with ExitStack() as held:
        for g in sorted(set(groups)):
            held.enter_context(group_lock(g, say=say, sky=sky, wait=remaining(deadline)))
        yield


def _take(fd: int, group: str, say: object, wait: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = _holder(fd)
    if callable(say):
        say(f"{group} is being changed by {holder}; waiting for it (up to {round(wait, 1):g} s)")
    try:
        for _ in iterate_timeout(wait, f"the lock of group {group}", interval=0.2):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                continue
    except Expired:
        pass
    raise GroupBusy(f"group {group} is being changed by {_holder(fd)}",
                    hint="let that command finish (or stop it) and try again; "
                         "the lock ends with its process, SKYCTL_LOCK_WAIT sets how long to wait")


def _take_lease(sky: Sky, group: str, say: object, wait: float) -> CloudLease | None:
    """The group's lease on the lock site, or None (no lock site, or it did not answer:
    said once, and this machine's lock alone goes on)."""
    from skyctl.ops.cloudlock import CloudLease, lease_name, lock_site

    tell = say if callable(say) else None
    site = lock_site(sky)
    if site is None:
        return None
    try:
        lease = CloudLease(sky.driver(site), lease_name(sky.owner(site), group), site=site, say=tell)
        lease.take(wait, f"the lock of group {group}")
        return lease
    except DriverError as e:
        if tell is not None:
            tell(f"warning: the lock of group {group} could not be kept on {site} ({e.message}); "
                 "only this machine's commands wait for it")
        return None
