"""The one wait helper: naps between tries, never sleeps past the deadline, names what it waited for."""

from __future__ import annotations

import pytest

from skyctl.polling import Expired, iterate_timeout, remaining


class FakeClock:
    """Time that moves only when the helper sleeps: no test races the real clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.naps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


def test_stops_when_the_caller_breaks() -> None:
    clock = FakeClock()
    seen = []
    for i in iterate_timeout(10, "x", interval=1, clock=clock, sleep=clock.sleep):
        seen.append(i)
        if i == 3:
            break
    assert seen == [0, 1, 2, 3] and clock.naps == [1, 1, 1]


def test_the_last_nap_ends_at_the_deadline_and_then_it_expires() -> None:
    clock = FakeClock()
    with pytest.raises(Expired, match=r"timed out after 2.5s waiting for server ACTIVE"):
        for _ in iterate_timeout(2.5, "server ACTIVE", interval=1, clock=clock, sleep=clock.sleep):
            pass
    assert clock.naps == [1, 1, 0.5] and clock.now == 102.5


def test_no_timeout_waits_as_long_as_it_takes() -> None:
    clock = FakeClock()
    for i in iterate_timeout(None, "x", interval=60, clock=clock, sleep=clock.sleep):
        if i == 1000:
            break
    assert clock.now == 100.0 + 60 * 1000


def test_remaining_is_never_negative() -> None:
    clock = FakeClock()
    assert remaining(None, clock=clock) is None
    assert remaining(105.0, clock=clock) == 5.0
    assert remaining(90.0, clock=clock) == 0.0
