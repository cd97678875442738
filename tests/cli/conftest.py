"""Fixtures for the cli tier: the CLI in this process (`run`, tests/conftest.py) against the
in-memory driver, whose clouds live in this process."""

from __future__ import annotations

from collections.abc import Callable
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
