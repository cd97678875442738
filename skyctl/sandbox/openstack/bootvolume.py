"""Nova's block device mappings imitated, for what a server boots from: the image (a local disk
of the flavor's size) or a new volume made from the image (`source_type` image,
`destination_type` volume) that Cinder creates while the server builds, deleted with it when
`delete_on_termination` says so. Also Nova's checks of an image's `min_ram`/`min_disk`
against the flavor or the volume.

Where the texts come from (nova/exception.py and nova/compute/api.py, HEAD of openstack/nova):
InvalidBDMBootSequence, InvalidBDMImage, InvalidBDMFormat, InvalidBDM("Images with
destination_type 'volume' need to have a non-zero size specified") from
`_validate_bdm`; FlavorMemoryTooSmall, FlavorDiskSmallerThanMinDisk, VolumeSmallerThanMinDisk
from `_validate_flavor_image_nostatus`; BootFromVolumeRequiredForZeroDiskFlavor (403). A
volume Cinder refuses while the server builds (its quota) ends the build:
BuildAbortException "Build of instance %(instance_uuid)s aborted: %(reason)s" with Cinder's
message (nova/compute/manager.py `_build_resources` re-raises OverQuota that way), and a site
without Cinder fails the same way with "Failure prepping block device.".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyctl.sandbox.openstack.cinder import quota_message
from skyctl.sandbox.openstack.http import nova_error, short
from skyctl.sandbox.world import QuotaError, SFlavor, SImage, SiteWorld

GIB = 1024 ** 3
BOOT_SEQUENCE = ("Block Device Mapping is Invalid: Boot sequence for the instance and image/block device "
                 "mapping combination is not valid.")
ZERO_DISK = "Only volume-backed servers are allowed for flavors with zero disk."


@dataclass(frozen=True)
class BootVolume:
    """A new volume the server boots from (image -> volume), or an existing one (volume -> volume)."""

    image_id: str | None
    size_gib: int
    delete_on_termination: bool
    volume_id: str | None = None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def boot_volume(world: SiteWorld, bdms: Any, image_ref: str) -> BootVolume | None:
    """The volume a server boots from per its `block_device_mapping_v2`, or None (it boots from
    `imageRef` onto the flavor's disk). Raises Nova's 400s for mappings it refuses."""
    if bdms is None:
        return None
    if not isinstance(bdms, list) or not all(isinstance(b, dict) for b in bdms):
        raise nova_error(400, f"Invalid input for field/attribute block_device_mapping_v2. Value: {short(bdms)}. "
                              f"{short(bdms)} is not of type 'array'")
    boot = [b for b in bdms if str(b.get("boot_index")) == "0"]
    if not boot:
        if image_ref:
            return None    # the image is the boot device; other mappings are extra disks
        raise nova_error(400, BOOT_SEQUENCE)
    if len(boot) > 1:
        raise nova_error(400, BOOT_SEQUENCE)
    bdm = boot[0]
    source, dest = bdm.get("source_type"), bdm.get("destination_type", "volume")
    uid = str(bdm.get("uuid") or "")
    size = bdm.get("volume_size")
    delete = _flag(bdm.get("delete_on_termination", False))
    if source == "image" and dest == "local":
        return None
    if source == "image" and dest == "volume":
        image = world.images.get(uid)
        if image is None:
            raise nova_error(400, f"Block Device Mapping is Invalid: failed to get image {uid}.")
        try:
            gib = int(size or 0)
        except (TypeError, ValueError):
            raise nova_error(400, f"Invalid input for field/attribute volume_size. Value: {short(size)}. "
                                  f"{short(size)} is not valid under any of the given schemas") from None
        if gib <= 0:
            raise nova_error(400, "Images with destination_type 'volume' need to have a non-zero size specified")
        if image.min_disk and gib < image.min_disk:
            raise nova_error(400, "Volume is smaller than the minimum size specified in image metadata. Volume "
                                  f"size is {gib * GIB} bytes, minimum size is {image.min_disk * GIB} bytes.")
        return BootVolume(image.id, gib, delete)
    if source == "volume" and dest == "volume":
        vol = world.volumes.get(uid)
        if vol is None:
            raise nova_error(400, f"Block Device Mapping is Invalid: failed to get volume {uid}.")
        if vol.vm_id is not None:
            raise nova_error(400, f"Invalid volume: volume {uid} already attached")
        return BootVolume(vol.image_id, vol.size_gib, delete, volume_id=vol.id)
    raise nova_error(400, f"Block Device Mapping is Invalid: Unrecognized source_type {short(source)} and "
                          f"destination_type {short(dest)}.")


def check_flavor(flavor: SFlavor, image: SImage | None, boot: BootVolume | None, *, admin: bool) -> None:
    """Nova's checks of the flavor against the image it boots (and of a diskless flavor)."""
    if image is not None and image.min_ram and flavor.ram_mib < image.min_ram:
        raise nova_error(400, "Flavor's memory is too small for requested image.")
    if boot is not None:
        return
    if flavor.disk_gib == 0 and not admin:
        # Nova refuses an image-backed server on a diskless flavor unless the policy allows it
        # (admins only by default): BootFromVolumeRequiredForZeroDiskFlavor.
        raise nova_error(403, ZERO_DISK)
    if image is not None and image.min_disk and 0 < flavor.disk_gib < image.min_disk:
        raise nova_error(400, "Flavor's disk is smaller than the minimum size specified in image metadata. "
                              f"Flavor disk is {flavor.disk_gib * GIB} bytes, minimum size is "
                              f"{image.min_disk * GIB} bytes.")


def make_volume(world: SiteWorld, boot: BootVolume, project_id: str, vm_id: str) -> tuple[str | None, str | None]:
    """What the compute host does while building: (the boot volume's id, None), or (None, the
    build fault) when Cinder refuses it or the site has none."""
    if not world.block_storage:
        return None, f"Build of instance {vm_id} aborted: Failure prepping block device."
    if boot.volume_id is not None:
        with world.lock:
            vol = world.volumes[boot.volume_id]
            vol.vm_id, vol.delete_on_termination = vm_id, boot.delete_on_termination
        return vol.id, None
    try:
        vol = world.create_volume(project_id, boot.size_gib, image_id=boot.image_id, vm_id=vm_id,
                                  delete_on_termination=boot.delete_on_termination)
    except QuotaError as q:
        return None, f"Build of instance {vm_id} aborted: {quota_message(q)}"
    return vol.id, None
