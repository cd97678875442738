"""The cross-machine group lock's protocol (skyctl.ops.cloudlock) on the memory cloud: two
"machines" are two CloudLease objects on the same cloud, each with its own driver."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from skyctl.model import LeaseRecord
from skyctl.ops.cloudlock import CloudLease, LeaseBusy
from skyctl.site import SiteConfig
from skyctl.testing import memory


@pytest.fixture
def machines() -> Iterator[tuple[memory.MemoryDriver, memory.MemoryDriver]]:
    memory.reset()
    site = SiteConfig(name="home", driver="memory")
    yield memory.MemoryDriver(site), memory.MemoryDriver(site)
    memory.reset()


def test_a_second_machine_waits_and_names_the_first(machines: tuple[memory.MemoryDriver, ...]) -> None:
    a, b = machines
    first = CloudLease(a, "skyctl-lock-me-web", site="home", ttl=30)
    first.take(1, "the lock of group web")
    said: list[str] = []
    second = CloudLease(b, "skyctl-lock-me-web", site="home", ttl=30, say=said.append)
    with pytest.raises(LeaseBusy) as info:
        second.take(0.3, "the lock of group web")
    assert "pid" in info.value.message and "lock kept on home" in info.value.message
    assert said and "waiting for it" in said[0]
    first.give_back()
    assert memory.cloud("home").leases == {}  # given back: the record is removed
    second.take(1, "the lock of group web")
    second.give_back()


def test_a_holder_that_stops_renewing_loses_the_lease_after_ttl(machines: tuple[memory.MemoryDriver, ...]) -> None:
    a, b = machines
    dead = CloudLease(a, "skyctl-lock-me-web", site="home", ttl=1.0)
    dead.take(1, "the lock of group web")
    dead._stop.set()  # kill -9: no more renewals, nothing given back
    assert dead._thread is not None
    dead._thread.join()
    heir = CloudLease(b, "skyctl-lock-me-web", site="home", ttl=1.0)
    heir.take(30, "the lock of group web")  # waits until it saw the record unchanged for 1 s
    [rec] = memory.cloud("home").leases.values()
    assert heir.record is not None and rec.id == heir.record.id
    heir.give_back()


class _Collide(memory.MemoryDriver):
    """Two creators at the same moment: on their first create, each lists only after both
    created (so both see a twin)."""

    barrier: threading.Barrier
    creates = 0
    lists = 0

    def lease_records(self, name: str) -> list[LeaseRecord]:
        found = super().lease_records(name)
        self.lists += 1
        if self.lists == 1:  # both found none before either creates
            self.barrier.wait(timeout=30)
        return found

    def lease_create(self, name: str, text: str) -> LeaseRecord:
        rec = super().lease_create(name, text)
        self.creates += 1
        if self.creates == 1:
            self.barrier.wait(timeout=30)
        return rec


def test_two_creators_at_once_never_both_hold(machines: tuple[memory.MemoryDriver, ...]) -> None:
    site = SiteConfig(name="home", driver="memory")
    _Collide.barrier = threading.Barrier(2)
    drivers = [_Collide(site), _Collide(site)]
    holding: list[int] = []
    most: list[int] = [0]
    mutex = threading.Lock()

    def one(d: memory.MemoryDriver) -> None:
        lease = CloudLease(d, "skyctl-lock-me-web", site="home", ttl=30)
        lease.take(60, "the lock of group web")
        with mutex:
            holding.append(1)
            most[0] = max(most[0], len(holding))
        with mutex:
            holding.pop()
        lease.give_back()

    threads = [threading.Thread(target=one, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert most[0] == 1
    assert sum(d.creates for d in drivers) >= 3  # both created, saw the twin, removed theirs, came again
    assert memory.cloud("home").leases == {}


def test_many_takers_hold_one_at_a_time(machines: tuple[memory.MemoryDriver, ...]) -> None:
    site = SiteConfig(name="home", driver="memory")
    inside = [0]
    worst = [0]
    mutex = threading.Lock()

    def one() -> None:
        lease = CloudLease(memory.MemoryDriver(site), "skyctl-lock-me-web", site="home", ttl=30)
        for _ in range(3):
            lease.take(120, "the lock of group web")
            with mutex:
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
            with mutex:
                inside[0] -= 1
            lease.give_back()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert worst[0] == 1


def test_a_record_changed_by_someone_else_is_not_taken(machines: tuple[memory.MemoryDriver, ...]) -> None:
    a, b = machines
    rec = a.lease_create("skyctl-lock-me-web", "")
    assert b.lease_swap(rec, '{"state":"held"}') is not None
    assert a.lease_swap(rec, '{"state":"held"}') is None  # still at the old revision: refused
