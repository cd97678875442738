"""skyctl's pytest plugin (entry point `pytest11: skyctl`): fixtures for testing skyctl and its
drivers. Loaded by every pytest run where skyctl is installed, so it imports only pytest here;
each fixture imports what it needs when it is used.

- `skyctl_home`: a private SKYCTL_HOME (and HOME, so no developer key or cloud config is found).
- `memory_driver`: the in-memory driver registered as `memory`, with empty clouds.
- `openstack_sandbox_site` / `opennebula_sandbox_site`: a sandbox site on loopback for the test.

The contract suite itself is `skyctl.testing.contract.DriverContract`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.testing.sandbox import OpenNebulaSite, OpenStackSite

# The contract's failed asserts show their values, like those in a test module.
pytest.register_assert_rewrite("skyctl.testing.contract")


@pytest.fixture
def skyctl_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SKYCTL_HOME; HOME below it, so the default SSH key lookup and the clouds'
    own config files never find the developer's."""
    home = tmp_path_factory.mktemp("skyctl-home")
    monkeypatch.setenv("SKYCTL_HOME", str(home))
    monkeypatch.delenv("SKYCTL_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("HOME", str(home / "user"))
    os.makedirs(home / "user", exist_ok=True)
    return home


@pytest.fixture
def memory_driver() -> Iterator[None]:
    """The in-memory driver (`skyctl.testing.memory`) registered as `memory`, clouds empty."""
    from skyctl.drivers import registry
    from skyctl.testing import memory

    memory.reset()
    registry.register("memory", memory.MemoryDriver)
    yield
    registry.unregister("memory")
    memory.reset()


@pytest.fixture
def openstack_sandbox_site(tmp_path: Path) -> Iterator[OpenStackSite]:
    """The sandbox's OpenStack site `home` on loopback, its clouds.yaml in tmp_path."""
    from skyctl.testing.sandbox import start_openstack_site

    site = start_openstack_site(tmp_path)
    yield site
    site.stop()


@pytest.fixture
def opennebula_sandbox_site(tmp_path: Path) -> Iterator[OpenNebulaSite]:
    """The sandbox's OpenNebula site `cc` on loopback, its ONE_AUTH file in tmp_path."""
    from skyctl.testing.sandbox import start_opennebula_site

    site = start_opennebula_site(tmp_path)
    yield site
    site.stop()
