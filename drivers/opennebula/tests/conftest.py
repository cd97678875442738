"""Fixtures for the OpenNebula driver's tests, built on skyctl's pytest plugin (skyctl.testing):
a private SKYCTL_HOME for every test, and the sandbox's OpenNebula site (`front`, `one_auth`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.sandbox.opennebula.methods import OpenNebulaFront
    from skyctl.testing.sandbox import OpenNebulaSite


@pytest.fixture(autouse=True)
def _private_home(skyctl_home: Path) -> Path:
    return skyctl_home


@pytest.fixture
def front(opennebula_sandbox_site: OpenNebulaSite) -> OpenNebulaFront:
    return opennebula_sandbox_site.front


@pytest.fixture
def one_auth(opennebula_sandbox_site: OpenNebulaSite) -> Path:
    """A ONE_AUTH file (skyuser:password, an ordinary user) for the sandbox site."""
    return opennebula_sandbox_site.one_auth
