"""The shared driver contract, run by the real OpenStack driver against real Nova.

The same `DriverContract` (skyctl.testing.contract) passes against the sandbox
(drivers/openstack/tests/test_openstack_contract.py); here the quota is set as Nova's admin would
(`set_compute_quotas`). The site is run once booting without a network and once on the seeded
shared network (ports bound through Neutron).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.site import SiteConfig
from skyctl_openstack.driver import OpenStackDriver
from skyctl.testing.contract import ContractTarget, DriverContract

pytestmark = pytest.mark.integration


@pytest.fixture(params=["none", "seeded-network"])
def target(request: pytest.FixtureRequest, real_cloud: Any) -> Iterator[ContractTarget]:
    network = real_cloud.network if request.param == "seeded-network" else "none"

    def make_driver() -> OpenStackDriver:
        options = OpenStackDriver.options_model(cloud=real_cloud.cloud, clouds_yaml=str(real_cloud.clouds_yaml),
                                                network=network)
        return OpenStackDriver(SiteConfig(name="nova", driver="openstack", options=options))

    yield ContractTarget(name=f"openstack-real-{request.param}", make_driver=make_driver,
                         image_name=real_cloud.image, cpus=1, memory_mib=512,
                         set_instance_quota=real_cloud.set_instance_quota, settle=60.0)


class TestOpenStackDriverOnRealNova(DriverContract):
    pass
