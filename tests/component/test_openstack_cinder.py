"""The sandbox's Cinder v3 and boot-from-volume through openstacksdk, as any OpenStack client
would use them: the catalog, volumes, limits and quotas with Cinder's own refusals; Nova
booting from a new volume and deleting it with the server when asked; server groups and
Neutron's quota details and paging."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.testing.sandbox import OPENSTACK_IMAGE, start_openstack_site


@pytest.fixture
def cloud(tmp_path: Path, connect):
    site = start_openstack_site(tmp_path, "sara", site_overrides={"tenant_network": True})
    conn = connect(site.clouds_yaml, site.cloud)
    try:
        yield site, conn
    finally:
        conn.close()
        site.stop()


def test_cinder_is_in_the_catalog_and_serves_volumes_limits_and_quotas(cloud) -> None:
    from openstack import exceptions as os_exc

    site, conn = cloud
    assert conn.endpoint_for("block-storage").endswith("/volume/v3")
    image = conn.image.find_image(OPENSTACK_IMAGE)
    vol = conn.block_storage.create_volume(size=2, name="data")
    from_image = conn.block_storage.create_volume(size=1, image_id=image.id, name="root")
    assert {v.name: (v.size, v.status) for v in conn.block_storage.volumes()} == \
        {"data": (2, "available"), "root": (1, "available")}
    assert conn.block_storage.get_volume(from_image.id).is_bootable is True
    absolute = conn.block_storage.get_limits().absolute
    assert (absolute.total_volumes_used, absolute.total_gigabytes_used, absolute.max_total_volumes) == (2, 3, 10)
    quota = conn.block_storage.get_quota_set(site.front.project_id, usage=True)
    assert quota.usage["volumes"] == 2 and quota.volumes == 10
    site.world.quota.gigabytes = 4
    with pytest.raises(os_exc.HttpException) as info:
        conn.block_storage.create_volume(size=2)
    # cinder/exception.py VolumeSizeExceedsAvailableQuota, a 413.
    assert info.value.status_code == 413
    assert ("Requested volume or snapshot exceeds allowed gigabytes quota. Requested 2G, quota is 4G and 3G has "
            "been consumed.") in str(info.value)
    conn.block_storage.delete_volume(vol)
    conn.block_storage.delete_volume(from_image)
    with pytest.raises(os_exc.NotFoundException) as gone:
        conn.block_storage.get_volume(vol.id)
    assert f"Volume {vol.id} could not be found." in str(gone.value)
    assert site.world.volumes == {}


def test_nova_boots_from_a_new_volume_and_deletes_it_with_the_server_when_asked(cloud) -> None:
    from openstack import exceptions as os_exc

    site, conn = cloud
    image = conn.image.find_image(OPENSTACK_IMAGE)
    flavor = conn.compute.find_flavor("SCS-1V-2")
    net = conn.network.find_network("private")

    def boot(name: str, delete: bool, size: int | None = 3):
        bdm = {"boot_index": 0, "uuid": image.id, "source_type": "image", "destination_type": "volume",
               "delete_on_termination": delete}
        if size is not None:
            bdm["volume_size"] = size
        return conn.compute.create_server(name=name, flavor_id=flavor.id, networks=[{"uuid": net.id}],
                                          block_device_mapping=[bdm])

    with pytest.raises(os_exc.BadRequestException) as info:
        boot("no-size", True, None)
    assert "Images with destination_type 'volume' need to have a non-zero size specified" in str(info.value)
    with pytest.raises(os_exc.ForbiddenException) as zero:
        conn.compute.create_server(name="plain", flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}])
    assert "Only volume-backed servers are allowed for flavors with zero disk." in str(zero.value)
    goes = boot("goes", True)
    stays = boot("stays", False)
    server = conn.compute.get_server(goes.id)
    raw = conn.compute.get(f"/servers/{goes.id}").json()["server"]
    assert raw["image"] == ""     # Nova shows no image for a server booted from a volume
    assert [a["delete_on_termination"] for a in server.attached_volumes] == [True]
    vols = {v.attachments[0]["server_id"]: v for v in conn.block_storage.volumes()}
    assert vols[goes.id].size == 3 and vols[goes.id].status == "in-use" and vols[goes.id].is_bootable
    with pytest.raises(os_exc.BadRequestException) as in_use:
        conn.block_storage.delete_volume(vols[goes.id])
    assert "Invalid volume: Volume status must be available or error" in str(in_use.value)
    conn.compute.delete_server(goes)
    conn.compute.delete_server(stays)
    left = list(conn.block_storage.volumes())
    assert [(v.id, v.status) for v in left] == [(vols[stays.id].id, "available")]
    conn.block_storage.delete_volume(left[0])
    assert site.world.volumes == {} and site.world.vms == {}


def test_server_groups_neutron_quota_details_and_pages(cloud) -> None:
    from openstack import exceptions as os_exc

    site, conn = cloud
    group = conn.compute.create_server_group(name="pack", policies=["anti-affinity"])
    assert [g.name for g in conn.compute.server_groups()] == ["pack"]
    for i in range(9):
        conn.compute.create_server_group(name=f"g{i}", policies=["affinity"])
    with pytest.raises(os_exc.ForbiddenException) as info:
        conn.compute.create_server_group(name="one-too-many", policies=["affinity"])
    assert "Quota exceeded, too many server groups." in str(info.value)
    for g in list(conn.compute.server_groups()):
        conn.compute.delete_server_group(g)
    with pytest.raises(os_exc.NotFoundException) as gone:
        conn.compute.get_server_group(group.id)
    assert f"Instance group {group.id} could not be found." in str(gone.value)
    quota = conn.network.get_quota(site.front.project_id, details=True)
    assert quota.floating_ips == {"limit": 50, "used": 0, "reserved": 0}
    assert quota.ports["used"] == 1       # the router's interface
    site.world.neutron_max_limit = 1
    assert sorted(n.name for n in conn.network.networks()) == ["private", "public", "shared"]
