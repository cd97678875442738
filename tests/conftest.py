"""Shared fixtures: every test gets its own SKYCTL_HOME, and the in-memory driver is registered."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyctl.drivers import registry
from tests import memdriver


@pytest.fixture(autouse=True)
def skyctl_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("skyctl-home")
    monkeypatch.setenv("SKYCTL_HOME", str(home))
    monkeypatch.delenv("SKYCTL_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    # The default SSH key lookup must not find the developer's own keys.
    monkeypatch.setenv("HOME", str(home / "user"))
    os.makedirs(home / "user", exist_ok=True)
    return home


@pytest.fixture
def memory_driver() -> Iterator[None]:
    memdriver.reset()
    registry.register("memory", memdriver.MemoryDriver)
    yield
    registry.unregister("memory")
    memdriver.reset()
