"""Plain values that cross every boundary: config -> policy -> drivers -> ops -> cli.

Standard library only. Everything is frozen so a snapshot handed to the pure policy
layer cannot be changed behind its back.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Label keys skyctl puts on every node it creates (OpenStack tags/metadata, OpenNebula
# USER_TEMPLATE). The clouds are the source of truth; these make them searchable.
LABEL_PREFIX = "skyctl"
L_GROUP = "group"
L_LAUNCH = "launch"
L_OWNER = "owner"
L_INDEX = "index"
L_NAME = "name"
L_USER = "user"  # the login user the node's context created (skyctl ssh logs in as it)

Labels = Mapping[str, str]

# What every secret value is replaced with wherever skyctl shows, logs or stores it.
MASK = "****"

# Node.extra key a driver sets (True) when the cloud accepted a node but has no host for it
# (Nova ERROR "No valid host", OpenNebula PENDING "Cannot dispatch"): ops fails it over.
CAPACITY_FAULT = "capacity_fault"
# Flavor.extra key: why the site cannot boot this flavor as skyctl would ask (placement skips it
# and says so), e.g. a diskless flavor on a site where skyctl makes no boot volume.
FLAVOR_UNUSABLE = "unusable"
# Node.extra key a driver sets (True) while the cloud has accepted a node but not yet placed
# it (Nova task_state "scheduling"): its quota and host checks are still to come.
SCHEDULING = "scheduling"
# Flavor.extra key: True when a node of this flavor boots from a new volume (a diskless flavor,
# or a site that boots every node from a volume); its size comes from `boot_volume_gib`.
BOOT_VOLUME = "boot_volume"
# Flavor.extra key: the extra specs that mark special hardware (GPU, PCI devices, bare metal,
# required traits), {key: value}; such a flavor is picked only for a size that asks for them.
SPECIAL_HARDWARE = "special_hardware"
# Flavor.extra key: all of the flavor's extra specs, {key: value}.
EXTRA_SPECS = "extra_specs"
# ImageRef.extra keys: the image's minimum disk (GiB) and RAM (MiB), and its size in bytes.
IMAGE_MIN_DISK = "min_disk"
IMAGE_MIN_RAM = "min_ram"
IMAGE_SIZE = "size"
GIB = 1024 ** 3



class NodeState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Tier(str, enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"


class Capability(str, enum.Enum):
    STOP_START = "stop_start"
    REBOOT = "reboot"
    CONSOLE_LOG = "console_log"
    SERVER_SIDE_LABEL_FILTER = "server_side_label_filter"
    FLOATING_IP = "floating_ip"
    CUSTOM_SIZES = "custom_sizes"  # any cpus/memory is accepted (OpenNebula); no flavor list
    IMAGE_UPLOAD = "image_upload"      # upload_image: skyctl sends the bytes (Glance)
    IMAGE_DOWNLOAD = "image_download"  # download_image: skyctl reads the bytes (Glance)
    IMAGE_FROM_URL = "image_from_url"  # import_image_url: the cloud fetches a URL (OpenNebula PATH)
    LEASE = "lease"  # named records with compare-and-swap: group locks shared across machines


@dataclass(frozen=True)
class LeaseRecord:
    """A small named record on a cloud that only changes by compare-and-swap (`revision`):
    where a group's lock lives so that every machine using the cloud sees it."""

    id: str
    name: str
    text: str
    revision: int


# ---------------------------------------------------------------- sizes and units

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[KMGT])?\s*$", re.IGNORECASE)
_MEM_FACTORS_MIB = {
    None: 1, "": 1, "m": 1, "mb": 1, "mib": 1, "mi": 1,
    "g": 1024, "gb": 1024, "gib": 1024, "gi": 1024,
    "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024, "ti": 1024 * 1024,
    "k": 1 / 1024, "kb": 1 / 1024, "kib": 1 / 1024, "ki": 1 / 1024,
}


def parse_memory_mib(value: str | int | float) -> int:
    """'2GiB' -> 2048, '512M' -> 512, 2048 -> 2048 (a bare number is MiB, as in Nova)."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size such as 2GiB or 512MiB")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("memory must be positive")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise ValueError(f"not a memory size: {value!r} (use e.g. 2GiB, 512MiB)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    mib = int(round(number * _MEM_FACTORS_MIB[unit]))
    if mib <= 0:
        raise ValueError(f"memory must be positive: {value!r}")
    return mib


def format_mib(mib: int) -> str:
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


@dataclass(frozen=True, slots=True)
class Resources:
    """What one node (or a sum of nodes) needs. `volume_gib`: its boot volume (0: none)."""

    cpus: int
    memory_mib: int
    instances: int = 1
    volume_gib: int = 0


@dataclass(frozen=True, slots=True)
class Flavor:
    """A site's own size (Nova flavor, OpenNebula template/size mapping)."""

    id: str
    name: str
    cpus: int
    memory_mib: int
    disk_gib: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def fits(self, cpus: int, memory_mib: int) -> bool:
        return self.cpus >= cpus and self.memory_mib >= memory_mib

    @property
    def boot_volume(self) -> bool:
        return bool(self.extra.get(BOOT_VOLUME))


@dataclass(frozen=True, slots=True)
class OwnedName:
    """An image (OpenNebula: a VM template or image) named with its owner, as
    `images: {alma9: {cc: {name: AlmaLinux 9, owner: oneadmin}}}` names it: a site may hold
    several objects of one name that belong to different users."""

    name: str
    owner: str

    def __str__(self) -> str:
        return f"{self.name} (owner {self.owner})"


@dataclass(frozen=True, slots=True)
class ImageRef:
    id: str
    name: str
    checksum: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def min_disk_gib(self) -> int:
        return int(self.extra.get(IMAGE_MIN_DISK) or 0)

    @property
    def min_ram_mib(self) -> int:
        return int(self.extra.get(IMAGE_MIN_RAM) or 0)


def boot_volume_gib(disk_gib: int, image: ImageRef) -> int:
    """The size of a node's boot volume: the size's `disk`, else the image's min_disk, else the
    image's size rounded up to whole GiB (at least 1); never below min_disk."""
    if disk_gib > 0:
        return max(disk_gib, image.min_disk_gib)
    if image.min_disk_gib > 0:
        return image.min_disk_gib
    size = int(image.extra.get(IMAGE_SIZE) or 0)
    return max(1, -(-size // GIB))


# ---------------------------------------------------------------- capacity


@dataclass(frozen=True, slots=True)
class Limit:
    """One quota line. limit None means unlimited. `scope` names whose quota it is when not
    the user's own (OpenNebula: "group 1"), so a plan can say which one binds."""

    resource: str
    used: int
    limit: int | None
    scope: str | None = None
    # For the lines beyond instances/cores/RAM (ports, floating IPs, security groups, volumes,
    # gigabytes): what each node takes, and what the launch takes once (a group to make).
    # Volumes and gigabytes follow the node's boot volume (Resources.volume_gib) instead.
    per_node: int = 0
    once: int = 0

    @property
    def label(self) -> str:
        return f"{self.resource} ({self.scope})" if self.scope else self.resource

    @property
    def free(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class Capacity:
    """Quota limits/usage plus, where the cloud tells, what its hosts can still take."""

    instances: Limit
    cores: Limit
    ram_mib: Limit
    # Physical room left on the hosts (OpenNebula host pool); None where the cloud hides it.
    host_free_cpus: int | None = None
    host_free_memory_mib: int | None = None
    # Further quota lines a node needs on this site (OpenStack: port, floatingip,
    # security_group from Neutron; volumes, gigabytes from Cinder).
    others: tuple[Limit, ...] = ()

    def lines(self, need: Resources) -> list[tuple[Limit, int, int]]:
        """Every quota line with what one node of `need` takes from it and what the launch
        takes once: (line, per node, once)."""
        out = [(self.instances, need.instances, 0), (self.cores, need.cpus, 0), (self.ram_mib, need.memory_mib, 0)]
        for lim in self.others:
            if lim.resource == "volumes":
                per = 1 if need.volume_gib else 0
            elif lim.resource == "gigabytes":
                per = need.volume_gib
            else:
                per = lim.per_node
            out.append((lim, per, lim.once))
        return out

    def fits_count(self, need: Resources) -> int | None:
        """How many nodes of `need` still fit; None means no limit is known."""
        counts: list[int] = []
        for lim, per, once in self.lines(need):
            if lim.free is None:
                continue
            if per > 0:
                counts.append(max(lim.free - once, 0) // per)
            elif once > lim.free:
                counts.append(0)   # what the launch must make first does not fit
        for free, per in ((self.host_free_cpus, need.cpus),
                          (self.host_free_memory_mib, need.memory_mib)):
            if free is not None and per > 0:
                counts.append(max(free, 0) // per)
        return min(counts) if counts else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for lim in (self.instances, self.cores, self.ram_mib, *self.others):
            out[lim.resource] = {"used": lim.used, "limit": lim.limit, **({"scope": lim.scope} if lim.scope else {})}
        if self.host_free_cpus is not None or self.host_free_memory_mib is not None:
            out["hosts_free"] = {"cpus": self.host_free_cpus, "memory_mib": self.host_free_memory_mib}
        return out


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What to create on one site: resolved to that site's own image and flavor."""

    group: str
    site: str
    image: ImageRef
    flavor: Flavor
    labels: Labels = field(default_factory=dict)
    image_name: str = ""  # the logical name the user asked for, for display
    size_name: str = ""
    key_name: str | None = None
    disk_gib: int = 0     # the size's disk (GiB): a boot volume's size; 0: the image decides


@dataclass(frozen=True, slots=True)
class RenderedContext:
    """A context as each cloud receives it. Drivers pick the part for their cloud."""

    user_data: str | None = None          # cloud-config / multipart text for cloud-init
    one_context: Mapping[str, str] = field(default_factory=dict)  # OpenNebula CONTEXT variables
    ssh_public_keys: tuple[str, ...] = ()
    login_user: str | None = None


EMPTY_CONTEXT = RenderedContext()


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """What a group was launched with, as the state store keeps it: enough to launch one more
    node the same way (scale, moves home). Secret variables are kept by name only; their
    values come again from SKYCTL_VAR_<NAME> when a node is added."""

    image: str                                   # logical image (or a site's own, with `site`)
    cpus: int
    memory_mib: int
    size: str | None = None                      # logical size (or a site's own flavor)
    contexts: tuple[str, ...] = ("base",)
    variables: Mapping[str, str] = field(default_factory=dict)   # the non-secret --var values
    secret_variables: tuple[str, ...] = ()       # names of --var values never stored
    site: str | None = None                      # --site: the group stays on this site

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "cpus": self.cpus, "memory_mib": self.memory_mib, "size": self.size,
                "contexts": list(self.contexts), "variables": dict(self.variables),
                "secret_variables": list(self.secret_variables), "site": self.site}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupSpec:
        variables = dict(data.get("variables") or {})
        secret = list(data.get("secret_variables") or [])
        # Schema 1 stored every --var under "vars", with a secret's value replaced by the mask.
        for name, value in (data.get("vars") or {}).items():
            if value == MASK:
                secret.append(name)
            else:
                variables[name] = value
        return cls(image=str(data["image"]), cpus=int(data["cpus"]), memory_mib=int(data["memory_mib"]),
                   size=data.get("size"), contexts=tuple(data.get("contexts") or ("base",)),
                   variables=variables, secret_variables=tuple(secret), site=data.get("site"))


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    group: str | None
    site: str
    driver: str
    id: str
    state: NodeState
    addresses: tuple[str, ...] = ()
    image: str | None = None
    size: str | None = None
    created_at: str | None = None  # ISO 8601, UTC
    labels: Labels = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def launch_id(self) -> str | None:
        return self.labels.get(L_LAUNCH)

    @property
    def managed(self) -> bool:
        """Created by skyctl (carries its labels)."""
        return bool(self.labels.get(L_GROUP))

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape of a node (README 'Output')."""
        return {
            "name": self.name,
            "group": self.group,
            "site": self.site,
            "driver": self.driver,
            "id": self.id,
            "state": self.state.value,
            "addresses": list(self.addresses),
            "image": self.image,
            "size": self.size,
            "created_at": self.created_at,
            "labels": dict(self.labels),
        }


def node_labels(group: str, launch: str, owner: str, index: int, name: str,
                user: str | None = None) -> dict[str, str]:
    labels = {L_GROUP: group, L_LAUNCH: launch, L_OWNER: owner, L_INDEX: str(index), L_NAME: name}
    if user:
        labels[L_USER] = user
    return labels
