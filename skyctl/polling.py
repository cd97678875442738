"""One way to wait: every poll loop in skyctl goes through `iterate_timeout` (after
openstacksdk's helper of the same name), so deadlines, naps and the clock are handled once.

Standard library only; the clock and the sleep are parameters so a caller (or a test) can
drive time itself instead of racing the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
READ_ATTEMPTS = 4


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



def retry(call: Callable[[], T], *, on: type[BaseException] | tuple[type[BaseException], ...],
          attempts: int = READ_ATTEMPTS) -> T:
    """Repeat an idempotent call while it raises `on` (a cloud's Transient errors: 5xx, resets,
    timeouts), with jittered backoff: the one retry helper, for ops and for a driver's reads
    made of several requests."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    for attempt in Retrying(stop=stop_after_attempt(attempts), reraise=True,
                            retry=retry_if_exception_type(on),
                            wait=wait_random_exponential(multiplier=0.1, max=2.0)):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover
