"""The OpenStack driver's floating IPs (`ssh.floating_ip`) against the sandbox front:
prepare_access allocates and attaches one per node and puts it first, list shows it first,
delete releases it (also when the server is already gone), nothing is leaked or taken twice."""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable
from typing import Any

import pytest

from skyctl.errors import InvalidRequest, QuotaExceeded
from skyctl.model import Node, NodeState, RenderedContext
from skyctl.polling import iterate_timeout
from skyctl.testing.contract import ContractTarget, make_spec
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite
from skyctl_openstack.driver import OpenStackDriver


FLOATING = {"floating_ip": True}   # the site's ssh section


@pytest.fixture
def driver(site: SandboxSite, make_driver: Callable[..., OpenStackDriver]) -> OpenStackDriver:
    return make_driver(site, ssh=FLOATING)


def _running(driver: OpenStackDriver, site: SandboxSite, count: int = 1, group: str = "fl") -> list[Node]:
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    made = []
    for i in range(count):
        name = f"{group}-{i}"
        made.append(driver.create(make_spec(driver, target, group, name, i), name, RenderedContext()))
    for _ in iterate_timeout(20, "the nodes come up", interval=0.02):
        nodes = [n for n in driver.list({"group": group}) if n.id in {m.id for m in made}]
        if len(nodes) == count and all(n.state is NodeState.RUNNING for n in nodes):
            return sorted(nodes, key=lambda n: n.name)
    raise AssertionError("unreachable")  # pragma: no cover - iterate_timeout raises on expiry


def _connect(site: SandboxSite) -> Any:
    """An openstacksdk connection as the site's member user (loaded as the driver loads it)."""
    import openstack

    from skyctl_openstack.transport import load_region

    return openstack.connection.Connection(config=load_region(site.cloud, str(site.clouds_yaml), None, None))


def _fip_addresses(site: SandboxSite) -> set[str]:
    return {f.address for f in site.world.floating_ips.values()}


def test_prepare_access_puts_a_floating_ip_first_once(driver: OpenStackDriver, site: SandboxSite) -> None:
    nodes = _running(driver, site, count=2)
    fixed = {n.id: n.addresses for n in nodes}
    ready = driver.prepare_access(nodes)
    assert [n.id for n in ready] == [n.id for n in nodes]
    for n in ready:
        vm = site.world.get_vm(n.id)
        assert n.addresses[0] == vm.floating_addresses[0] and n.addresses[0].startswith("127.200.")
        assert n.addresses[1:] == fixed[n.id]
    assert len({n.addresses[0] for n in ready}) == 2 and len(site.world.floating_ips) == 2
    # Nova now shows them too, so a plain list (no Neutron call) gives the same first address.
    assert {n.id: n.addresses[0] for n in driver.list({"group": "fl"})} == {n.id: n.addresses[0] for n in ready}
    # Again (`skyctl wait` after `launch --wait`): the same addresses, nothing new allocated.
    again = driver.prepare_access(driver.list({"group": "fl"}))
    assert {n.id: n.addresses for n in again} == {n.id: n.addresses for n in ready}
    assert len(site.world.floating_ips) == 2


def test_delete_releases_the_floating_ip(driver: OpenStackDriver, site: SandboxSite) -> None:
    keep, gone = driver.prepare_access(_running(driver, site, count=2))
    driver.delete([gone.id])
    assert _fip_addresses(site) == {keep.addresses[0]}
    driver.delete([keep.id, keep.id])
    assert site.world.floating_ips == {}


def test_a_server_already_gone_still_has_its_ip_released(driver: OpenStackDriver, site: SandboxSite) -> None:
    node = driver.prepare_access(_running(driver, site))[0]
    site.world.delete_vm(node.id)          # deleted behind skyctl's back: Neutron only detaches
    assert _fip_addresses(site) == {node.addresses[0]}
    driver.delete([node.id])
    assert site.world.floating_ips == {}


def test_an_ip_allocated_earlier_but_not_attached_is_reused(driver: OpenStackDriver, site: SandboxSite) -> None:
    node = driver.prepare_access(_running(driver, site))[0]
    fip = next(iter(site.world.floating_ips.values()))
    site.world.attach_floating_ip(fip.id, None)    # e.g. detached by hand
    again = driver.prepare_access([node])[0]
    assert again.addresses[0] == fip.address and list(site.world.floating_ips) == [fip.id]


def test_a_users_own_floating_ip_is_used_and_never_released(driver: OpenStackDriver, site: SandboxSite) -> None:
    node = _running(driver, site)[0]
    conn = _connect(site)
    try:
        ext = next(iter(conn.network.networks(is_router_external=True)))
        port = next(iter(conn.network.ports(device_id=node.id)))
        theirs = conn.network.create_ip(floating_network_id=ext.id, port_id=port.id)
    finally:
        conn.close()
    assert driver.prepare_access([node])[0].addresses[0] == theirs.floating_ip_address
    assert len(site.world.floating_ips) == 1
    driver.delete([node.id])
    assert _fip_addresses(site) == {theirs.floating_ip_address}


def test_without_floating_ip_nothing_is_allocated(site: SandboxSite,
                                                 make_driver: Callable[..., OpenStackDriver]) -> None:
    d = make_driver(site, ssh={"floating_ip": False})
    try:
        nodes = _running(d, site)
        before = site.world.request_count
        assert d.prepare_access(nodes) == nodes
        assert site.world.request_count == before      # not even a Neutron request
        d.delete([nodes[0].id])
        assert site.world.floating_ips == {}
    finally:
        d.close()


def test_floating_ip_quota_is_quota_exceeded(driver: OpenStackDriver, site: SandboxSite) -> None:
    site.world.quota.floating_ips = 0
    nodes = _running(driver, site)
    with pytest.raises(QuotaExceeded) as err:
        driver.prepare_access(nodes)
    assert err.value.site == "home" and err.value.resource == "floatingip"


def test_floating_network_option(site: SandboxSite, make_driver: Callable[..., OpenStackDriver]) -> None:
    named = make_driver(site, ssh=FLOATING, floating_network="public")
    bad = make_driver(site, ssh=FLOATING, floating_network="no-such-net")
    try:
        nodes = _running(named, site)
        assert named.prepare_access(nodes)[0].addresses[0].startswith("127.200.")
        with pytest.raises(InvalidRequest) as err:
            bad.prepare_access([replace(nodes[0], id="other")])
        assert err.value.site == "home" and err.value.field == "floating_network"
    finally:
        named.close()
        bad.close()


def test_deleting_any_node_sweeps_ips_whose_server_vanished(driver: OpenStackDriver, site: SandboxSite) -> None:
    vanished, other = driver.prepare_access(_running(driver, site, count=2))
    site.world.delete_vm(vanished.id)      # gone behind skyctl's back: `delete` never sees its id
    driver.delete([other.id])
    assert site.world.floating_ips == {}

