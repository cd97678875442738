"""Pure translation between Nova/Glance/Neutron JSON and skyctl's model. No I/O, no SDK.

Everything here is a function of its arguments, so the label encoding and the resources are
unit-tested without a server. The state map is in `states`, the error texts in `errors`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from skyctl.model import (BOOT_VOLUME, CAPACITY_FAULT, EXTRA_SPECS, FLAVOR_UNUSABLE, IMAGE_MIN_DISK, IMAGE_MIN_RAM,
                          IMAGE_SIZE, SCHEDULING, SPECIAL_HARDWARE, L_GROUP, L_LAUNCH, LABEL_PREFIX, Capacity, Flavor,
                          ImageRef, Labels, Limit, Node)

from skyctl_openstack.states import node_state

DRIVER_NAME = "openstack"
META_PREFIX = f"{LABEL_PREFIX}:"          # metadata keys: skyctl:group, skyctl:launch, ...
MANAGED_TAG = LABEL_PREFIX                 # every server skyctl creates carries this bare tag
TAGGED_LABELS = (L_GROUP, L_LAUNCH)        # labels also written as server tags, filtered server-side
DISPLAY_KEYS = ("image", "size")           # metadata for display only, not labels
_TAG_MAX = 60
_META_MAX = 255

# The description skyctl gives the floating IPs it allocates: names the server it is for, so
# it can be found (and released) even after the server and its port are gone.
FLOATING_DESCRIPTION = f"{LABEL_PREFIX} node "
NO_VALID_HOST = "No valid host"
# Nova's MaxRetriesExceeded (a NoValidHost, nova/exception.py), raised by the conductor
# (nova/conductor/manager.py) when every alternate host failed the build: capacity-like.
MAX_RETRIES = "Exceeded maximum number of retries"


# ---------------------------------------------------------------- labels


def tag_for(key: str, value: str) -> str | None:
    """The server tag for a label, or None when Nova could not store it (length, ',' or '/')."""
    tag = f"{LABEL_PREFIX}-{key}={value}"
    if len(tag) > _TAG_MAX or "," in tag or "/" in tag:
        return None
    return tag


def labels_to_tags(labels: Labels) -> list[str]:
    tags = [MANAGED_TAG]
    for key in TAGGED_LABELS:
        if key in labels:
            tag = tag_for(key, str(labels[key]))
            if tag:
                tags.append(tag)
    return tags


def labels_to_metadata(labels: Labels, *, image: str = "", size: str = "") -> dict[str, str]:
    md = {f"{META_PREFIX}{k}": str(v)[:_META_MAX] for k, v in labels.items()}
    if image:
        md[f"{META_PREFIX}image"] = image[:_META_MAX]
    if size:
        md[f"{META_PREFIX}size"] = size[:_META_MAX]
    return md


def metadata_to_labels(metadata: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in metadata.items():
        if k.startswith(META_PREFIX):
            key = k[len(META_PREFIX):]
            if key not in DISPLAY_KEYS:
                out[key] = str(v)
    return out


def selector_query(selector: Labels | None, managed_only: bool) -> tuple[list[str], dict[str, str]]:
    """Split a selector into server-side tags and the labels left to check on the client."""
    sel = dict(selector or {})
    if not managed_only:
        return [], sel
    tags = [MANAGED_TAG]
    rest: dict[str, str] = {}
    for k, v in sel.items():
        tag = tag_for(k, str(v)) if k in TAGGED_LABELS else None
        if tag:
            tags.append(tag)
        else:
            rest[k] = str(v)
    return tags, rest


def matches(node: Node, selector: Mapping[str, str], managed_only: bool) -> bool:
    if not node.managed:
        return not managed_only
    return all(node.labels.get(k) == str(v) for k, v in selector.items())


def keypair_name(public_key: str) -> str:
    """A stable key pair name for a public key: skyctl-<md5 of the key blob, 12 hex>."""
    parts = public_key.split()
    blob = parts[1] if len(parts) > 1 else public_key
    return f"{LABEL_PREFIX}-{hashlib.md5(blob.encode(), usedforsecurity=False).hexdigest()[:12]}"


# ---------------------------------------------------------------- resources


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def server_addresses(addresses: Mapping[str, Any] | None, family: str = "auto") -> tuple[str, ...]:
    """Every address of a server in the order skyctl tries them (ssh/exec connect to the first):
    `auto`: floating ones first (what reaches it from outside), then IPv4, then IPv6; `ipv4` or
    `ipv6` (ssh.address_family): that family first, floating before fixed within it."""
    entries: list[tuple[str, bool, int]] = []
    for listed in (addresses or {}).values():
        for a in listed or []:
            addr = a.get("addr")
            if not addr:
                continue
            version = int(a.get("version") or (6 if ":" in str(addr) else 4))
            entries.append((str(addr), a.get("OS-EXT-IPS:type") == "floating", version))
    want = {"ipv4": 4, "ipv6": 6}.get(family)

    def rank(e: tuple[str, bool, int]) -> tuple[int, int, int]:
        _, floating, version = e
        if want is None:
            return (0 if floating else 1, version, 0)
        return (0 if version == want else 1, 0 if floating else 1, 0)

    return tuple(dict.fromkeys(addr for addr, _, _ in sorted(entries, key=rank)))


SERVER_GROUP_PREFIX = f"{LABEL_PREFIX}-"


def server_group_name(group: str) -> str:
    """The Nova server group skyctl makes for one of its groups on a site."""
    return f"{SERVER_GROUP_PREFIX}{group}"


def server_group_owner(group: Mapping[str, Any]) -> str | None:
    """The skyctl group a Nova server group was made for, or None (not skyctl's)."""
    name = str(group.get("name") or "")
    return name[len(SERVER_GROUP_PREFIX):] or None if name.startswith(SERVER_GROUP_PREFIX) else None


def floating_description(server_id: str) -> str:
    return f"{FLOATING_DESCRIPTION}{server_id}"


def floating_owner(fip: Mapping[str, Any]) -> str | None:
    """The server id a floating IP was allocated for by skyctl, or None (not skyctl's)."""
    description = str(fip.get("description") or "")
    if description.startswith(FLOATING_DESCRIPTION):
        return description[len(FLOATING_DESCRIPTION):].strip() or None
    return None


def with_first_address(node: Node, address: str) -> Node:
    """The node with `address` first in its addresses (kept once)."""
    from dataclasses import replace

    return replace(node, addresses=(address, *(a for a in node.addresses if a != address)))


def port_for_server(ports: list[Mapping[str, Any]], server_id: str) -> Mapping[str, Any] | None:
    """The server's port a floating IP goes to: its first port with a fixed IPv4 address."""
    for port in ports:
        if port.get("device_id") == server_id and any(
                "." in str(ip.get("ip_address") or "") for ip in port.get("fixed_ips") or []):
            return port
    return None


def server_to_node(server: Mapping[str, Any], site: str, family: str = "auto") -> Node:
    metadata = server.get("metadata") or {}
    labels = metadata_to_labels(metadata)
    flavor = server.get("flavor") or {}
    image = server.get("image") or {}
    status = server.get("status")
    fault = server.get("fault") or {}
    extra: dict[str, Any] = {
        "status": status,
        "task_state": server.get("OS-EXT-STS:task_state"),
        "tags": list(server.get("tags") or []),
        "key_name": server.get("key_name"),
        "flavor": flavor.get("original_name") or flavor.get("id"),
        "image_id": image.get("id") if isinstance(image, Mapping) else None,
        "metadata": {k: v for k, v in metadata.items() if not k.startswith(META_PREFIX)},
    }
    if fault:
        extra["fault"] = fault.get("message")
    if no_valid_host(server) or over_quota(server):
        extra[CAPACITY_FAULT] = True
    if (status or "").upper() == "BUILD" and server.get("OS-EXT-STS:task_state") == "scheduling":
        extra[SCHEDULING] = True
    return Node(
        name=server.get("name") or "",
        group=labels.get(L_GROUP),
        site=site,
        driver=DRIVER_NAME,
        id=str(server.get("id")),
        state=node_state(status, server.get("OS-EXT-STS:task_state")),
        addresses=server_addresses(server.get("addresses"), family),
        image=metadata.get(f"{META_PREFIX}image") or (image.get("id") if isinstance(image, Mapping) else None),
        size=metadata.get(f"{META_PREFIX}size") or flavor.get("original_name") or flavor.get("id"),
        created_at=_iso(server.get("created")),
        labels=labels,
        extra=extra,
    )


# Cinder's quota texts (cinder/exception.py VolumeLimitExceeded, VolumeSizeExceedsAvailableQuota):
# a boot volume Cinder refused while Nova built the server ends the build with
# "Build of instance X aborted: <Cinder's message>" (nova/compute/manager.py).
CINDER_QUOTA = ("Maximum number of volumes allowed", "exceeds allowed gigabytes quota")


def over_quota(server: Mapping[str, Any]) -> str | None:
    """Nova accepted the create (202) and only the conductor found the quota used up: the
    server sits in ERROR with fault 413 "Quota exceeded for instances: ...", or the build
    ended because Cinder refused its boot volume (volumes or gigabytes quota)."""
    if (server.get("status") or "").upper() != "ERROR":
        return None
    message = (server.get("fault") or {}).get("message") or ""
    if message.startswith("Quota exceeded") or any(text in message for text in CINDER_QUOTA):
        return message
    return None


def no_valid_host(server: Mapping[str, Any]) -> str | None:
    """The fault message when Nova could not schedule the server (or ran out of hosts to
    retry the build on), else None."""
    if (server.get("status") or "").upper() != "ERROR":
        return None
    message = (server.get("fault") or {}).get("message") or ""
    lowered = message.lower()
    return message if NO_VALID_HOST.lower() in lowered or MAX_RETRIES.lower() in lowered else None


# Why a diskless flavor is passed over where no boot volume can be made: Nova boots it only
# from a volume (403 "Only volume-backed servers are allowed for flavors with zero disk.").
DISKLESS = "disk 0: Nova boots it only from a volume, and the site has no block storage (Cinder)"
# Placement's standard resource classes; any other `resources:X` asked for is special hardware
# (VGPU, PGPU, FPGA, CUSTOM_BAREMETAL_*, ...).
_STANDARD_RESOURCES = {"VCPU", "MEMORY_MB", "DISK_GB", "PCPU"}


def special_hardware(specs: Mapping[str, Any]) -> dict[str, str]:
    """The extra specs that mark special hardware: `resources:<class>` other than the standard
    ones (non-zero), `pci_passthrough:alias`, `accel:device_profile`, and required traits."""
    out: dict[str, str] = {}
    for key, value in specs.items():
        k, v = str(key), str(value)
        if k.startswith("resources") and ":" in k:
            rc = k.split(":", 1)[1]
            if rc not in _STANDARD_RESOURCES and v.strip() not in ("0", ""):
                out[k] = v
        elif k in ("pci_passthrough:alias", "accel:device_profile"):
            out[k] = v
        elif k.startswith("trait") and ":" in k and v.strip().lower() == "required":
            out[k] = v
    return out


def flavor_from(f: Mapping[str, Any], *, volumes: bool = False, boot_from_volume: bool = False) -> Flavor:
    """A Nova flavor. `volumes`: the site has block storage, so a diskless flavor boots from a
    new volume; `boot_from_volume`: every node boots from one (the site asks for it)."""
    disk = int(f.get("disk") or 0)
    specs = {str(k): str(v) for k, v in (f.get("extra_specs") or {}).items()}
    extra: dict[str, Any] = {"public": f.get("os-flavor-access:is_public", True),
                             "disabled": f.get("OS-FLV-DISABLED:disabled", False), EXTRA_SPECS: specs}
    special = special_hardware(specs)
    if special:
        extra[SPECIAL_HARDWARE] = special
    if volumes and (disk == 0 or boot_from_volume):
        extra[BOOT_VOLUME] = True
    elif disk == 0:
        extra[FLAVOR_UNUSABLE] = DISKLESS
    return Flavor(id=str(f["id"]), name=str(f.get("name") or f["id"]), cpus=int(f.get("vcpus") or 0),
                  memory_mib=int(f.get("ram") or 0), disk_gib=disk, extra=extra)


def image_from(i: Mapping[str, Any]) -> ImageRef:
    return ImageRef(id=str(i["id"]), name=str(i.get("name") or i["id"]), checksum=i.get("checksum"),
                    extra={"os_hash_algo": i.get("os_hash_algo"), "os_hash_value": i.get("os_hash_value"),
                           "status": i.get("status"), "visibility": i.get("visibility"), IMAGE_SIZE: i.get("size"),
                           IMAGE_MIN_DISK: int(i.get("min_disk") or 0), IMAGE_MIN_RAM: int(i.get("min_ram") or 0)})


def boot_volume_mapping(image_id: str, size_gib: int) -> list[dict[str, Any]]:
    """Nova's block_device_mapping_v2 for booting from a new volume made from the image, deleted
    with the server (nothing left behind by `delete`)."""
    return [{"boot_index": 0, "uuid": image_id, "source_type": "image", "destination_type": "volume",
             "volume_size": size_gib, "delete_on_termination": True}]


def neutron_lines(quota: Mapping[str, Any], *, ports: int, floating_ips: int,
                  security_groups: int) -> tuple[Limit, ...]:
    """Neutron's `/quotas/{project}/details` as quota lines, with what each node takes (ports,
    floating IPs) and what the launch takes once (skyctl's SSH group, when still to make)."""
    out = []
    for resource, key, per, once in (("ports", "port", ports, 0), ("floating_ips", "floatingip", floating_ips, 0),
                                     ("security_groups", "security_group", 0, security_groups)):
        entry = quota.get(key)
        if not isinstance(entry, Mapping) or (per == 0 and once == 0):
            continue
        limit = entry.get("limit")
        used = int(entry.get("used") or 0) + int(entry.get("reserved") or 0)
        out.append(Limit(resource, used, None if limit is None or int(limit) < 0 else int(limit),
                         per_node=per, once=once))
    return tuple(out)


def cinder_lines(absolute: Mapping[str, Any]) -> tuple[Limit, ...]:
    """Cinder's `/limits` as the volumes and gigabytes lines (what a node takes follows its boot
    volume, which placement knows)."""
    def line(resource: str, max_key: str, used_key: str) -> Limit:
        limit = absolute.get(max_key)
        return Limit(resource, int(absolute.get(used_key) or 0),
                     None if limit is None or int(limit) < 0 else int(limit))

    return (line("volumes", "maxTotalVolumes", "totalVolumesUsed"),
            line("gigabytes", "maxTotalVolumeGigabytes", "totalGigabytesUsed"))


def capacity_from_limits(absolute: Mapping[str, Any], others: tuple[Limit, ...] = ()) -> Capacity:
    def line(resource: str, max_key: str, used_key: str) -> Limit:
        limit = absolute.get(max_key)
        used = int(absolute.get(used_key) or 0)
        return Limit(resource, used, None if limit is None or int(limit) < 0 else int(limit))

    return Capacity(line("instances", "maxTotalInstances", "totalInstancesUsed"),
                    line("cores", "maxTotalCores", "totalCoresUsed"),
                    line("ram_mib", "maxTotalRAMSize", "totalRAMUsed"), others=others)
