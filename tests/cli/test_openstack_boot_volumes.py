"""Boot volumes through the CLI on a sandbox OpenStack site (issue 13): a size whose disk no
flavor has lands on a diskless flavor that boots from a volume that big; the plan says which
flavors were passed over and which quota line binds; `delete` leaves no server, volume, port
or floating IP behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import Runner
from skyctl.testing.sandbox import OPENSTACK_IMAGE, OpenStackSite, start_openstack_site


@pytest.fixture
def sara(tmp_path: Path) -> Iterator[OpenStackSite]:
    (tmp_path / "sara").mkdir()
    site = start_openstack_site(tmp_path / "sara", "sara", site_overrides={"tenant_network": True})
    yield site
    site.stop()


@pytest.fixture
def fed(sara: OpenStackSite, sky_file: Callable[[dict[str, Any]], Path]) -> Path:
    return sky_file({
        "sites": {"sara": {"driver": "openstack", "tier": "remote", "cloud": sara.cloud,
                           "clouds_yaml": str(sara.clouds_yaml), "ssh": {"check_ready": False}}},
        "images": {"alma9": {"sara": OPENSTACK_IMAGE}},
        "sizes": {"big-disk": {"cpus": 1, "memory": "2GiB", "disk": 50}, "small": {"cpus": 1, "memory": "2GiB"}},
        "defaults": {"image": "alma9", "size": "big-disk", "contexts": ["base"]},
    })


def _left(site: OpenStackSite) -> dict[str, int]:
    w = site.world
    return {"servers": len(w.live_vms()), "volumes": len(w.volumes), "floating_ips": len(w.floating_ips),
            "ports": site.front.neutron.port_count(site.front.project_id) - 1}   # less the router's


def test_a_size_s_disk_lands_on_a_diskless_flavor_with_a_volume_that_big(skyctl_cli: Runner, fed, sara) -> None:
    plan = skyctl_cli("plan", "bv", "--count", "2", "-o", "json")
    assert plan.code == 0, plan.err
    dec = plan.json()["sites"][0]
    assert (dec["site"], dec["flavor"], dec["count"]) == ("sara", "SCS-1V-2", 2)
    passed = next(r["text"] for r in dec["reasons"] if r["code"] == "flavors_passed_over")
    assert "m1.small: disk 20 GiB, the size asks for 50 GiB" in passed
    res = skyctl_cli("launch", "bv", "--count", "2", "-o", "json")
    assert res.code == 0, res.err
    made = res.json()["nodes"]
    assert len(made) == 2
    assert sorted(v.size_gib for v in sara.world.volumes.values()) == [50, 50]
    assert {v.vm_id for v in sara.world.volumes.values()} == {n["id"] for n in made}
    gone = skyctl_cli("delete", "bv", "--yes", "-o", "json")
    assert gone.code == 0, gone.err
    assert _left(sara) == {"servers": 0, "volumes": 0, "floating_ips": 0, "ports": 0}


def test_the_gigabytes_quota_bounds_the_launch_and_the_plan_names_it(skyctl_cli: Runner, fed, sara) -> None:
    sara.world.quota.gigabytes = 120
    res = skyctl_cli("launch", "bq", "--count", "3", "-o", "json")
    data = res.json()
    assert res.code == 3, res.err     # partial: two 50 GiB volumes fit in 120
    assert data["created"] == 2 and "sara: quota gigabytes 0/120 used" in data["missing_reason"]
    assert skyctl_cli("delete", "bq", "--yes").code == 0
    assert _left(sara) == {"servers": 0, "volumes": 0, "floating_ips": 0, "ports": 0}


def test_an_image_min_ram_passes_a_flavor_over_with_the_reason(skyctl_cli: Runner, fed, sara) -> None:
    from dataclasses import replace

    image = next(i for i in sara.world.images.values() if i.name == OPENSTACK_IMAGE)
    sara.world.images[image.id] = replace(image, min_ram=4096)
    plan = skyctl_cli("plan", "mr", "--size", "small", "-o", "json")
    assert plan.code == 0, plan.err
    dec = plan.json()["sites"][0]
    assert dec["flavor"] == "m1.medium"
    passed = next(r["text"] for r in dec["reasons"] if r["code"] == "flavors_passed_over")
    assert f"m1.small: 2048 MiB RAM, image {OPENSTACK_IMAGE} needs min_ram 4096 MiB" in passed
