"""Group locks that reach across machines: a lease record on a cloud that every machine using
the federation sees.

Where it lives: on the federation's *lock site*, the first site by name whose driver keeps
leases (OpenStack: a Neutron security group without rules named
`skyctl-lock-<owner>-<group>`, the lease in its description), or the site SKYCTL_LOCK_SITE
names (`none`: this machine's lock only). Every change of the record is a compare-and-swap
on the cloud's side (Neutron: `If-Match: revision_number=N`, refused with 412 when someone
wrote first), so of two machines that race for a free lock exactly one wins.

The protocol, all through the driver's four lease calls:
- take: no record -> create one holding our lease, then list again: alone, we hold it; with
  a twin (someone created at the same moment) we delete ours and try again after a random
  nap. One record -> if free or expired, swap our lease in; a refused swap means someone
  else was faster.
- keep: a thread renews the lease every TTL/3 (a swap that changes the text, so the
  revision moves). A swap refused while renewing means the lease was taken from us.
- expire: no clocks are compared across machines. A waiter times how long it has seen the
  record at the same revision, on its own clock; unchanged for TTL seconds (SKYCTL_LEASE_TTL,
  default 60), the holder stopped renewing (kill -9, a crash, a lost network) and the waiter
  may swap its own lease in.
- give back: swap to "releasing", then delete the record.

Guarantee (and its limit): while holders renew at least once per TTL, at most one machine
holds a group's lease. A holder frozen for longer than TTL (suspended laptop, a stopped
process) loses it without knowing until its next renewal, which then fails and says so;
the clouds offer no fencing token that Nova would check on create or delete. When the lock
site does not answer, skyctl says so and goes on with this machine's lock only.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from skyctl.errors import DriverError, NotFound, SkyError
from skyctl.model import Capability, LeaseRecord
from skyctl.polling import Expired, iterate_timeout

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.drivers import Driver
    from skyctl.ops.sky import Sky

DEFAULT_TTL_S = 60.0
HELD, RELEASING = "held", "releasing"


class LeaseBusy(SkyError):
    """The lease is held by another machine's skyctl and did not come free in time."""


def lease_ttl() -> float:
    try:
        return max(1.0, float(os.environ.get("SKYCTL_LEASE_TTL", DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


def lock_site(sky: Sky) -> str | None:
    """The site that keeps the group leases: SKYCTL_LOCK_SITE, else the first site by name
    whose driver keeps leases (the same choice on every machine with the same sites)."""
    wanted = os.environ.get("SKYCTL_LOCK_SITE")
    if wanted is not None:
        return None if wanted.strip().lower() in ("", "none") else wanted.strip()
    for name in sorted(sky.site_names):
        try:
            if Capability.LEASE in sky.driver(name).capabilities:
                return name
        except SkyError:
            continue
    return None


def lease_name(owner: str, group: str) -> str:
    return f"skyctl-lock-{owner}-{group}"[:255]


def describe(text: str) -> str:
    """Who holds a lease, for a waiting caller: 'pid 42 on host-b ('skyctl scale web 5')'."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} ('{info['cmd']}')"
    except (ValueError, KeyError, TypeError):
        return "another skyctl"


def _state(text: str) -> str | None:
    try:
        return str(json.loads(text).get("state")) or None
    except (ValueError, AttributeError):
        return None


class CloudLease:
    """One group's lease on one site's driver; `take` then `give_back` (re-entrancy is the
    caller's: group_lock takes it once per process)."""

    def __init__(self, driver: Driver, name: str, *, site: str, ttl: float | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.driver, self.name, self.site = driver, name, site
        self.ttl = lease_ttl() if ttl is None else ttl
        self.say = say
        self.record: LeaseRecord | None = None
        self.lost = False
        self._beats = 0
        self._last = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _text(self, state: str = HELD) -> str:
        self._beats += 1
        cmd = " ".join(["skyctl", *sys.argv[1:]])[:80]
        self._last = json.dumps({"state": state, "pid": os.getpid(), "host": socket.gethostname()[:40],
                                 "cmd": cmd, "n": self._beats}, separators=(",", ":"))
        return self._last

    def _records(self) -> list[LeaseRecord]:
        from skyctl.ops.sky import retrying

        return retrying(lambda: self.driver.lease_records(self.name))

    def _swap(self, record: LeaseRecord, text: str) -> LeaseRecord | None:
        """A swap; when it was refused or its answer lost, the record may still carry our own
        text (the cloud applied it and the reply went missing): then it is ours."""
        try:
            got = self.driver.lease_swap(record, text)
        except DriverError as e:
            if not e.retryable:
                raise
            got = None
        if got is not None:
            return got
        return next((r for r in self._records() if r.id == record.id and r.text == text), None)

    def take(self, wait: float, what: str) -> None:
        """Hold the lease, waiting up to `wait` seconds; LeaseBusy naming the holder if not."""
        seen: dict[str, tuple[int, float]] = {}  # record id -> (revision, when first seen at it)
        told = False

        def stale(r: LeaseRecord) -> bool:
            rev, since = seen.get(r.id, (None, 0.0))
            if rev != r.revision:
                seen[r.id] = (r.revision, time.monotonic())
                return False
            return time.monotonic() - since >= self.ttl

        def nap(seconds: float) -> None:  # jitter: two machines that collided do not collide again
            time.sleep(seconds * random.uniform(0.5, 1.5))

        holder = "another skyctl"
        try:
            for _ in iterate_timeout(wait, what, interval=min(1.0, self.ttl / 4), sleep=nap):
                records = self._records()
                if not records:
                    mine = self.driver.lease_create(self.name, self._text())
                    twins = [r for r in self._records() if r.id != mine.id]
                    if not twins:
                        self._hold(mine)
                        return
                    self.driver.lease_delete(mine)  # created at the same moment as another: back off
                    continue
                if len(records) > 1:  # twins left by a creator that died before removing its own
                    for r in records:
                        if stale(r):
                            self.driver.lease_delete(r)
                    continue
                r = records[0]
                if _state(r.text) not in (HELD, RELEASING) or stale(r):
                    try:
                        got = self._swap(r, self._text())
                    except NotFound:  # its holder gave it back and removed it meanwhile
                        continue
                    if got is not None:
                        self._hold(got)
                        return
                    continue
                holder = describe(r.text)
                if not told and self.say is not None:
                    told = True
                    self.say(f"{what.removeprefix('the lock of ')} is being changed by {holder} on another machine "
                             f"(lock kept on {self.site}); waiting for it (up to {wait:g} s; a holder that stops "
                             f"renewing loses it after {self.ttl:g} s)")
        except Expired:
            pass
        raise LeaseBusy(f"{what.removeprefix('the lock of ')} is being changed by {holder} (lock kept on {self.site})",
                        hint="let that command finish (or stop it) and try again; a holder that stopped "
                             f"renewing loses the lock after {self.ttl:g} s (SKYCTL_LEASE_TTL)")

    def _hold(self, record: LeaseRecord) -> None:
        self.record = record
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._mutex:
                if self.record is None or self.lost:
                    return
                try:
                    got = self._swap(self.record, self._text())
                except DriverError:
                    continue  # a missed beat; the next one may get through (TTL allows two)
                if got is None:
                    self.lost = True
                    if self.say is not None:
                        self.say(f"warning: the lock {self.name} on {self.site} was taken over by another "
                                 f"machine (this one did not renew it for {self.ttl:g} s)")
                    return
                self.record = got

    def give_back(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            record, self.record = self.record, None
            if record is None or self.lost:
                return
            try:
                gone = self._swap(record, self._text(RELEASING))
                if gone is not None:
                    self.driver.lease_delete(gone)
            except DriverError:
                pass  # left behind: it expires after TTL seconds without renewal
