"""Fixtures for the OpenStack driver's tests, built on skyctl's pytest plugin (skyctl.testing):
a private SKYCTL_HOME for every test, the sandbox's OpenStack site as `site`, `make_driver`
(a driver for any sandbox site) and `driver` (one for `site`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.testing.sandbox import OpenStackSite
    from skyctl_openstack.driver import OpenStackDriver


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


@pytest.fixture
def make_driver() -> Iterator[Callable[..., OpenStackDriver]]:
    """`make_driver(site, name="home", ssh=None, **options)`: an OpenStackDriver for a sandbox
    site, as skyctl makes one per command (the driver's options as keywords, `ssh` the site's
    ssh section). Each is closed after the test (closing twice is fine)."""
    from skyctl.site import SiteConfig
    from skyctl_openstack.driver import OpenStackDriver

    made: list[OpenStackDriver] = []

    def make(site: OpenStackSite, name: str = "home", *, ssh: dict[str, Any] | None = None,
             **options: Any) -> OpenStackDriver:
        opts = OpenStackDriver.options_model(cloud=site.cloud, clouds_yaml=str(site.clouds_yaml), **options)
        extra = {"ssh": ssh} if ssh is not None else {}
        made.append(OpenStackDriver(SiteConfig(name=name, driver="openstack", max_parallel=4, request_timeout=5,
                                               options=opts, **extra)))
        return made[-1]

    yield make
    for d in made:
        d.close()


@pytest.fixture
def driver(site: OpenStackSite, make_driver: Callable[..., OpenStackDriver]) -> OpenStackDriver:
    """A driver for `site` (named home)."""
    return make_driver(site)
