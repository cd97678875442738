"""The driver against sites set up as production OpenStack clouds are (issue 13): refusals
that are not authentication errors, faults after rescheduling, several networks, a default
security group that lets nothing in."""

from __future__ import annotations

import pytest

from skyctl.errors import AuthError, InvalidRequest
from skyctl.model import CAPACITY_FAULT, NodeState, RenderedContext
from skyctl.sandbox.world import SFlavor
from skyctl.testing.contract import ContractTarget, make_spec, wait_state
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl_openstack.driver import OpenStackDriver


def _create(driver, site, group="g", index=0, context=RenderedContext(), **kw):
    name = f"{group}-{index}"
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    return driver.create(make_spec(driver, target, group, name, index, **kw), name, context)


def test_a_diskless_flavor_is_refused_as_a_request_not_as_credentials(driver, site) -> None:
    from dataclasses import replace

    site.world.flavors["0"] = SFlavor("0", "d1.small", 1, 512, disk_gib=0)
    diskless = next(f for f in driver.flavors() if f.name == "d1.small")
    diskless = replace(diskless, extra={})   # as if skyctl did not know to boot it from a volume
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    spec = replace(make_spec(driver, target, "g", "g-0", 0), flavor=diskless)
    with pytest.raises(InvalidRequest) as info:
        driver.create(spec, "g-0", RenderedContext())
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


# ---------------------------------------------------------------- the right network


def test_choose_network_is_the_documented_rule() -> None:
    from skyctl_openstack.network import choose_network

    ext = {"id": "e", "name": "public", "router:external": True, "shared": False}
    shared = {"id": "s", "name": "shared", "router:external": False, "shared": True}
    own = {"id": "o", "name": "private", "router:external": False, "shared": False}
    assert choose_network([ext], "x") is None                        # Nova's "auto" then decides
    assert choose_network([shared, ext], "x") is shared               # the only one that is not external
    assert choose_network([shared, own, ext], "x") is own             # else the project's own
    other = {"id": "o2", "name": "lab", "router:external": False, "shared": False}
    with pytest.raises(InvalidRequest) as info:
        choose_network([shared, own, other, ext], "sara")
    err = info.value
    assert err.field == "network" and "sites.sara.network" in err.line()
    assert "private (o)" in err.line() and "lab (o2)" in err.line() and "public" not in err.line()


def test_with_two_networks_the_project_own_is_taken_never_a_raw_409(sara, make_driver) -> None:
    d = make_driver(sara, "sara")
    try:
        node = _create(d, sara)
        assert sara.world.get_vm(node.id).extra["network"] == "private"
    finally:
        d.close()


def test_network_by_name_or_list_and_nova_409_said_with_the_field(sara, make_driver) -> None:
    d = make_driver(sara, "sara", network=["shared"])
    try:
        assert sara.world.get_vm(_create(d, sara).id).extra["network"] == "shared"
    finally:
        d.close()
    d = make_driver(sara, "sara", network="auto")   # Nova's own choice, asked for explicitly
    try:
        with pytest.raises(InvalidRequest) as info:
            _create(d, sara, index=1)
        assert info.value.field == "network" and "Multiple possible networks found" in info.value.line()
        assert "network field" in info.value.line()
    finally:
        d.close()


def test_network_option_is_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OpenStackDriver.options_model(cloud="c", network=["auto", "x"])
    with pytest.raises(ValidationError):
        OpenStackDriver.options_model(cloud="c", network=[])
    assert OpenStackDriver.options_model(cloud="c", network=[" a ", "b"]).network == ["a", "b"]


# ---------------------------------------------------------------- reachable by default


def _groups(site, name):
    return [g for g in site.front.neutron.security_groups.groups.values() if g.name == name]


def test_an_ssh_group_is_made_once_per_site_and_attached_with_the_site_groups(site, make_driver) -> None:
    d = make_driver(site)
    try:
        first = _create(d, site)
        second = _create(d, site, index=1)
    finally:
        d.close()
    d = make_driver(site)   # another command: the group is found, not made again
    try:
        third = _create(d, site, index=2)
    finally:
        d.close()
    made = _groups(site, "skyctl-ssh-22-0.0.0.0/0")
    assert len(made) == 1
    rules = [r for r in site.front.neutron.security_groups.rules.values() if r.group_id == made[0].id
             and r.direction == "ingress"]
    assert [(r.protocol, r.port_min, r.port_max, r.remote_ip_prefix) for r in rules] == \
        [("tcp", 22, 22, "0.0.0.0/0")]
    for node in (first, second, third):
        vm = site.world.get_vm(node.id)
        assert vm.extra["security_groups"] == ["skyctl-ssh-22-0.0.0.0/0", "default"]
        # The guest would let this client in on SSH.
        assert site.front.neutron.security_groups.admits(vm, "127.0.0.1", 2222)


def test_ssh_cidr_and_port_shape_the_rule_and_null_makes_none(site, make_driver) -> None:
    from skyctl.site import SshConfig

    narrow = make_driver(site, ssh=SshConfig(cidr="192.0.2.7/24", port=2222), security_groups=["default"])
    try:
        vm = site.world.get_vm(_create(narrow, site).id)
    finally:
        narrow.close()
    assert vm.extra["security_groups"] == ["skyctl-ssh-2222-192.0.2.0/24", "default"]
    assert not site.front.neutron.security_groups.admits(vm, "127.0.0.1", 2222)
    none = make_driver(site, ssh=SshConfig(cidr=None), security_groups=["default"])
    try:
        vm = site.world.get_vm(_create(none, site, index=1).id)
    finally:
        none.close()
    assert vm.extra["security_groups"] == ["default"]
    with pytest.raises(ValueError):
        SshConfig(cidr="not-a-range")


# ---------------------------------------------------------------- diskless flavors


def test_diskless_flavors_boot_from_a_volume_where_the_site_has_cinder_else_are_passed_over(
        sara, tmp_path, make_driver) -> None:
    from skyctl.model import BOOT_VOLUME, FLAVOR_UNUSABLE
    from skyctl.testing.sandbox import start_openstack_site

    d = make_driver(sara, "sara")
    try:
        flavors = {f.name: f for f in d.flavors()}
    finally:
        d.close()
    assert flavors["SCS-1V-2"].disk_gib == 0 and flavors["SCS-1V-2"].extra[BOOT_VOLUME] is True
    assert FLAVOR_UNUSABLE not in flavors["SCS-1V-2"].extra
    assert not flavors["m1.small"].boot_volume and FLAVOR_UNUSABLE not in flavors["m1.small"].extra
    (tmp_path / "nocinder").mkdir()
    bare = start_openstack_site(tmp_path / "nocinder", "sara", site_overrides={"tenant_network": True,
                                                                                "block_storage": False})
    d = make_driver(bare, "sara")
    try:
        flavors = {f.name: f for f in d.flavors()}
    finally:
        d.close()
        bare.stop()
    assert "no block storage" in flavors["SCS-1V-2"].extra[FLAVOR_UNUSABLE]
    assert not flavors["SCS-1V-2"].boot_volume


# ---------------------------------------------------------------- floating IPs where needed (auto)


def test_auto_attaches_a_floating_ip_only_behind_a_router_and_delete_releases_it(sara, site, make_driver) -> None:
    d = make_driver(sara, "sara")   # ssh.floating_ip defaults to auto
    try:
        own = _create(d, sara)
        node = next(n for n in d.prepare_access([d.get(own.id)]) if n.id == own.id)
        fips = list(sara.world.floating_ips.values())
        assert len(fips) == 1 and node.addresses[0] == fips[0].address
        d.delete([own.id])
        assert sara.world.floating_ips == {}   # released with the node
    finally:
        d.close()
    on_shared = make_driver(sara, "sara", network="shared")   # a shared network is reached directly
    try:
        made = wait_state(on_shared, _create(on_shared, sara, index=1).id, {NodeState.RUNNING}, 30)
        assert made.addresses and on_shared.prepare_access([made])[0].addresses == made.addresses
        assert sara.world.floating_ips == {}
    finally:
        on_shared.close()
    home = make_driver(site)        # a provider network: no router, no floating IP
    try:
        made = _create(home, site)
        home.prepare_access([home.get(made.id)])
        assert site.world.floating_ips == {}
    finally:
        home.close()


def test_a_neutron_without_l3_has_no_routed_networks() -> None:
    from skyctl_openstack.network import Neutron

    class NoL3:
        def request(self, service, method, path, *, ok=(), **kw):
            assert path == "/routers" and 404 in ok   # the L3 service answers /routers
            return 404, {"NeutronError": {"message": "The resource could not be found."}}

    assert Neutron(lambda: NoL3(), "s").routed_networks() == set()


def test_capacity_retries_each_of_its_requests_on_its_own(sara, make_driver) -> None:
    """On a tenant-network site capacity() makes about six requests; a flaky cloud fails one of
    six far more often than one, so each is retried alone (the whole read would rarely pass)."""
    from skyctl.errors import Transient

    d = make_driver(sara, "sara")
    try:
        api = d._api()
        real = api.request
        failed: set[str] = set()

        def first_try_fails(service, method, path, **kw):   # every request fails once, then answers
            if path not in failed:
                failed.add(path)
                raise Transient(f"HTTP 503 on {path}", site="sara")
            return real(service, method, path, **kw)

        api.request = first_try_fails
        cap = d.capacity()
        assert len(failed) >= 4, failed   # limits, Neutron quota, SSH group, routers, networks...
        assert {line.resource for line in cap.others} >= {"ports", "floating_ips"}
    finally:
        d.close()
