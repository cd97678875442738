"""What real Nova does beyond the shared contract, through the OpenStack driver.

Nova schedules asynchronously: POST /servers answers 202 while the server is still BUILD, and a
server no host can take goes to ERROR with the fault "No valid host was found." a fraction of a
second later (seen on GET /servers/{id}; the fault is absent from GET /servers/detail for it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.model import CAPACITY_FAULT, NodeSpec, RenderedContext, node_labels
from skyctl_openstack.driver import OpenStackDriver

pytestmark = pytest.mark.integration

# More vCPUs than the fake compute host has (FakeDriver: 1000, cpu_allocation_ratio 4.0).
HUGE_FLAVOR = ("it.huge", 8000, 512, 1)


@pytest.fixture
def driver(real_cloud: Any) -> Iterator[OpenStackDriver]:
    d = real_cloud.driver(network="none")
    yield d
    d.close()


@pytest.fixture
def huge_flavor_without_core_quota(real_cloud: Any) -> Iterator[str]:
    """A public flavor no host can take, and no cores quota in the way of asking for it."""
    name, vcpus, ram, disk = HUGE_FLAVOR
    if real_cloud.admin.compute.find_flavor(name) is None:
        real_cloud.admin.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
    real_cloud.admin.set_compute_quotas(real_cloud.project_id, cores=-1)
    yield name
    real_cloud.set_instance_quota(None)   # deletes the project's quota set: cores back to the default


def test_no_valid_host_is_flagged_as_a_capacity_fault(
        real_cloud: Any, driver: OpenStackDriver, huge_flavor_without_core_quota: str) -> None:
    """Nova accepts the create (202) and schedules afterwards: the server goes to ERROR with
    'No valid host' a moment later. The driver's list marks it capacity_fault (reading the
    fault, which /servers/detail leaves out), so ops deletes it and fails over."""
    group = f"it-{uuid.uuid4().hex[:8]}"
    name = f"{group}-0"
    image = next(i for i in driver.images() if i.name == real_cloud.image)
    flavor = next(f for f in driver.flavors() if f.name == huge_flavor_without_core_quota)
    spec = NodeSpec(group=group, site=driver.site_name, image=image, flavor=flavor,
                    labels=node_labels(group, "l-nvh", "integration", 0, name), image_name=real_cloud.image)
    try:
        node = driver.create(spec, name, RenderedContext())
        deadline = time.monotonic() + 60
        while True:
            listed = {n.id: n for n in driver.list({"group": group})}
            if node.id in listed and listed[node.id].extra.get(CAPACITY_FAULT):
                break
            assert time.monotonic() < deadline, f"never flagged: {listed.get(node.id)}"
            time.sleep(0.3)
        assert "No valid host" in listed[node.id].extra["fault"]
    finally:
        for s in real_cloud.servers(tags=f"skyctl-group={group}"):
            real_cloud.conn.compute.delete_server(s["id"], ignore_missing=True)
