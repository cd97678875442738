"""The driver against a site with Cinder (issue 13, items 4-6): diskless flavors and
`boot_from_volume` boot from a new volume deleted with the node, Cinder's quota as a capacity
fault, capacity lines from Neutron and Cinder, special-hardware flavors, server groups, Nova
options, Neutron lists followed across pages. Every test counts what the sandbox holds after
`delete`: nothing skyctl made stays behind."""

from __future__ import annotations

from dataclasses import replace

import pytest

from skyctl.errors import InvalidRequest
from skyctl.model import CAPACITY_FAULT, SPECIAL_HARDWARE, NodeState, RenderedContext
from skyctl.sandbox.world import SFlavor
from skyctl.testing.contract import ContractTarget, make_spec, wait_state
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE


def _spec(driver, flavor_name: str | None = None, group: str = "g", index: int = 0, **changes):
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    spec = make_spec(driver, target, group, f"{group}-{index}", index)
    if flavor_name is not None:
        spec = replace(spec, flavor=next(f for f in driver.flavors() if f.name == flavor_name))
    return replace(spec, **changes) if changes else spec


def _left(site) -> dict[str, int]:
    """What the site still holds that a launch makes."""
    w, front = site.world, site.front
    project = front.project_id
    return {"servers": len(w.live_vms()), "volumes": len(w.volumes), "floating_ips": len(w.floating_ips),
            "ports": front.neutron.port_count(project) - (1 if w.tenant_network else 0),
            "server_groups": front.nova.server_groups.count(project)}


NOTHING = {"servers": 0, "volumes": 0, "floating_ips": 0, "ports": 0, "server_groups": 0}


@pytest.fixture
def sara_driver(sara, make_driver):
    return make_driver(sara, "sara")


def test_a_diskless_flavor_boots_from_a_new_volume_that_goes_with_the_node(sara, sara_driver) -> None:
    d = sara_driver
    node = d.create(_spec(d, "SCS-1V-2"), "g-0", RenderedContext())
    vm = sara.world.get_vm(node.id)
    vols = sara.world.vm_volumes(node.id)
    # The image is 300 MiB and says no min_disk: a 1 GiB volume made from it, deleted with the node.
    assert vm.error is None and vm.image_id == "" and vm.extra.get("boot_volume") is True
    assert [(v.size_gib, v.image_id, v.delete_on_termination, v.status) for v in vols] == \
        [(1, _spec(d).image.id, True, "in-use")]
    running = wait_state(d, node.id, {NodeState.RUNNING}, 30)
    assert running.state is NodeState.RUNNING
    d.prepare_access([running])
    d.delete([node.id])
    assert _left(sara) == NOTHING


def test_the_volume_size_is_the_size_s_disk_else_the_image_min_disk(sara, sara_driver, make_driver) -> None:
    d = sara_driver
    image = _spec(d).image
    a = d.create(_spec(d, "SCS-1V-2", disk_gib=30), "g-0", RenderedContext())
    sara.world.images[image.id] = replace(sara.world.images[image.id], min_disk=8)
    fresh = make_driver(sara, "sara")   # a new command: sees the image's min_disk
    try:
        b = fresh.create(_spec(fresh, "SCS-1V-2", index=1), "g-1", RenderedContext())
        assert [v.size_gib for v in sara.world.vm_volumes(a.id)] == [30]
        assert [v.size_gib for v in sara.world.vm_volumes(b.id)] == [8]
        fresh.delete([a.id, b.id])
    finally:
        fresh.close()
    assert _left(sara) == NOTHING


def test_boot_from_volume_on_the_site_boots_flavors_with_disk_from_a_volume_too(sara, make_driver) -> None:
    d = make_driver(sara, "sara", boot_from_volume=True)
    try:
        flavor = next(f for f in d.flavors() if f.name == "m1.small")
        assert flavor.boot_volume and flavor.disk_gib == 20
        node = d.create(_spec(d, "m1.small", disk_gib=12), "g-0", RenderedContext())
        assert [v.size_gib for v in sara.world.vm_volumes(node.id)] == [12]
        d.delete([node.id])
    finally:
        d.close()
    assert _left(sara) == NOTHING


def test_boot_from_volume_without_cinder_is_refused_before_anything_is_made(tmp_path, make_driver) -> None:
    from skyctl.testing.sandbox import start_openstack_site

    bare = start_openstack_site(tmp_path, "home", site_overrides={"block_storage": False})
    d = make_driver(bare, "home", boot_from_volume=True)
    try:
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d), "g-0", RenderedContext())
        assert info.value.field == "boot_from_volume" and "no block storage" in info.value.line()
        assert not any(f.boot_volume for f in d.flavors())
    finally:
        d.close()
        bare.stop()
    assert bare.world.vms == {}


def test_cinder_s_volume_quota_is_a_capacity_fault_that_fails_over(sara, sara_driver) -> None:
    d = sara_driver
    sara.world.quota.volumes = 0
    node = d.create(_spec(d, "SCS-1V-2"), "g-0", RenderedContext())
    seen = {n.id: n for n in d.list({"group": "g"})}[node.id]
    assert seen.state is NodeState.ERROR and seen.extra.get(CAPACITY_FAULT) is True
    # nova/compute/manager.py's BuildAbortException around cinder/exception.py VolumeLimitExceeded.
    assert seen.extra["fault"] == (f"Build of instance {node.id} aborted: Maximum number of volumes allowed (0) "
                                   f"exceeded for quota 'volumes'.")
    d.delete([node.id])
    assert _left(sara) == NOTHING


def test_capacity_names_ports_floating_ips_groups_volumes_and_gigabytes(sara, sara_driver, site, make_driver) -> None:
    sara.world.quota.floating_ips = 3
    sara.world.quota.gigabytes = 25
    cap = sara_driver.capacity()
    lines = {lim.resource: lim for lim in cap.others}
    assert set(lines) == {"ports", "floating_ips", "security_groups", "volumes", "gigabytes"}
    assert (lines["floating_ips"].limit, lines["floating_ips"].per_node) == (3, 1)   # sara: behind a router
    assert lines["ports"].per_node == 1 and lines["ports"].used == 1                 # the router's port
    assert lines["security_groups"].once == 1        # skyctl's SSH group is still to be made
    assert (lines["volumes"].limit, lines["gigabytes"].limit) == (10, 25)
    assert cap.as_dict()["gigabytes"] == {"used": 0, "limit": 25}
    node = sara_driver.create(_spec(sara_driver), "g-0", RenderedContext())   # makes the SSH group
    later = make_driver(sara, "sara")      # the next command: the group is there, no security group to make
    try:
        again = {lim.resource: lim for lim in later.capacity().others}
    finally:
        later.close()
    assert "security_groups" not in again and again["ports"].used == 2
    sara_driver.delete([node.id])
    home = make_driver(site, "home")                     # a provider network: no floating IP needed
    try:
        home_lines = {lim.resource: lim for lim in home.capacity().others}
    finally:
        home.close()
    assert "floating_ips" not in home_lines and home_lines["ports"].per_node == 1


def test_nova_s_port_quota_is_a_quota_not_an_auth_error(sara, sara_driver) -> None:
    from skyctl.errors import QuotaExceeded

    sara.world.quota.ports = 1      # the router holds it
    with pytest.raises(QuotaExceeded) as info:
        sara_driver.create(_spec(sara_driver), "g-0", RenderedContext())
    assert info.value.resource == "ports" and "Maximum number of ports exceeded" in info.value.line()
    assert _left(sara) == NOTHING


def test_special_hardware_flavors_carry_their_specs(sara, sara_driver) -> None:
    sara.world.flavors["20"] = SFlavor("20", "g1.gpu", 4, 16384, 40, extra_specs={"resources:VGPU": "1"})
    sara.world.flavors["21"] = SFlavor("21", "bm.small", 4, 16384, 40,
                                       extra_specs={"resources:CUSTOM_BAREMETAL_SMALL": "1", "resources:VCPU": "0"})
    sara.world.flavors["22"] = SFlavor("22", "m1.pinned", 4, 16384, 40, extra_specs={"hw:cpu_policy": "dedicated"})
    flavors = {f.name: f for f in sara_driver.flavors()}
    assert flavors["g1.gpu"].extra[SPECIAL_HARDWARE] == {"resources:VGPU": "1"}
    assert flavors["bm.small"].extra[SPECIAL_HARDWARE] == {"resources:CUSTOM_BAREMETAL_SMALL": "1"}
    assert SPECIAL_HARDWARE not in flavors["m1.pinned"].extra


def test_a_server_group_is_made_with_the_first_node_and_deleted_with_the_last(sara, make_driver) -> None:
    d = make_driver(sara, "sara", server_group="anti-affinity")
    try:
        a = d.create(_spec(d, group="g", index=0), "g-0", RenderedContext())
        b = d.create(_spec(d, group="g", index=1), "g-1", RenderedContext())
        groups = list(sara.front.nova.server_groups.groups.values())
        assert [(g.name, g.policy, sorted(g.members)) for g in groups] == \
            [("skyctl-g", "anti-affinity", sorted([a.id, b.id]))]
        d.delete([a.id])
        assert len(sara.front.nova.server_groups.groups) == 1     # b is still in it
        d.delete([b.id])
    finally:
        d.close()
    assert _left(sara) == NOTHING


def test_config_drive_zone_and_hints_reach_nova_and_an_unknown_zone_is_nova_s_400(sara, make_driver) -> None:
    d = make_driver(sara, "sara", config_drive=True, availability_zone="nova", scheduler_hints={"different_host": []})
    try:
        node = d.create(_spec(d), "g-0", RenderedContext())
        assert sara.world.get_vm(node.id).extra["config_drive"] == "True"
        d.delete([node.id])
    finally:
        d.close()
    d = make_driver(sara, "sara", availability_zone="az-nowhere")
    try:
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d), "g-0", RenderedContext())
        assert "The requested availability zone is not available" in info.value.line()
    finally:
        d.close()
    assert _left(sara) == NOTHING


def test_neutron_lists_are_followed_across_pages(sara, sara_driver) -> None:
    sara.world.neutron_max_limit = 1     # neutron.conf pagination_max_limit: every list in pages of one
    d = sara_driver
    made = [d.create(_spec(d, index=i), f"g-{i}", RenderedContext()) for i in range(3)]
    nodes = [wait_state(d, n.id, {NodeState.RUNNING}, 30) for n in made]
    # The network choice reads three networks, the floating IPs need every port: all paged.
    assert all(sara.world.get_vm(n.id).extra["network"] == "private" for n in made)
    ready = d.prepare_access(nodes)
    assert len(sara.world.floating_ips) == 3 and all(n.addresses[0].startswith("127.200.") for n in ready)
    d.delete([n.id for n in made])
    assert _left(sara) == NOTHING
