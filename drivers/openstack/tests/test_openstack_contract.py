"""The OpenStack driver, through openstacksdk, passes the shared contract against the sandbox's
OpenStack-compatible front (the integration tier points the same suite at real Nova), run as
any driver's tests run it: skyctl's pytest plugin and a `target` fixture."""

from __future__ import annotations

import pytest

from skyctl.site import SiteConfig
from skyctl.testing.contract import ContractTarget, DriverContract
from skyctl.testing.sandbox import OPENSTACK_IMAGE, OpenStackSite
from skyctl_openstack.driver import OpenStackDriver


@pytest.fixture
def target(openstack_sandbox_site: OpenStackSite) -> ContractTarget:
    site = openstack_sandbox_site

    def make_driver() -> OpenStackDriver:
        options = OpenStackDriver.options_model(cloud=site.cloud, clouds_yaml=str(site.clouds_yaml))
        return OpenStackDriver(SiteConfig(name="home", driver="openstack", options=options))

    return ContractTarget(name="openstack-sandbox", make_driver=make_driver, image_name=OPENSTACK_IMAGE, cpus=1,
                          memory_mib=512, set_instance_quota=site.set_instance_quota, settle=10.0)


class TestOpenStackDriver(DriverContract):
    pass
