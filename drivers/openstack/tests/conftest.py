"""Fixtures for the OpenStack driver's tests, built on skyctl's pytest plugin (skyctl.testing):
a private SKYCTL_HOME for every test, and the sandbox's OpenStack site as `site`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.testing.sandbox import OpenStackSite


@pytest.fixture(autouse=True)
def _private_home(skyctl_home: Path) -> Path:
    return skyctl_home


@pytest.fixture
def site(openstack_sandbox_site: OpenStackSite) -> OpenStackSite:
    return openstack_sandbox_site


@pytest.fixture
def sara(tmp_path: Path):
    """The sandbox's tenant-network site: two networks, diskless flavors, Cinder."""
    from skyctl.testing.sandbox import start_openstack_site

    (tmp_path / "sara").mkdir()
    s = start_openstack_site(tmp_path / "sara", "sara", site_overrides={"tenant_network": True})
    yield s
    s.stop()
