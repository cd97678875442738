"""Placement with boot volumes, image minimums, special hardware and the quota lines beyond
instances/cores/RAM (issue 13): which flavor, why the others were passed over, and which quota
line limits the room."""

from __future__ import annotations

from skyctl.model import (BOOT_VOLUME, EXTRA_SPECS, FLAVOR_UNUSABLE, GIB, IMAGE_MIN_DISK, IMAGE_MIN_RAM, IMAGE_SIZE,
                          SPECIAL_HARDWARE, Capacity, Flavor, ImageRef, Limit, Resources, Tier, boot_volume_gib)
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, consume, place

CATALOG = Catalog(images={"alma9": {"s": "alma9"}}, sizes={"small": Resources(1, 2048)})


def _cap(*others: Limit) -> Capacity:
    return Capacity(Limit("instances", 0, None), Limit("cores", 0, None), Limit("ram_mib", 0, None), others=others)


def _site(flavors, *, others=(), image_extra=None) -> SiteSnapshot:
    image = ImageRef("img", "alma9", extra={IMAGE_SIZE: 300 * 1024 * 1024, **(image_extra or {})})
    return SiteSnapshot("s", "openstack", Tier.REMOTE, capacity=_cap(*others), flavors=tuple(flavors),
                        images=(image,))


def _req(count: int = 1, **kw) -> Request:
    return Request("g", count, 1, 2048, "alma9", "small", **kw)


DISK = Flavor("1", "m1.small", 1, 2048, 20)
DISKLESS = Flavor("2", "SCS-1V-2", 1, 2048, 0, extra={BOOT_VOLUME: True})


def test_boot_volume_size_follows_the_size_then_min_disk_then_the_image() -> None:
    img = ImageRef("i", "x", extra={IMAGE_SIZE: GIB + 1})
    assert boot_volume_gib(0, img) == 2
    assert boot_volume_gib(0, ImageRef("i", "x", extra={IMAGE_SIZE: 0})) == 1
    assert boot_volume_gib(0, ImageRef("i", "x", extra={IMAGE_MIN_DISK: 8, IMAGE_SIZE: GIB})) == 8
    assert boot_volume_gib(30, ImageRef("i", "x", extra={IMAGE_MIN_DISK: 8})) == 30
    assert boot_volume_gib(4, ImageRef("i", "x", extra={IMAGE_MIN_DISK: 8})) == 8


def test_a_diskless_flavor_that_boots_from_a_volume_is_picked_when_it_is_all_there_is() -> None:
    plan = place(_req(), [_site([DISKLESS])], catalog=CATALOG)
    assert [(d.site, d.flavor.name, d.count) for d in plan.placements] == [("s", "SCS-1V-2", 1)]


def test_a_flavor_with_its_own_disk_is_preferred_to_a_boot_volume_on_a_tie() -> None:
    plan = place(_req(), [_site([DISKLESS, DISK])], catalog=CATALOG)
    assert plan.placements[0].flavor.name == "m1.small"


def test_a_diskless_flavor_without_block_storage_is_passed_over_with_the_reason() -> None:
    bare = Flavor("2", "SCS-1V-2", 1, 2048, 0, extra={FLAVOR_UNUSABLE: "the site has no block storage (Cinder)"})
    plan = place(_req(), [_site([bare])], catalog=CATALOG)
    assert plan.placed == 0
    assert "SCS-1V-2: the site has no block storage" in plan.decisions[0].reasons[0].text


def test_image_min_ram_and_min_disk_pass_smaller_flavors_over_and_the_plan_says_why() -> None:
    tiny_ram = Flavor("1", "m1.small", 1, 2048, 40)
    small_disk = Flavor("3", "m2.small", 1, 4096, 10)
    right = Flavor("4", "m3.small", 1, 4096, 40)
    site = _site([tiny_ram, small_disk, right], image_extra={IMAGE_MIN_RAM: 4096, IMAGE_MIN_DISK: 20})
    plan = place(_req(), [site], catalog=CATALOG)
    dec = plan.placements[0]
    assert dec.flavor.name == "m3.small"
    passed = next(r for r in dec.reasons if r.code == "flavors_passed_over").text
    assert "m1.small: 2048 MiB RAM, image alma9 needs min_ram 4096 MiB" in passed
    assert "m2.small: disk 10 GiB, image alma9 needs min_disk 20 GiB" in passed


def test_a_boot_volume_flavor_is_not_held_to_min_disk_and_the_size_disk_needs_a_big_enough_flavor() -> None:
    site = _site([DISKLESS], image_extra={IMAGE_MIN_DISK: 20})
    assert place(_req(), [site], catalog=CATALOG).placements[0].flavor.name == "SCS-1V-2"
    plan = place(_req(disk_gib=50), [_site([DISK])], catalog=CATALOG)
    assert plan.placed == 0 and "disk 20 GiB, the size asks for 50 GiB" in plan.decisions[0].reasons[0].text


def test_special_hardware_is_picked_only_when_the_size_asks_for_it() -> None:
    gpu = Flavor("9", "g1.small", 1, 2048, 20, extra={SPECIAL_HARDWARE: {"resources:VGPU": "1"},
                                                       EXTRA_SPECS: {"resources:VGPU": "1"}})
    plain = Flavor("5", "m1.medium", 2, 4096, 40)
    plan = place(_req(), [_site([gpu, plain])], catalog=CATALOG)
    dec = plan.placements[0]
    assert dec.flavor.name == "m1.medium"
    assert "g1.small: special hardware (resources:VGPU=1) the size does not ask for" in \
        next(r for r in dec.reasons if r.code == "flavors_passed_over").text
    asked = place(_req(extra_specs=(("resources:VGPU", "1"),)), [_site([gpu, plain])], catalog=CATALOG)
    assert asked.placements[0].flavor.name == "g1.small"
    none = place(_req(extra_specs=(("resources:VGPU", "2"),)), [_site([gpu, plain])], catalog=CATALOG)
    assert none.placed == 0 and "lacks the size's extra specs resources:VGPU=2" in none.decisions[0].reasons[0].text


def test_volume_and_gigabyte_quota_bound_boot_volume_nodes_and_the_plan_names_the_line() -> None:
    site = _site([DISKLESS], others=(Limit("volumes", 8, 10), Limit("gigabytes", 0, 1000)))
    plan = place(_req(5), [site], catalog=CATALOG)
    assert plan.placed == 2 and "quota volumes 8/10 used" in (plan.unplaced_reason or "")
    site = _site([DISKLESS], others=(Limit("volumes", 0, 10), Limit("gigabytes", 1000, 1000)))
    full = place(_req(), [site], catalog=CATALOG)
    assert full.placed == 0 and full.decisions[0].reasons[0].text == "quota: gigabytes 1000/1000 used"
    # A flavor with its own disk takes no volume quota.
    site = _site([DISK], others=(Limit("volumes", 10, 10), Limit("gigabytes", 1000, 1000)))
    assert place(_req(3), [site], catalog=CATALOG).placed == 3


def test_ports_floating_ips_and_a_group_still_to_make_bound_the_room() -> None:
    fips = _site([DISK], others=(Limit("floating_ips", 48, 50, per_node=1), Limit("ports", 0, 500, per_node=1)))
    plan = place(_req(4), [fips], catalog=CATALOG)
    assert plan.placed == 2 and "quota floating_ips 48/50 used" in (plan.unplaced_reason or "")
    groups = _site([DISK], others=(Limit("security_groups", 10, 10, once=1),))
    plan = place(_req(), [groups], catalog=CATALOG)
    assert plan.placed == 0 and plan.decisions[0].reasons[0].text == "quota: security_groups 10/10 used"


def test_consume_takes_volume_lines_and_the_once_line_only_once() -> None:
    site = _site([DISKLESS], others=(Limit("volumes", 0, 10), Limit("gigabytes", 0, 100),
                                     Limit("security_groups", 3, 10, once=1), Limit("ports", 0, 50, per_node=1)))
    after = consume(site, 3, 1, 2048, volume_gib=5)
    lines = {lim.resource: lim for lim in after.capacity.others}
    assert (lines["volumes"].used, lines["gigabytes"].used, lines["ports"].used) == (3, 15, 3)
    # The group is made once: counted once, then no longer pending.
    assert (lines["security_groups"].used, lines["security_groups"].once) == (4, 0)


def test_a_size_s_disk_and_extra_specs_reach_the_request_and_a_scaled_group() -> None:
    import pytest

    from skyctl.config import parse
    from skyctl.errors import ConfigError
    from skyctl.model import GroupSpec
    from skyctl.ops.request import request_for, resolve

    fed = parse({"sites": {"s": {"driver": "memory"}}, "images": {"alma9": {"s": "alma9"}},
                 "sizes": {"gpu": {"cpus": 1, "memory": "2GiB", "disk": 40, "extra_specs": {"resources:VGPU": "1"}}},
                 "defaults": {"image": "alma9", "size": "gpu"}}, validate_drivers=False)
    req = resolve(fed, "g", 2)
    assert (req.disk_gib, req.extra_specs) == (40, (("resources:VGPU", "1"),))
    more = request_for("g", GroupSpec(image="alma9", cpus=1, memory_mib=2048, size="gpu"), 1, fed=fed)
    assert (more.disk_gib, more.extra_specs) == (40, (("resources:VGPU", "1"),))
    with pytest.raises(ConfigError):
        parse({"sites": {"s": {"driver": "memory"}}, "images": {}, "sizes": {"bad": {"cpus": 1, "memory": 1, "disk": 0}}},
              validate_drivers=False)
