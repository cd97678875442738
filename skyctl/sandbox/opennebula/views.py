"""What the `one.*` methods show: the XML bodies of oned 7.x (official XSDs in share/doc/xsd,
replies recorded from real servers), and the facts they are made of: a VM's STATE/LCM_STATE,
computed from timestamps when asked so 1000 VMs cost no timers, the two hosts sharing the
site's room, the one network and datastore. Pool bodies are string joins, not a DOM."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from skyctl.sandbox.opennebula.template import Template
from skyctl.sandbox.world import SiteWorld, SVM

ONE_VERSION = "7.0.0"

# VM STATE / LCM_STATE numbers used here. The driver maps them in its own states.py on purpose:
# each side reads oned's reference, so tests must not agree with themselves.
S_PENDING, S_HOLD, S_ACTIVE, S_STOPPED, S_SUSPENDED, S_DONE, S_POWEROFF, S_UNDEPLOYED = 1, 2, 3, 4, 5, 6, 8, 9
L_LCM_INIT, L_PROLOG, L_BOOT, L_RUNNING, L_UNKNOWN = 0, 1, 2, 3, 16
L_BOOT_POWEROFF, L_BOOT_SUSPENDED, L_BOOT_STOPPED, L_BOOT_UNDEPLOY = 20, 21, 22, 32
L_BOOT_FAILURE, L_PROLOG_FAILURE = 36, 39
STATE_NAMES = {0: "INIT", 1: "PENDING", 2: "HOLD", 3: "ACTIVE", 4: "STOPPED", 5: "SUSPENDED",
               6: "DONE", 7: "FAILED", 8: "POWEROFF", 9: "UNDEPLOYED"}
LCM_NAMES = {0: "LCM_INIT", 1: "PROLOG", 2: "BOOT", 3: "RUNNING", 16: "UNKNOWN", 20: "BOOT_POWEROFF",
             21: "BOOT_SUSPENDED", 22: "BOOT_STOPPED", 32: "BOOT_UNDEPLOY", 36: "BOOT_FAILURE",
             39: "PROLOG_FAILURE"}
# The LCM states in which oned's DispatchManager::terminate accepts a terminate (besides
# RUNNING and UNKNOWN): the failures, which it deletes (src/dm/DispatchManagerActions.cc).
TERMINABLE_FAILURES = frozenset({36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61})
# What oned writes in USER_TEMPLATE/ERROR when the transfer or the boot fails.
FAILURE_MESSAGES = {
    L_PROLOG_FAILURE: "Error executing image transfer script: Error copying kvm-node-0:/var/lib/one/datastores/1/"
                      "disk.0: No space left on device",
    L_BOOT_FAILURE: "Error deploying virtual machine: Could not create domain from /var/lib/one/datastores/0/"
                    "deployment.0",
}
# Who owns the site's templates, images and networks, and the group they are shared with.
OBJECT_UID, OBJECT_UNAME, SHARED_GID, SHARED_GNAME = 0, "oneadmin", 1, "users"
# Where a resumed VM boots from, per the state it was in.
_RESUME_LCM = {S_POWEROFF: L_BOOT_POWEROFF, S_SUSPENDED: L_BOOT_SUSPENDED, S_STOPPED: L_BOOT_STOPPED,
               S_UNDEPLOYED: L_BOOT_UNDEPLOY}

NETWORK_NAME = "sandbox-net"
NETWORK_ID = 0
DATASTORE_ID = 1
# oned's default datastores: id -> (name, TYPE 0 image / 1 system / 2 file, DS_MAD, TM_MAD).
DATASTORES = {0: ("system", 1, "-", "ssh"), 1: ("default", 0, "fs", "ssh"), 2: ("files", 2, "fs", "ssh")}
DS_TYPE_NAMES = {0: "IMAGE_DS", 1: "SYSTEM_DS", 2: "FILE_DS"}
DATASTORE_TOTAL_MB = 512000


# ---------------------------------------------------------------- VM state, computed lazily


def one_extra(vm: SVM) -> dict[str, Any]:
    """What only the OpenNebula front keeps about a VM (hold, off, host, cpu, uuid...)."""
    return vm.extra.setdefault("one", {})


def boot_phases(boot_delay: float, settings: dict[str, Any]) -> tuple[float, float, float]:
    """Seconds spent in PENDING, PROLOG and BOOT: the spec's prolog/boot seconds, else shares
    of the boot delay."""
    prolog = settings.get("prolog_seconds")
    boot = settings.get("boot_seconds")
    return (0.2 * boot_delay, 0.4 * boot_delay if prolog is None else float(prolog),
            0.4 * boot_delay if boot is None else float(boot))


def vm_state(vm: SVM, now: float | None = None) -> tuple[int, int]:
    """(STATE, LCM_STATE) at `now`: PENDING, PROLOG, BOOT, RUNNING by the VM's boot phases
    (or its boot delay), or a PROLOG/BOOT failure it was given at creation."""
    one = one_extra(vm)
    if one.get("hold"):
        return S_HOLD, L_LCM_INIT
    if vm.error:       # the scheduler finds no host: stays PENDING with a SCHED_MESSAGE
        return S_PENDING, L_LCM_INIT
    off = one.get("off")
    if off:
        return off, L_LCM_INIT
    now = now or time.time()
    delay = vm.boot_delay
    resumed = one.get("resumed_at")
    if resumed is not None:
        if now < resumed + delay:
            return S_ACTIVE, _RESUME_LCM.get(one.get("resumed_from", S_POWEROFF), L_BOOT_POWEROFF)
        return S_ACTIVE, L_RUNNING
    since = now - one.get("released_at", vm.created)
    pending, prolog, boot = one.get("phases") or (0.2 * delay, 0.4 * delay, 0.4 * delay)
    failure = one.get("failure")
    if since < pending:
        return S_PENDING, L_LCM_INIT
    if since < pending + prolog:
        return S_ACTIVE, L_PROLOG
    if failure == L_PROLOG_FAILURE:
        return S_ACTIVE, L_PROLOG_FAILURE
    if since < pending + prolog + boot:
        return S_ACTIVE, L_BOOT
    if failure == L_BOOT_FAILURE:
        return S_ACTIVE, L_BOOT_FAILURE
    return S_ACTIVE, L_RUNNING


def state_name(state: int, lcm: int) -> str:
    return LCM_NAMES.get(lcm, str(lcm)) if state == S_ACTIVE else STATE_NAMES.get(state, str(state))


# ---------------------------------------------------------------- hosts (two, sharing the site's room)


def hosts(world: SiteWorld) -> list[tuple[int, str, int, int]]:
    """(id, name, max_cpu in cores, max_mem in MiB). Unlimited sites get big hosts."""
    cpus = world.host_cpus if world.host_cpus is not None else 512
    ram = world.host_ram_mib if world.host_ram_mib is not None else 2 * 1024 * 1024
    half_cpu, half_ram = cpus // 2, ram // 2
    return [(0, "kvm-node-0", cpus - half_cpu, ram - half_ram), (1, "kvm-node-1", half_cpu, half_ram)]


def holds_host(state: int) -> bool:
    return state in (S_ACTIVE, S_POWEROFF, S_SUSPENDED)


def live_vms(world: SiteWorld) -> list[SVM]:
    """A consistent copy of the live VMs (front-end threads create and delete concurrently)."""
    with world.lock:
        return world.live_vms()


def host_usage(world: SiteWorld, now: float) -> dict[int, list[int]]:
    usage = {h[0]: [0, 0, 0] for h in hosts(world)}   # cpu cores, MiB, running VMs
    for vm in live_vms(world):
        state, _ = vm_state(vm, now)
        host = one_extra(vm).get("host")
        if host in usage and holds_host(state):
            u = usage[host]
            u[0] += vm.vcpus
            u[1] += vm.ram_mib
            u[2] += 1
    return usage


# ---------------------------------------------------------------- images, the network


def find_image(world: SiteWorld, image_id: str | None = None, name: str | None = None) -> Any:
    for image in world.images.values():
        if (image_id is not None and image.id == image_id) or (name is not None and image.name == name):
            return image
    return None


def mac(vm_id: int) -> str:
    return f"02:00:7f:{(vm_id >> 16) & 0xFF:02x}:{(vm_id >> 8) & 0xFF:02x}:{vm_id & 0xFF:02x}"


def nic_variables(vm_id: str) -> dict[str, str]:
    """What $NIC[...] / $NETWORK[...] read in a CONTEXT: the VM's one NIC."""
    return {"IP": "127.0.0.1", "MAC": mac(int(vm_id)), "NETWORK": NETWORK_NAME, "NETWORK_ID": str(NETWORK_ID)}


def context_network(context: dict[str, str], vm_id: str, address: str | None) -> dict[str, str]:
    """What oned adds to CONTEXT: the context disk, and per-NIC ETH0_* when NETWORK=YES."""
    extra = {"DISK_ID": "1", "TARGET": "hda"}
    if str(context.get("NETWORK", "")).upper() == "YES":
        extra.update({"ETH0_DNS": "", "ETH0_EXTERNAL": "", "ETH0_GATEWAY": "", "ETH0_MAC": mac(int(vm_id)),
                      "ETH0_MASK": "255.0.0.0", "ETH0_NETWORK": "127.0.0.0"})
        if address is not None:   # None: before the runtime's on_create hook hands one out
            extra["ETH0_IP"] = address
    return extra


# ---------------------------------------------------------------- XML helpers


def _x(value: Any) -> str:
    """Escape element text (oned writes plain escaped text for object fields). The driver
    escapes what it sends on its own: tests must not agree with themselves."""
    s = str(value)
    if "&" in s or "<" in s or ">" in s:
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s


def _cd(value: Any) -> str:
    """CDATA, as oned writes template values; a literal ']]>' is split across sections."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _attrs_xml(items: list[tuple[str, Any]]) -> str:
    """Template attributes, sorted by name as oned stores them (a multimap)."""
    parts: list[str] = []
    for name, value in sorted(items, key=lambda kv: kv[0]):
        if isinstance(value, dict):
            inner = "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in sorted(value.items()))
            parts.append(f"<{name}>{inner}</{name}>")
        else:
            parts.append(f"<{name}>{_cd(value)}</{name}>")
    return "".join(parts)


_PERMS_VM = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U>"
             "<GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M>"
             "<OTHER_A>0</OTHER_A></PERMISSIONS>")
# oneadmin's objects, usable by the group they are in (chmod 640 in oned's terms).
_PERMS_SHARED = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>1</GROUP_U>"
                 "<GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M>"
                 "<OTHER_A>0</OTHER_A></PERMISSIONS>")


_SHARED_OWNER = (f"<UID>{OBJECT_UID}</UID><GID>{SHARED_GID}</GID><UNAME>{OBJECT_UNAME}</UNAME>"
                 f"<GNAME>{SHARED_GNAME}</GNAME>")

# ---------------------------------------------------------------- the bodies


@dataclass(frozen=True)
class Owner:
    """The one user every call runs as, and so owns every VM."""

    uid: int
    gid: int
    gname: str
    username: str


class Views:
    """The XML bodies of one site as its one user sees them."""

    def __init__(self, world: SiteWorld, owner: Owner, started_at: int) -> None:
        self.world = world
        self.owner = owner
        self.started_at = started_at   # REGTIME/MODTIME of the templates and images

    # ------------------------------------------------------------ templates
    def template(self, tid: int, name: str, tmpl: Template) -> str:
        return (f"<VMTEMPLATE><ID>{tid}</ID>{_SHARED_OWNER}"
                f"<NAME>{_x(name)}</NAME>{_PERMS_SHARED}"
                f"<REGTIME>{self.started_at}</REGTIME><TEMPLATE>{_attrs_xml(tmpl)}</TEMPLATE></VMTEMPLATE>")

    def template_pool(self, items: list[tuple[int, str, Template]]) -> str:
        return "<VMTEMPLATE_POOL>" + "".join(self.template(*t) for t in items) + "</VMTEMPLATE_POOL>"

    # ------------------------------------------------------------ VMs
    def _vm_parts(self, vm: SVM, now: float) -> dict[str, Any]:
        one = one_extra(vm)
        state, lcm = vm_state(vm, now)
        vid = int(vm.id)
        scheduled = state != S_PENDING and state != S_HOLD
        ip = vm.address or "127.0.0.1"
        nic = {"AR_ID": "0", "BRIDGE": "br0", "BRIDGE_TYPE": "linux", "IP": ip, "MAC": mac(vid),
               "NAME": "NIC0", "NETWORK": NETWORK_NAME, "NETWORK_ID": str(NETWORK_ID),
               "NETWORK_UNAME": "oneadmin", "NIC_ID": "0", "SECURITY_GROUPS": "0", "TARGET": f"one-{vid}-0",
               "VN_MAD": "bridge"}
        image = find_image(self.world, image_id=vm.image_id)
        disk = {"ALLOW_ORPHANS": "FORMAT", "CLONE": "YES", "CLONE_TARGET": "SYSTEM", "CLUSTER_ID": "0",
                "DATASTORE": "default", "DATASTORE_ID": str(DATASTORE_ID), "DEV_PREFIX": "vd", "DISK_ID": "0",
                "DISK_SNAPSHOT_TOTAL_SIZE": "0", "DISK_TYPE": "FILE", "DRIVER": "qcow2", "FORMAT": "qcow2",
                "IMAGE": image.name if image else "", "IMAGE_ID": vm.image_id, "IMAGE_STATE": "2",
                "IMAGE_UNAME": "oneadmin", "LN_TARGET": "NONE", "ORIGINAL_SIZE": "10240", "READONLY": "NO",
                "SAVE": "NO", "SIZE": "10240", "SOURCE": f"/var/lib/one//datastores/1/{vm.image_id}",
                "TARGET": "vda", "TM_MAD": "ssh", "TYPE": "FILE"} if vm.image_id != "" else None
        user_template = dict(vm.metadata)
        if lcm in FAILURE_MESSAGES and state == S_ACTIVE:
            user_template["ERROR"] = (time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(now)) + " : "
                                      + FAILURE_MESSAGES[lcm])
        if vm.error:
            user_template["SCHED_MESSAGE"] = (time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(vm.created))
                                              + " : Cannot dispatch VM: No host with enough capacity to deploy the VM")
        if (state == S_ACTIVE and lcm == L_RUNNING and vm.ready
                and str(vm.context.get("REPORT_READY", "")).upper() == "YES"):
            user_template["READY"] = "YES"
        host = one.get("host", 0)
        return {"state": state, "lcm": lcm, "vid": vid, "scheduled": scheduled, "nic": nic, "disk": disk,
                "user_template": user_template, "host": host, "hostname": f"kvm-node-{host}",
                "stime": int(vm.created)}

    def vm_short(self, vm: SVM, now: float) -> str:
        """A VM as one.vmpool.info lists it: a shortened TEMPLATE and HISTORY."""
        p = self._vm_parts(vm, now)
        o = self.owner
        vid = p["vid"]
        disk = p["disk"]
        tmpl: list[tuple[str, Any]] = [("CPU", one_extra(vm).get("cpu", str(vm.vcpus))),
                                       ("MEMORY", str(vm.ram_mib)),
                                       ("VCPU", one_extra(vm).get("vcpu", str(vm.vcpus)))]
        body = "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in tmpl)
        if disk:
            body += "<DISK>" + "".join(f"<{k}>{_cd(disk[k])}</{k}>" for k in
                                       ("DATASTORE", "DATASTORE_ID", "DISK_ID", "IMAGE", "IMAGE_ID", "SIZE",
                                        "TARGET", "TYPE")) + "</DISK>"
        body += "<NIC>" + "".join(f"<{k}>{_cd(p['nic'][k])}</{k}>" for k in
                                  ("IP", "MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS")) + "</NIC>"
        body += "<GRAPHICS><LISTEN><![CDATA[0.0.0.0]]></LISTEN><PORT>" + _cd(5900 + vid) + \
                "</PORT><TYPE><![CDATA[VNC]]></TYPE></GRAPHICS>"
        history = ""
        if p["scheduled"]:
            history = (f"<HISTORY><OID>{vid}</OID><SEQ>0</SEQ><HOSTNAME>{p['hostname']}</HOSTNAME>"
                       f"<HID>{p['host']}</HID><CID>0</CID><DS_ID>0</DS_ID><VM_MAD><![CDATA[kvm]]></VM_MAD>"
                       f"<TM_MAD><![CDATA[ssh]]></TM_MAD><ACTION>0</ACTION></HISTORY>")
        return (f"<VM><ID>{vid}</ID><UID>{o.uid}</UID><GID>{o.gid}</GID><UNAME>{_x(o.username)}</UNAME>"
                f"<GNAME>{o.gname}</GNAME><NAME>{_x(vm.name)}</NAME><LAST_POLL>{int(now)}</LAST_POLL>"
                f"<STATE>{p['state']}</STATE><LCM_STATE>{p['lcm']}</LCM_STATE><RESCHED>0</RESCHED>"
                f"<STIME>{p['stime']}</STIME><ETIME>0</ETIME>"
                f"<DEPLOY_ID>{f'one-{vid}' if p['scheduled'] else ''}</DEPLOY_ID>"
                f"<TEMPLATE>{body}</TEMPLATE><MONITORING></MONITORING>"
                f"<USER_TEMPLATE>{_attrs_xml(list(p['user_template'].items()))}</USER_TEMPLATE>"
                f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS></VM>")

    def vm_full(self, vm: SVM, now: float) -> str:
        """A VM as one.vm.info and one.vmpool.infoextended show it."""
        p = self._vm_parts(vm, now)
        o = self.owner
        one = one_extra(vm)
        vid = p["vid"]
        context = dict(vm.context)
        if context:
            context.update(context_network(context, vm.id, vm.address or "127.0.0.1"))
        tmpl: list[tuple[str, Any]] = [
            ("AUTOMATIC_DS_REQUIREMENTS", '("CLUSTERS/ID" @> 0)'),
            ("AUTOMATIC_NIC_REQUIREMENTS", '("CLUSTERS/ID" @> 0)'),
            ("AUTOMATIC_REQUIREMENTS", '(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)'),
            ("CPU", one.get("cpu", str(vm.vcpus))),
            ("GRAPHICS", {"LISTEN": "0.0.0.0", "PORT": str(5900 + vid), "TYPE": "VNC"}),
            ("MEMORY", str(vm.ram_mib)),
            ("NIC", p["nic"]),
            ("OS", {"ARCH": "x86_64", "UUID": one.get("uuid", "")}),
            ("TM_MAD_SYSTEM", "ssh"),
            ("VCPU", one.get("vcpu", str(vm.vcpus))),
            ("VMID", str(vid)),
        ]
        if context:
            tmpl.append(("CONTEXT", context))
        if p["disk"]:
            tmpl.append(("DISK", p["disk"]))
        if one.get("template_id") is not None:
            tmpl.append(("TEMPLATE_ID", str(one["template_id"])))
        history = ""
        if p["scheduled"]:
            st = p["stime"]
            history = (f"<HISTORY><OID>{vid}</OID><SEQ>0</SEQ><HOSTNAME>{p['hostname']}</HOSTNAME>"
                       f"<HID>{p['host']}</HID><CID>0</CID><STIME>{st}</STIME><ETIME>0</ETIME>"
                       f"<VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[ssh]]></TM_MAD><DS_ID>0</DS_ID>"
                       f"<PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID>"
                       f"<PSTIME>{st}</PSTIME><PETIME>{st}</PETIME><RSTIME>{st}</RSTIME><RETIME>0</RETIME>"
                       f"<ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>0</ACTION><UID>-1</UID><GID>-1</GID>"
                       f"<REQUEST_ID>-1</REQUEST_ID></HISTORY>")
        return (f"<VM><ID>{vid}</ID><UID>{o.uid}</UID><GID>{o.gid}</GID><UNAME>{_x(o.username)}</UNAME>"
                f"<GNAME>{o.gname}</GNAME><NAME>{_x(vm.name)}</NAME>{_PERMS_VM}"
                f"<LAST_POLL>{int(now)}</LAST_POLL><STATE>{p['state']}</STATE><LCM_STATE>{p['lcm']}</LCM_STATE>"
                f"<PREV_STATE>{p['state']}</PREV_STATE><PREV_LCM_STATE>{p['lcm']}</PREV_LCM_STATE>"
                f"<RESCHED>0</RESCHED><STIME>{p['stime']}</STIME><ETIME>0</ETIME>"
                f"<DEPLOY_ID>{f'one-{vid}' if p['scheduled'] else ''}</DEPLOY_ID>"
                f"<MONITORING></MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>"
                f"<TEMPLATE>{_attrs_xml(tmpl)}</TEMPLATE>"
                f"<USER_TEMPLATE>{_attrs_xml(list(p['user_template'].items()))}</USER_TEMPLATE>"
                f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS>"
                f"<BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>")

    def vm_pool(self, vms: list[SVM], now: float, *, extended: bool) -> str:
        show = self.vm_full if extended else self.vm_short
        return "<VM_POOL>" + "".join(show(v, now) for v in vms) + "</VM_POOL>"

    # ------------------------------------------------------------ the user
    def _vm_quota(self, q: Any) -> str:
        """A VM_QUOTA's <VM> entry for limits `q` with the site's usage (the sandbox's one
        user is its group's only member, so both count the same VMs); empty when unused."""
        with self.world.lock:
            n, cores, ram = self.world.usage()
            vms = self.world.live_vms()
        now = time.time()
        running = [v for v in vms if vm_state(v, now)[0] == S_ACTIVE]

        # The world's -1 means "no limit": the user then has the default (-1), and the
        # system default is unlimited (-2), as on a fresh oned.
        def lim(value: int) -> str:
            return "-1" if value < 0 else str(value)

        if not (n or q.instances >= 0 or q.cores >= 0 or q.ram_mib >= 0):
            return ""
        fields = [("CPU", lim(q.cores)), ("CPU_USED", str(cores)), ("MEMORY", lim(q.ram_mib)),
                  ("MEMORY_USED", str(ram)), ("PCI_DEV", "-1"), ("PCI_DEV_USED", "0"), ("PCI_NIC", "-1"),
                  ("PCI_NIC_USED", "0"), ("RUNNING_CPU", "-1"),
                  ("RUNNING_CPU_USED", str(sum(v.vcpus for v in running))), ("RUNNING_MEMORY", "-1"),
                  ("RUNNING_MEMORY_USED", str(sum(v.ram_mib for v in running))),
                  ("RUNNING_PCI_DEV", "-1"), ("RUNNING_PCI_DEV_USED", "0"), ("RUNNING_PCI_NIC", "-1"),
                  ("RUNNING_PCI_NIC_USED", "0"), ("RUNNING_VMS", "-1"), ("RUNNING_VMS_USED", str(len(running))),
                  ("SYSTEM_DISK_SIZE", "-1"), ("SYSTEM_DISK_SIZE_USED", "0"), ("VMS", lim(q.instances)),
                  ("VMS_USED", str(n))]
        return "<VM>" + "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in fields) + "</VM>"

    @staticmethod
    def _default_vm_quota() -> str:
        return "<VM>" + "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in (
            ("CPU", "-2"), ("CPU_USED", "0"), ("MEMORY", "-2"), ("MEMORY_USED", "0"), ("PCI_DEV", "-2"),
            ("PCI_DEV_USED", "0"), ("PCI_NIC", "-2"), ("PCI_NIC_USED", "0"), ("RUNNING_CPU", "-2"),
            ("RUNNING_CPU_USED", "0"), ("RUNNING_MEMORY", "-2"), ("RUNNING_MEMORY_USED", "0"),
            ("RUNNING_PCI_DEV", "-2"), ("RUNNING_PCI_DEV_USED", "0"), ("RUNNING_PCI_NIC", "-2"),
            ("RUNNING_PCI_NIC_USED", "0"), ("RUNNING_VMS", "-2"), ("RUNNING_VMS_USED", "0"),
            ("SYSTEM_DISK_SIZE", "-2"), ("SYSTEM_DISK_SIZE_USED", "0"), ("VMS", "-2"), ("VMS_USED", "0"))) + "</VM>"

    def group(self, gid: int, name: str, members: list[int]) -> str:
        """one.group.info: the group's VM quota and usage (group.xsd)."""
        vm_quota = self._vm_quota(self.world.group_quota) if gid == SHARED_GID else ""
        return (f"<GROUP><ID>{gid}</ID><NAME>{_x(name)}</NAME><TEMPLATE></TEMPLATE>"
                f"<USERS>{''.join(f'<ID>{u}</ID>' for u in members)}</USERS><ADMINS></ADMINS>"
                f"<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{vm_quota}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
                f"<VLAN_RULES><ID>{gid}</ID></VLAN_RULES><DEFAULT_GROUP_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{self._default_vm_quota()}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
                f"</DEFAULT_GROUP_QUOTAS></GROUP>")

    def user(self, password: str) -> str:
        """The user with its VM quota and usage; the default quotas as a fresh oned has them.
        oneadmin has no quota (oned does not count its VMs)."""
        o = self.owner
        vm_quota = "" if o.uid == 0 else self._vm_quota(self.world.quota)
        defaults = self._default_vm_quota()
        # oned shows the password's hash, never the password
        pw_hash = hashlib.sha256(password.encode()).hexdigest()
        return (f"<USER><ID>{o.uid}</ID><GID>{o.gid}</GID><GROUPS><ID>{o.gid}</ID></GROUPS>"
                f"<GNAME>{o.gname}</GNAME><NAME>{_x(o.username)}</NAME><PASSWORD>{pw_hash}</PASSWORD>"
                f"<AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED>"
                f"<TEMPLATE><TOKEN_PASSWORD>{_cd(hashlib.sha1(pw_hash.encode()).hexdigest())}</TOKEN_PASSWORD></TEMPLATE>"
                f"<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{vm_quota}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
                f"<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{defaults}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></DEFAULT_USER_QUOTAS></USER>")

    # ------------------------------------------------------------ hosts, images, networks
    def host_pool(self) -> str:
        now = time.time()
        usage = host_usage(self.world, now)
        hosts_vms: dict[int, list[int]] = {h[0]: [] for h in hosts(self.world)}
        for vm in live_vms(self.world):
            host = one_extra(vm).get("host")
            if host in hosts_vms and holds_host(vm_state(vm, now)[0]):
                hosts_vms[host].append(int(vm.id))
        parts = []
        for hid, name, cpus, ram in hosts(self.world):
            cpu_used, ram_used, running = usage[hid]
            vms = "".join(f"<ID>{i}</ID>" for i in sorted(hosts_vms[hid]))
            parts.append(
                f"<HOST><ID>{hid}</ID><NAME>{name}</NAME><STATE>2</STATE><PREV_STATE>2</PREV_STATE>"
                f"<IM_MAD><![CDATA[kvm]]></IM_MAD><VM_MAD><![CDATA[kvm]]></VM_MAD>"
                f"<CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>"
                f"<HOST_SHARE><MEM_USAGE>{ram_used * 1024}</MEM_USAGE><CPU_USAGE>{cpu_used * 100}</CPU_USAGE>"
                f"<TOTAL_MEM>{ram * 1024}</TOTAL_MEM><TOTAL_CPU>{cpus * 100}</TOTAL_CPU>"
                f"<MAX_MEM>{ram * 1024}</MAX_MEM><MAX_CPU>{cpus * 100}</MAX_CPU>"
                f"<RUNNING_VMS>{running}</RUNNING_VMS><VMS_THREAD>1</VMS_THREAD>"
                f"<DATASTORES><DISK_USAGE>0</DISK_USAGE><DS><FREE_MB><![CDATA[409600]]></FREE_MB>"
                f"<ID><![CDATA[0]]></ID><TOTAL_MB><![CDATA[512000]]></TOTAL_MB><USED_MB><![CDATA[102400]]></USED_MB>"
                f"</DS><FREE_DISK>409600</FREE_DISK><MAX_DISK>512000</MAX_DISK><USED_DISK>102400</USED_DISK>"
                f"</DATASTORES><PCI_DEVICES></PCI_DEVICES><NUMA_NODES></NUMA_NODES></HOST_SHARE>"
                f"<VMS>{vms}</VMS>"
                f"<TEMPLATE><ARCH><![CDATA[x86_64]]></ARCH><CPUSPEED><![CDATA[2400]]></CPUSPEED>"
                f"<HOSTNAME><![CDATA[{name}]]></HOSTNAME><HYPERVISOR><![CDATA[kvm]]></HYPERVISOR>"
                f"<IM_MAD><![CDATA[kvm]]></IM_MAD><MODELNAME><![CDATA[skyctl sandbox vCPU]]></MODELNAME>"
                f"<RESERVED_CPU><![CDATA[]]></RESERVED_CPU><RESERVED_MEM><![CDATA[]]></RESERVED_MEM>"
                f"<VERSION><![CDATA[{ONE_VERSION}]]></VERSION><VM_MAD><![CDATA[kvm]]></VM_MAD></TEMPLATE>"
                f"<MONITORING><TIMESTAMP>{int(now)}</TIMESTAMP><ID>{hid}</ID><CAPACITY>"
                f"<FREE_CPU>{max(cpus - cpu_used, 0) * 100}</FREE_CPU>"
                f"<FREE_MEMORY>{max(ram - ram_used, 0) * 1024}</FREE_MEMORY>"
                f"<USED_CPU>{cpu_used * 100}</USED_CPU><USED_MEMORY>{ram_used * 1024}</USED_MEMORY>"
                f"</CAPACITY></MONITORING></HOST>")
        return "<HOST_POOL>" + "".join(parts) + "</HOST_POOL>"

    def image_pool(self, images: list[Any]) -> str:
        return "<IMAGE_POOL>" + "".join(self.image(img) for img in images) + "</IMAGE_POOL>"

    def image(self, img: Any) -> str:
        """One <IMAGE>: the site's seeded ones belong to oneadmin; those the user allocated
        (`created` set) to the user. STATE follows the image: LOCKED (4) while oned's
        datastore driver copies PATH in, READY (1) or USED (2) after, ERROR (5) if that failed."""
        now = time.time()
        vms = sorted(int(vm.id) for vm in live_vms(self.world)
                     if vm.image_id == img.id and vm_state(vm, now)[0] not in (S_PENDING, S_HOLD))
        size_mb = max(img.size // (1024 * 1024), 1)
        mine = img.created > 0
        owner = (f"<UID>{self.owner.uid}</UID><GID>{self.owner.gid}</GID><UNAME>{_x(self.owner.username)}</UNAME>"
                 f"<GNAME>{_x(self.owner.gname)}</GNAME>") if mine else _SHARED_OWNER
        state = {"locked": 4, "error": 5}.get(img.status, 2 if vms else 1)
        regtime = int(img.created) if mine else self.started_at
        source = f"/var/lib/one//datastores/{img.datastore}/{img.checksum or img.id}" if img.status != "locked" else ""
        extra = f"<ERROR>{_cd(img.error)}</ERROR>" if getattr(img, "error", None) else ""
        md5 = f"<MD5>{_cd(img.checksum)}</MD5>" if img.checksum else ""
        return (f"<IMAGE><ID>{img.id}</ID>{owner}"
                f"<NAME>{_x(img.name)}</NAME>{_PERMS_VM if mine else _PERMS_SHARED}<TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE>"
                f"<PERSISTENT>0</PERSISTENT><REGTIME>{regtime}</REGTIME><MODTIME>{regtime}</MODTIME>"
                f"<SOURCE>{_cd(source)}</SOURCE>"
                f"<PATH>{_cd(img.url or '')}</PATH><FORMAT><![CDATA[{img.disk_format or 'qcow2'}]]></FORMAT>"
                f"<FS><![CDATA[]]></FS>"
                f"<SIZE>{size_mb}</SIZE><STATE>{state}</STATE><PREV_STATE>{4 if mine else 1}</PREV_STATE>"
                f"<RUNNING_VMS>{len(vms)}</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID>"
                f"<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>{img.datastore}</DATASTORE_ID>"
                f"<DATASTORE>{DATASTORES[img.datastore][0]}</DATASTORE><VMS>{''.join(f'<ID>{i}</ID>' for i in vms)}</VMS>"
                f"<CLONES></CLONES><APP_CLONES></APP_CLONES>"
                f"<TEMPLATE><DEV_PREFIX><![CDATA[vd]]></DEV_PREFIX>{extra}{md5}</TEMPLATE>"
                f"<SNAPSHOTS><ALLOW_ORPHANS><![CDATA[FORMAT]]></ALLOW_ORPHANS><CURRENT_BASE><![CDATA[-1]]>"
                f"</CURRENT_BASE><NEXT_SNAPSHOT><![CDATA[0]]></NEXT_SNAPSHOT></SNAPSHOTS>"
                f"<BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>")

    def datastore_pool(self) -> str:
        """oned's three default datastores: system (0), default images (1), files (2)."""
        parts = []
        for ds_id, (name, ds_type, ds_mad, tm_mad) in sorted(DATASTORES.items()):
            images = [i.id for i in self.world.images.values() if ds_type == 0 and i.datastore == ds_id]
            used = sum(max(i.size // (1024 * 1024), 1) for i in self.world.images.values() if i.datastore == ds_id)
            template = (f"<DS_MAD>{_cd(ds_mad)}</DS_MAD>" if ds_mad != "-" else "") + \
                f"<TM_MAD>{_cd(tm_mad)}</TM_MAD><TYPE>{_cd(DS_TYPE_NAMES[ds_type])}</TYPE>"
            parts.append(
                f"<DATASTORE><ID>{ds_id}</ID>{_SHARED_OWNER}<NAME>{name}</NAME>{_PERMS_SHARED}"
                f"<DS_MAD>{_cd(ds_mad)}</DS_MAD><TM_MAD>{_cd(tm_mad)}</TM_MAD>"
                f"<BASE_PATH>/var/lib/one//datastores/{ds_id}</BASE_PATH><TYPE>{ds_type}</TYPE>"
                f"<DISK_TYPE>0</DISK_TYPE><STATE>0</STATE><CLUSTERS><ID>0</ID></CLUSTERS>"
                f"<TOTAL_MB>{DATASTORE_TOTAL_MB}</TOTAL_MB><FREE_MB>{DATASTORE_TOTAL_MB - used}</FREE_MB>"
                f"<USED_MB>{used}</USED_MB><IMAGES>{''.join(f'<ID>{i}</ID>' for i in images)}</IMAGES>"
                f"<TEMPLATE>{template}</TEMPLATE></DATASTORE>")
        return "<DATASTORE_POOL>" + "".join(parts) + "</DATASTORE_POOL>"

    def vnet_pool(self, vnets: list[int]) -> str:
        """The site's one network (listed when `vnets` holds its id), its leases one per VM."""
        leases = len(live_vms(self.world))
        body = "".join(
            f"<VNET><ID>{NETWORK_ID}</ID>{_SHARED_OWNER}"
            f"<NAME>{NETWORK_NAME}</NAME>{_PERMS_SHARED}<CLUSTERS><ID>0</ID></CLUSTERS><BRIDGE>br0</BRIDGE>"
            f"<BRIDGE_TYPE>linux</BRIDGE_TYPE><STATE>1</STATE><PREV_STATE>0</PREV_STATE>"
            f"<PARENT_NETWORK_ID></PARENT_NETWORK_ID><TEMPLATE_ID>-1</TEMPLATE_ID><VN_MAD>bridge</VN_MAD>"
            f"<PHYDEV></PHYDEV><VLAN_ID></VLAN_ID><OUTER_VLAN_ID></OUTER_VLAN_ID>"
            f"<VLAN_ID_AUTOMATIC>0</VLAN_ID_AUTOMATIC><OUTER_VLAN_ID_AUTOMATIC>0</OUTER_VLAN_ID_AUTOMATIC>"
            f"<USED_LEASES>{leases}</USED_LEASES><VROUTERS></VROUTERS><UPDATED_VMS></UPDATED_VMS>"
            f"<OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>"
            f"<TEMPLATE><BRIDGE><![CDATA[br0]]></BRIDGE><BRIDGE_TYPE><![CDATA[linux]]></BRIDGE_TYPE>"
            f"<DNS><![CDATA[127.0.0.53]]></DNS><NETWORK_ADDRESS><![CDATA[127.0.0.0]]></NETWORK_ADDRESS>"
            f"<NETWORK_MASK><![CDATA[255.0.0.0]]></NETWORK_MASK><OUTER_VLAN_ID><![CDATA[]]></OUTER_VLAN_ID>"
            f"<PHYDEV><![CDATA[]]></PHYDEV><SECURITY_GROUPS><![CDATA[0]]></SECURITY_GROUPS>"
            f"<VLAN_ID><![CDATA[]]></VLAN_ID><VN_MAD><![CDATA[bridge]]></VN_MAD></TEMPLATE>"
            f"<AR_POOL><AR><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[127.1.0.1]]></IP>"
            f"<MAC><![CDATA[02:00:7f:01:00:01]]></MAC><NEXT_INDEX>0</NEXT_INDEX><SIZE><![CDATA[65000]]></SIZE>"
            f"<TYPE><![CDATA[IP4]]></TYPE></AR></AR_POOL></VNET>" for _ in vnets)
        return "<VNET_POOL>" + body + "</VNET_POOL>"
