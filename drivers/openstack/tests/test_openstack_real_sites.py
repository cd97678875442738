"""The driver against sites set up as production OpenStack clouds are (issue 13): refusals
that are not authentication errors, faults after rescheduling, several networks, a default
security group that lets nothing in."""

from __future__ import annotations

import pytest

from skyctl.errors import AuthError, InvalidRequest
from skyctl.model import CAPACITY_FAULT, RenderedContext
from skyctl.sandbox.world import SFlavor
from skyctl.site import SiteConfig
from skyctl.testing.contract import ContractTarget, make_spec
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite
from skyctl_openstack.driver import OpenStackDriver


def _driver(site: SandboxSite, name: str = "home", **options) -> OpenStackDriver:
    opts = OpenStackDriver.options_model(cloud=site.cloud, clouds_yaml=str(site.clouds_yaml), **options)
    return OpenStackDriver(SiteConfig(name=name, driver="openstack", max_parallel=4, request_timeout=5,
                                      options=opts))


@pytest.fixture
def driver(site: SandboxSite):
    d = _driver(site)
    yield d
    d.close()


def _create(driver, site, group="g", index=0, context=RenderedContext(), **kw):
    name = f"{group}-{index}"
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    return driver.create(make_spec(driver, target, group, name, index, **kw), name, context)


def test_a_diskless_flavor_is_refused_as_a_request_not_as_credentials(driver, site) -> None:
    site.world.flavors = {"0": SFlavor("0", "d1.small", 1, 512, disk_gib=0)}
    with pytest.raises(InvalidRequest) as info:
        _create(driver, site)
    err = info.value
    assert not isinstance(err, AuthError) and err.exit_code != 5
    assert "Only volume-backed servers are allowed for flavors with zero disk." in err.line()
    assert err.field == "flavor" and site.world.vms == {}


def test_exhausted_retries_fail_over_like_no_valid_host(driver, site) -> None:
    site.world.faults.build_fault = ("Exceeded maximum number of retries. Exhausted all hosts available for "
                                     "retrying build failures for instance 0b4e.")
    made = _create(driver, site)
    node = {n.id: n for n in driver.list({"group": "g"})}[made.id]
    assert node.state.value == "error" and node.extra.get(CAPACITY_FAULT) is True
    assert "Exhausted all hosts" in node.extra["fault"]


def test_any_other_fault_is_shown_but_is_no_capacity_fault(driver, site) -> None:
    site.world.faults.build_fault = "Build of instance 0b4e aborted: Failed to allocate the network(s)."
    made = _create(driver, site)
    node = {n.id: n for n in driver.list({"group": "g"})}[made.id]
    assert node.state.value == "error" and not node.extra.get(CAPACITY_FAULT)
    assert "Failed to allocate the network" in node.extra["fault"]
