"""oned reply bodies -> plain records and skyctl model values. Pure (ElementTree, no pyone).

Written against the official 7.x schemas and bodies recorded from real 4.x-5.x servers:
elements the schema requires may be missing (PREV_STATE, MONITORING, USER_TEMPLATE on old
short bodies...), numbers may be empty, so every read has a default. Pools are parsed with
ElementTree in one pass per VM: a 1000-VM pool through pyone's generated classes costs ~5x more.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skyctl.model import (CAPACITY_FAULT, LABEL_PREFIX, Capacity, ImageRef, Limit, Node, format_mib)

from skyctl_opennebula.states import node_state, state_names

_NO_HOST = re.compile(r"cannot dispatch|enough capacity|no host", re.IGNORECASE)
LABEL_ATTR_PREFIX = LABEL_PREFIX.upper() + "_"     # USER_TEMPLATE/SKYCTL_GROUP ...
# What the user asked for (logical image and size), kept for display; not labels.
DISPLAY_ATTRS = (LABEL_ATTR_PREFIX + "IMAGE", LABEL_ATTR_PREFIX + "SIZE")


# LCM states in which a VM failed to be set up on its host; oned deletes them on terminate.
SETUP_FAILURES = frozenset({"BOOT_FAILURE", "PROLOG_FAILURE"})


class BadReply(ValueError):
    """The body is not the XML the call returns."""


def _root(body: str | bytes, expected: str) -> ET.Element:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise BadReply(f"malformed {expected} reply: {e}") from None
    if root.tag != expected:
        raise BadReply(f"expected <{expected}>, got <{root.tag}>")
    return root


def _text(el: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if el is None:
        return default
    found = el.find(path)
    if found is None or found.text is None:
        return default
    return found.text


def _to_int(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        try:
            return int(float(raw))
        except ValueError:
            return None


def _to_float(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None and raw.strip() else None
    except ValueError:
        return None


def _int(el: ET.Element | None, path: str, default: int | None = None) -> int | None:
    value = _to_int(_text(el, path))
    return default if value is None else value


def _flat(el: ET.Element | None) -> dict[str, str]:
    """A template section's single-valued attributes (vectors are left out)."""
    if el is None:
        return {}
    return {c.tag: (c.text or "").strip() for c in el if len(c) == 0 and isinstance(c.tag, str)}


# ---------------------------------------------------------------- VMs


@dataclass(frozen=True)
class VmRecord:
    id: str
    name: str
    state: int | None
    lcm_state: int | None
    stime: int | None
    cpu: float | None
    vcpu: int | None
    memory_mib: int | None
    ips: tuple[str, ...]
    image: str | None
    template_id: str | None
    hostname: str | None
    user_template: Mapping[str, str]
    context: Mapping[str, str] | None        # None in short bodies
    has_user_template: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        n = len(LABEL_ATTR_PREFIX)
        return {k[n:].lower(): v for k, v in self.user_template.items()
                if k.startswith(LABEL_ATTR_PREFIX) and k not in DISPLAY_ATTRS}


def vm_from_element(vm: ET.Element) -> VmRecord:
    """One pass over the children (a pool has ~60 elements per VM; `find` per field costs 3x)."""
    top: dict[str, str | None] = {}
    tmpl: dict[str, str | None] = {}
    ips: list[str] = []
    disk: dict[str, str | None] | None = None
    context: dict[str, str] | None = None
    user_template: dict[str, str] = {}
    has_user_template = False
    hostname: str | None = None
    for child in vm:
        tag = child.tag
        if tag == "TEMPLATE":
            for t in child:
                ttag = t.tag
                if ttag in ("NIC", "NIC_ALIAS"):
                    for attr in t:
                        if attr.tag in ("IP", "IP6_GLOBAL", "IP6") and attr.text and attr.text.strip():
                            ip = attr.text.strip()
                            if ip not in ips:
                                ips.append(ip)
                elif ttag == "DISK":
                    if disk is None:
                        disk = {a.tag: a.text for a in t}
                elif ttag == "CONTEXT":
                    context = _flat(t)
                elif isinstance(ttag, str):
                    tmpl[ttag] = t.text
        elif tag == "USER_TEMPLATE":
            has_user_template = True
            user_template = _flat(child)
        elif tag == "HISTORY_RECORDS":
            histories = list(child)
            if histories:
                hostname = _text(histories[-1], "HOSTNAME")
        elif isinstance(tag, str):
            top[tag] = child.text
    image = None
    if disk is not None:
        image = disk.get("IMAGE") or disk.get("IMAGE_ID")
    return VmRecord(
        id=(top.get("ID") or "").strip(),
        name=top.get("NAME") or "",
        state=_to_int(top.get("STATE")),
        lcm_state=_to_int(top.get("LCM_STATE")),
        stime=_to_int(top.get("STIME")),
        cpu=_to_float(tmpl.get("CPU")),
        vcpu=_to_int(tmpl.get("VCPU")),
        memory_mib=_to_int(tmpl.get("MEMORY")),
        ips=tuple(ips),
        image=image,
        template_id=tmpl.get("TEMPLATE_ID"),
        hostname=hostname,
        user_template=user_template,
        context=context,
        has_user_template=has_user_template,
    )


def parse_vm(body: str | bytes) -> VmRecord:
    return vm_from_element(_root(body, "VM"))


def parse_vm_pool(body: str | bytes) -> list[VmRecord]:
    """Short (vm_pool.xsd) and extended (vm_pool_extended.xsd) bodies alike."""
    return [vm_from_element(vm) for vm in _root(body, "VM_POOL").findall("VM")]


def iso_utc(epoch: int | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def size_label(cpus: float | int | None, memory_mib: int | None) -> str | None:
    if not cpus or not memory_mib:
        return None
    c = int(cpus) if float(cpus).is_integer() else cpus
    return f"{c}cpu-{format_mib(memory_mib)}"


def to_node(rec: VmRecord, *, site: str, driver: str = "opennebula") -> Node:
    labels = rec.labels
    state, lcm = state_names(rec.state, rec.lcm_state)
    ready = rec.user_template.get("READY", "").upper() == "YES"
    extra: dict[str, Any] = {"one_state": state, "one_lcm_state": lcm, "ready": ready,
                             "host": rec.hostname, "template_id": rec.template_id}
    if lcm in SETUP_FAILURES:
        # the image copy or the boot failed on the host: try elsewhere, as for no host
        extra[CAPACITY_FAULT] = True
        extra["fault"] = f"{lcm}: {rec.user_template.get('ERROR') or 'no reason given'}"
    if rec.user_template.get("SCHED_MESSAGE"):
        extra["sched_message"] = rec.user_template["SCHED_MESSAGE"]
        if state == "PENDING" and _NO_HOST.search(extra["sched_message"]):
            # oned's scheduler found no host with room: the VM would wait forever.
            extra[CAPACITY_FAULT] = True
            extra["fault"] = extra["sched_message"]
    return Node(
        name=rec.name,
        group=labels.get("group"),
        site=site,
        driver=driver,
        id=rec.id,
        state=node_state(rec.state, rec.lcm_state),
        addresses=rec.ips,
        image=rec.user_template.get(DISPLAY_ATTRS[0]) or rec.image,
        size=rec.user_template.get(DISPLAY_ATTRS[1]) or size_label(rec.vcpu or rec.cpu, rec.memory_mib),
        created_at=iso_utc(rec.stime),
        labels=labels,
        extra=extra,
    )


def matches(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return all(labels.get(k) == str(v) for k, v in (selector or {}).items())


# ---------------------------------------------------------------- quota and hosts


def _quota_value(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _limit(resource: str, user_vm: ET.Element | None, default_vm: ET.Element | None, attr: str) -> Limit:
    used_raw = _quota_value(_text(user_vm, attr + "_USED"))
    used = math.ceil(used_raw) if used_raw and used_raw > 0 else 0
    value = _quota_value(_text(user_vm, attr))
    if value is None or value == -1:           # -1: the default quota applies
        value = _quota_value(_text(default_vm, attr))
    if value is None or value < 0:             # -2 (or a default of -1/-2): unlimited
        return Limit(resource, used, None)
    return Limit(resource, used, int(math.floor(value)))


def _global_vm_quota(section: ET.Element | None) -> ET.Element | None:
    """The VM quota that applies everywhere (7.x may add per-cluster ones with CLUSTER_IDS)."""
    if section is None:
        return None
    entries = section.findall("VM")
    for vm in entries:
        if not (_text(vm, "CLUSTER_IDS") or "").strip():
            return vm
    return entries[0] if entries else None


def parse_user_quota(body: str | bytes) -> tuple[Limit, Limit, Limit]:
    """(instances, cores, ram_mib) from `one.user.info`'s VM_QUOTA and DEFAULT_USER_QUOTAS."""
    user = _root(body, "USER")
    own = _global_vm_quota(user.find("VM_QUOTA"))
    default = _global_vm_quota(user.find("DEFAULT_USER_QUOTAS/VM_QUOTA"))
    return (_limit("instances", own, default, "VMS"), _limit("cores", own, default, "CPU"),
            _limit("ram_mib", own, default, "MEMORY"))


@dataclass(frozen=True)
class HostRoom:
    hosts: int
    usable: int
    free_cpus: int
    free_memory_mib: int


USABLE_HOST_STATES = {1, 2}   # MONITORING_MONITORED, MONITORED


def parse_host_pool(body: str | bytes) -> HostRoom:
    """Room left on hosts that can take VMs, from HOST_SHARE (CPU in percent, memory in KiB)."""
    pool = _root(body, "HOST_POOL")
    hosts = pool.findall("HOST")
    free_cpu = free_mem = usable = 0
    for h in hosts:
        if _int(h, "STATE") not in USABLE_HOST_STATES:
            continue
        usable += 1
        share = h.find("HOST_SHARE")
        free_cpu += max((_int(share, "MAX_CPU", 0) or 0) - (_int(share, "CPU_USAGE", 0) or 0), 0) // 100
        free_mem += max((_int(share, "MAX_MEM", 0) or 0) - (_int(share, "MEM_USAGE", 0) or 0), 0) // 1024
    return HostRoom(hosts=len(hosts), usable=usable, free_cpus=free_cpu, free_memory_mib=free_mem)


def capacity(quota: tuple[Limit, Limit, Limit], hosts: HostRoom | None) -> Capacity:
    instances, cores, ram = quota
    if hosts is None or hosts.hosts == 0:     # the user may not see the hosts
        return Capacity(instances, cores, ram)
    return Capacity(instances, cores, ram, host_free_cpus=hosts.free_cpus,
                    host_free_memory_mib=hosts.free_memory_mib)


# ---------------------------------------------------------------- templates, images, networks


def parse_template_pool(body: str | bytes) -> list[ImageRef]:
    out = []
    for t in _root(body, "VMTEMPLATE_POOL").findall("VMTEMPLATE"):
        tmpl = t.find("TEMPLATE")
        disk = tmpl.find("DISK") if tmpl is not None else None
        extra = {"kind": "template", "image": (_text(disk, "IMAGE") or _text(disk, "IMAGE_ID")) if disk is not None
                 else None, "cpu": _text(tmpl, "CPU"), "memory_mib": _int(tmpl, "MEMORY"), "owner": _text(t, "UNAME")}
        out.append(ImageRef(id=(_text(t, "ID") or "").strip(), name=_text(t, "NAME", "") or "", extra=extra))
    return out


IMAGE_STATES = {0: "INIT", 1: "READY", 2: "USED", 3: "DISABLED", 4: "LOCKED", 5: "ERROR", 6: "CLONE",
                7: "DELETE", 8: "USED_PERS", 9: "LOCKED_USED", 10: "LOCKED_USED_PERS"}


def parse_image_pool(body: str | bytes) -> list[ImageRef]:
    return [_image(img) for img in _root(body, "IMAGE_POOL").findall("IMAGE")]


def parse_image(body: str | bytes) -> ImageRef:
    """one.image.info's <IMAGE>."""
    return _image(_root(body, "IMAGE"))


def _image(img: ET.Element) -> ImageRef:
    state = _int(img, "STATE")
    md5 = (_text(img, "TEMPLATE/MD5") or "").strip() or None
    return ImageRef(id=(_text(img, "ID") or "").strip(), name=_text(img, "NAME", "") or "", checksum=md5,
                    extra={"kind": "image", "state": IMAGE_STATES.get(state, str(state)),
                           "size_mib": _int(img, "SIZE"), "datastore": _text(img, "DATASTORE"),
                           "owner": _text(img, "UNAME"), "owner_id": (_text(img, "UID") or "").strip(),
                           "error": (_text(img, "TEMPLATE/ERROR") or "").strip() or None})


def parse_datastore_pool(body: str | bytes) -> list[dict[str, Any]]:
    """Each datastore's id, name, TYPE (0 image, 1 system, 2 file) and STATE (0 ready)."""
    return [{"id": _int(ds, "ID"), "name": _text(ds, "NAME", "") or "", "type": _int(ds, "TYPE"),
             "state": _int(ds, "STATE", 0), "free_mb": _int(ds, "FREE_MB")}
            for ds in _root(body, "DATASTORE_POOL").findall("DATASTORE")]


def parse_vnet_pool(body: str | bytes) -> list[tuple[str, str]]:
    return [((_text(v, "ID") or "").strip(), _text(v, "NAME", "") or "")
            for v in _root(body, "VNET_POOL").findall("VNET")]


@dataclass(frozen=True)
class Owned:
    """A pool object as a name lookup needs it: id, name, owner's id and name."""

    id: str
    name: str
    uid: str
    uname: str


def parse_owned(body: str | bytes, pool: str, element: str) -> list[Owned]:
    """VNET_POOL/VNET, IMAGE_POOL/IMAGE...: who owns which name."""
    return [Owned((_text(o, "ID") or "").strip(), _text(o, "NAME", "") or "", (_text(o, "UID") or "").strip(),
                  _text(o, "UNAME", "") or "") for o in _root(body, pool).findall(element)]


def parse_template(body: str | bytes) -> tuple[dict[str, str], float | None, int | None]:
    """one.template.info -> (its CONTEXT, CPU, VCPU)."""
    tmpl = _root(body, "VMTEMPLATE").find("TEMPLATE")
    return _flat(tmpl.find("CONTEXT") if tmpl is not None else None), _to_float(_text(tmpl, "CPU")), \
        _to_int(_text(tmpl, "VCPU"))


def parse_user_groups(body: str | bytes) -> list[str]:
    """The groups of `one.user.info`'s user, primary first."""
    user = _root(body, "USER")
    gid = (_text(user, "GID") or "").strip()
    rest = [g.text.strip() for g in user.findall("GROUPS/ID") if g.text and g.text.strip() != gid]
    return ([gid] if gid else []) + rest


def parse_group_quota(body: str | bytes) -> tuple[Limit, Limit, Limit]:
    """(instances, cores, ram_mib) from `one.group.info`'s VM_QUOTA and DEFAULT_GROUP_QUOTAS."""
    group = _root(body, "GROUP")
    own = _global_vm_quota(group.find("VM_QUOTA"))
    default = _global_vm_quota(group.find("DEFAULT_GROUP_QUOTAS/VM_QUOTA"))
    return (_limit("instances", own, default, "VMS"), _limit("cores", own, default, "CPU"),
            _limit("ram_mib", own, default, "MEMORY"))


def tighter(mine: Limit, group: Limit, *, scope: str) -> Limit:
    """The quota line that leaves less room (oned enforces both the user's and the group's);
    the group's is marked with `scope`."""
    if group.limit is None:
        return mine
    theirs = Limit(group.resource, group.used, group.limit, scope)
    if mine.limit is None:
        return theirs
    return mine if (mine.free or 0) <= (theirs.free or 0) else theirs


def first_id_seen(records: Iterable[VmRecord], seen: set[str]) -> bool:
    return any(r.id in seen for r in records)
