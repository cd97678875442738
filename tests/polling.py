"""Waiting in tests: poll until something holds, and fail naming it when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(predicate: Callable[[], T], timeout: float = 20.0, *, what: str = "the condition holds",
          interval: float = 0.05) -> T:
    """The first truthy value of `predicate()`; an assertion error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(interval)
    return value
