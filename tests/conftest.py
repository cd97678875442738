"""Shared fixtures: every test gets its own SKYCTL_HOME. The fixtures themselves (`skyctl_home`,
`memory_driver`, the sandbox sites) come from skyctl's pytest plugin, skyctl.testing.plugin."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def skyctl_home(skyctl_home: Path) -> Path:
    return skyctl_home
