"""The OpenStack driver, through openstacksdk, passes the shared contract against the sandbox's
OpenStack-compatible front (the integration tier points the same suite at real Nova)."""

from __future__ import annotations

import pytest

from skyctl.site import SiteConfig
from skyctl_openstack.driver import OpenStackDriver
from tests.contract.suite import ContractTarget, DriverContract
from tests.sandbox.openstack_site import IMAGE, connect, start_site


@pytest.fixture
def target(tmp_path):
    site = start_site(tmp_path)
    admin = connect(site.clouds_yaml, site.admin_cloud)
    member_project = site.front.project_id

    def set_instance_quota(n: int | None) -> None:
        if n is None:
            resp = admin.compute.delete(f"/os-quota-sets/{member_project}")
        else:
            resp = admin.compute.put(f"/os-quota-sets/{member_project}", json={"quota_set": {"instances": n}})
        assert resp.status_code in (200, 202), resp.text

    def make_driver() -> OpenStackDriver:
        options = OpenStackDriver.options_model(cloud=site.cloud, clouds_yaml=str(site.clouds_yaml))
        return OpenStackDriver(SiteConfig(name="home", driver="openstack", options=options))

    yield ContractTarget(name="openstack-sandbox", make_driver=make_driver, image_name=IMAGE, cpus=1,
                         memory_mib=512, set_instance_quota=set_instance_quota, settle=10.0)
    admin.close()
    site.stop()


class TestOpenStackDriver(DriverContract):
    pass
