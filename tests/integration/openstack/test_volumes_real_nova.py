"""Issue 13 (boot volumes, quota lines, options) against real Nova and Neutron: what the
sandbox imitates, proved where the real stack can prove it.

The tier's stack has no Cinder (Keystone, Nova with the fake virt driver, Placement, Glance,
Neutron): so here skyctl must find no block storage in the catalog, keep diskless flavors
unusable and refuse `boot_from_volume` before it makes anything. Booting from a volume itself
is proved on the sandbox only (tests/component/test_openstack_cinder.py and the driver's
tests). What real Nova and Neutron do prove here:
- flavor extra specs come with the flavor list from microversion 2.61, and a special-hardware
  spec marks the flavor so placement passes it over;
- Neutron's quota details give the lines capacity() reads (ports, security groups);
- Neutron pages a list asked with `limit` and links the next page; skyctl follows the links;
- a server group is made with the group's first node (the policy Nova stores), its members
  are the group's nodes, and it is deleted with the last node;
- config_drive reaches Nova; an unknown availability zone is Nova's 400, an InvalidRequest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.errors import InvalidRequest
from skyctl.model import FLAVOR_UNUSABLE, SPECIAL_HARDWARE, NodeSpec, RenderedContext, node_labels
from skyctl.polling import iterate_timeout
from skyctl_openstack.driver import OpenStackDriver
from skyctl_openstack.network import neutron_get

pytestmark = pytest.mark.integration

GPU_FLAVOR = "it-g1.small"


def _driver(real: Any, **options: Any) -> OpenStackDriver:
    return real.driver(**{"network": real.network, **options})


def _spec(driver: OpenStackDriver, real: Any, group: str, index: int, flavor: str | None = None) -> NodeSpec:
    image = next(i for i in driver.images() if i.name == real.image)
    size = next(f for f in driver.flavors() if f.name == (flavor or real.flavor))
    return NodeSpec(group=group, site=driver.site_name, image=image, flavor=size,
                    labels=node_labels(group, "l-it13v", "integration", index, f"{group}-{index}"),
                    image_name=real.image)



@pytest.fixture(scope="module")
def gpu_flavor(real_cloud: Any) -> Iterator[str]:
    admin = real_cloud.admin.compute
    old = admin.find_flavor(GPU_FLAVOR)
    if old is not None:   # left by a run that died
        admin.delete_flavor(old)
    flavor = admin.create_flavor(name=GPU_FLAVOR, vcpus=1, ram=512, disk=1, is_public=True)
    admin.create_flavor_extra_specs(flavor, {"resources:VGPU": "1"})
    yield GPU_FLAVOR
    admin.delete_flavor(flavor, ignore_missing=True)


def test_no_cinder_in_the_catalog_keeps_diskless_flavors_unusable_and_refuses_boot_from_volume(
        real_cloud: Any) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    d = _driver(real_cloud, boot_from_volume=True)
    try:
        flavors = {f.name: f for f in d.flavors()}
        assert not any(f.boot_volume for f in flavors.values())
        diskless = [f for f in flavors.values() if f.disk_gib == 0]
        assert diskless and all("no block storage" in f.extra[FLAVOR_UNUSABLE] for f in diskless)
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d, real_cloud, group, 0), f"{group}-0", RenderedContext())
        assert info.value.field == "boot_from_volume"
        assert not any(lim.resource in ("volumes", "gigabytes") for lim in d.capacity().others)
    finally:
        d.close()
    assert real_cloud.servers(tags=f"skyctl-group={group}") == []


def test_real_nova_s_extra_specs_mark_special_hardware(real_cloud: Any, gpu_flavor: str) -> None:
    d = _driver(real_cloud)
    try:
        flavors = {f.name: f for f in d.flavors()}
    finally:
        d.close()
    assert flavors[gpu_flavor].extra[SPECIAL_HARDWARE] == {"resources:VGPU": "1"}
    assert SPECIAL_HARDWARE not in flavors[real_cloud.flavor].extra


def test_capacity_reads_neutron_s_quota_details(real_cloud: Any) -> None:
    d = _driver(real_cloud)
    try:
        lines = {lim.resource: lim for lim in d.capacity().others}
    finally:
        d.close()
    # A shared provider network (no router): a port per node, no floating IP.
    assert lines["ports"].per_node == 1 and "floating_ips" not in lines
    assert lines["ports"].limit is None or lines["ports"].limit > 0


def test_neutron_pages_with_limit_and_skyctl_follows_the_next_links(real_cloud: Any) -> None:
    conn = real_cloud.conn
    extra = conn.network.create_network(name=f"it-page-{uuid.uuid4().hex[:6]}")   # two networks at least
    d = _driver(real_cloud)
    try:
        api = d._api()
        _, whole = neutron_get(api, "/networks")
        raw_status, first = api.request("network", "GET", "/networks", params={"limit": 1}, what="networks")
        _, paged = neutron_get(api, "/networks", params={"limit": 1})
    finally:
        d.close()
        conn.network.delete_network(extra, ignore_missing=True)
    names = sorted(n["name"] for n in whole["networks"])
    assert len(names) >= 2 and extra.name in names
    assert raw_status == 200 and len(first["networks"]) == 1
    assert any(link["rel"] == "next" for link in first["networks_links"])
    assert sorted(n["name"] for n in paged["networks"]) == names


def test_a_server_group_lives_as_long_as_the_group_s_nodes(real_cloud: Any) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    d = _driver(real_cloud, server_group="soft-anti-affinity", config_drive=True)
    try:
        for index in range(2):
            made.append(d.create(_spec(d, real_cloud, group, index), f"{group}-{index}", RenderedContext()).id)
        groups = [g for g in real_cloud.conn.compute.server_groups() if g.name == f"skyctl-{group}"]
        assert len(groups) == 1
        assert (groups[0].policy or (groups[0].policies or [None])[0]) == "soft-anti-affinity"
        assert sorted(groups[0].member_ids) == sorted(made)
        assert str(real_cloud.conn.compute.get_server(made[0]).has_config_drive) in ("True", "true")
        d.delete(made)
        for _ in iterate_timeout(60, "the servers to go away", interval=0.3):
            if not any(real_cloud.conn.compute.find_server(sid) for sid in made):
                break
        assert not [g for g in real_cloud.conn.compute.server_groups() if g.name == f"skyctl-{group}"]
    finally:
        d.close()
        real_cloud.delete_servers(made)
        for g in real_cloud.conn.compute.server_groups():
            if g.name == f"skyctl-{group}":
                real_cloud.conn.compute.delete_server_group(g)


def test_an_unknown_availability_zone_is_nova_s_400(real_cloud: Any) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    d = _driver(real_cloud, availability_zone="az-nowhere")
    try:
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d, real_cloud, group, 0), f"{group}-0", RenderedContext())
    finally:
        d.close()
    assert "The requested availability zone is not available" in info.value.line()
    assert real_cloud.servers(tags=f"skyctl-group={group}") == []
