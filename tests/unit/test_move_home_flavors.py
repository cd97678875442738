"""A move home picks its flavor as a launch does: the image's min_disk counts there too."""

from __future__ import annotations

from skyctl.model import IMAGE_MIN_DISK, Capacity, Flavor, ImageRef, Limit, Tier
from skyctl.policy.bursting import BurstNode, decide_moves
from skyctl.policy.placement import Catalog, SiteSnapshot
from skyctl.policy.rules import HomePolicy, Rule

BIG_IMAGE = ImageRef(id="img", name="alma9", extra={IMAGE_MIN_DISK: 20})
NODE = BurstNode(name="web-3", group="web", site="cc", index=3, image="alma9", cpus=1, memory_mib=512)
RULE = Rule(name="r", from_sites=("home",), to_sites=("cc",), home=HomePolicy(cooldown_s=0))
ROOMY = Capacity(Limit("instances", 0, 10), Limit("cores", 0, 20), Limit("ram_mib", 0, 40960))
CATALOG = Catalog(images={"alma9": {"home": "alma9", "cc": "alma9"}})


def _sites(disk_gib: int) -> list[SiteSnapshot]:
    home = SiteSnapshot(name="home", driver="openstack", tier=Tier.LOCAL, capacity=ROOMY,
                        flavors=(Flavor("1", "m1.small", 1, 512, disk_gib=disk_gib),), images=(BIG_IMAGE,))
    cc = SiteSnapshot(name="cc", driver="opennebula", tier=Tier.REMOTE, capacity=ROOMY, images=(BIG_IMAGE,))
    return [home, cc]


def test_a_home_flavor_too_small_for_the_image_s_min_disk_moves_nothing() -> None:
    tick = decide_moves(RULE, _sites(disk_gib=10), [NODE], last_move_at=None, now=0.0, catalog=CATALOG)
    assert tick.moves == ()
    assert any("min_disk" in why for why in tick.reasons), tick.reasons


def test_a_home_flavor_with_room_for_the_image_takes_the_node_back() -> None:
    tick = decide_moves(RULE, _sites(disk_gib=40), [NODE], last_move_at=None, now=0.0, catalog=CATALOG)
    assert [(m.node, m.to_site) for m in tick.moves] == [("web-3", "home")]
