"""One way to wait: every poll loop in skyctl goes through `iterate_timeout` (after
openstacksdk's helper of the same name), so deadlines, naps and the clock are handled once.

Standard library only; the clock and the sleep are parameters so a caller (or a test) can
drive time itself instead of racing the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator


class Expired(Exception):
    """The deadline passed; `what` says what was being waited for."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g}s waiting for {what}")
        self.what = what
        self.timeout = timeout


def iterate_timeout(timeout: float | None, what: str, *, interval: float = 0.5,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Yield 0, 1, 2... with a nap of `interval` between yields (never past the deadline);
    raise `Expired` once `timeout` seconds have passed. `timeout=None` waits forever.

        for _ in iterate_timeout(30, "server ACTIVE"):
            if done():
                break
    """
    deadline = None if timeout is None else clock() + timeout
    count = 0
    while True:
        yield count
        count += 1
        if deadline is None:
            sleep(interval)
            continue
        left = deadline - clock()
        if left <= 0:
            raise Expired(what, timeout or 0.0)
        sleep(min(interval, left))


def remaining(deadline: float | None, *, clock: Callable[[], float] = time.monotonic) -> float | None:
    """Seconds left before `deadline` (never negative); None for no deadline."""
    return None if deadline is None else max(0.0, deadline - clock())
