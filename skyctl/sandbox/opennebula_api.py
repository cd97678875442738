"""The sandbox's OpenNebula-compatible XML-RPC endpoint (`oned` as pyone sees it).

One `OpenNebulaFront` serves one `SiteWorld` on loopback over real XML-RPC/HTTP 1.1. Replies
are `[ok, body, code]` arrays whose XML bodies follow OpenNebula 7.x's official schemas
(share/doc/xsd) and the replies recorded from real servers; errors carry the codes and
message shapes real `oned` sends. VM states are computed from timestamps when asked, so
1000 VMs cost no timers, and pool bodies are built with string joins, not a DOM.

Facts this imitates (OpenNebula XML-RPC reference):
- the session string `user:password` is the first argument of every call;
- 0x100 authentication, 0x200 authorization (quota), 0x400 no such object, 0x800 action
  not available in this state, 0x1000 API, 0x2000 internal, 0x4000 allocate;
- pool calls take (filter, start, end[, state, query]); an end below -1 is a page size and
  start then an offset;
- the extra template of `one.template.instantiate` replaces whole attributes of the
  template; attributes that are not part of a VM's TEMPLATE end in its USER_TEMPLATE.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import math
import re
import socket
import time
import uuid
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from skyctl.sandbox.serving import KeepAliveServer
from skyctl.sandbox.world import QuotaError, SiteWorld, SVM

ONE_VERSION = "7.0.0"

# Error codes (OpenNebula XML-RPC API).
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000

# VM STATE / LCM_STATE numbers used here.
S_PENDING, S_HOLD, S_ACTIVE, S_STOPPED, S_SUSPENDED, S_DONE, S_POWEROFF, S_UNDEPLOYED = 1, 2, 3, 4, 5, 6, 8, 9
L_LCM_INIT, L_PROLOG, L_BOOT, L_RUNNING = 0, 1, 2, 3
L_BOOT_POWEROFF, L_BOOT_SUSPENDED, L_BOOT_STOPPED, L_BOOT_UNDEPLOY = 20, 21, 22, 32
STATE_NAMES = {0: "INIT", 1: "PENDING", 2: "HOLD", 3: "ACTIVE", 4: "STOPPED", 5: "SUSPENDED",
               6: "DONE", 7: "FAILED", 8: "POWEROFF", 9: "UNDEPLOYED"}
LCM_NAMES = {0: "LCM_INIT", 1: "PROLOG", 2: "BOOT", 3: "RUNNING", 20: "BOOT_POWEROFF",
             21: "BOOT_SUSPENDED", 22: "BOOT_STOPPED", 32: "BOOT_UNDEPLOY"}
# Where a resumed VM boots from, per the state it was in.
_RESUME_LCM = {S_POWEROFF: L_BOOT_POWEROFF, S_SUSPENDED: L_BOOT_SUSPENDED, S_STOPPED: L_BOOT_STOPPED,
               S_UNDEPLOYED: L_BOOT_UNDEPLOY}

# Attributes oned keeps in a VM's TEMPLATE; anything else a user sends lands in USER_TEMPLATE.
VM_TEMPLATE_ATTRS = frozenset({
    "AUTOMATIC_DS_REQUIREMENTS", "AUTOMATIC_NIC_REQUIREMENTS", "AUTOMATIC_REQUIREMENTS",
    "CLONING_TEMPLATE_ID", "CONTEXT", "CPU", "CPU_COST", "DISK", "DISK_COST", "EMULATOR", "FEATURES",
    "HYPERV_OPTIONS", "GRAPHICS", "VIDEO", "IMPORTED", "INPUT", "MEMORY", "MEMORY_COST", "MEMORY_MAX",
    "MEMORY_SLOTS", "MEMORY_RESIZE_MODE", "NIC", "NIC_ALIAS", "NIC_DEFAULT", "NUMA_NODE", "OS", "PCI",
    "RAW", "SECURITY_GROUP_RULE", "SNAPSHOT", "SPICE_OPTIONS", "SUBMIT_ON_HOLD", "TEMPLATE_ID",
    "TM_MAD_SYSTEM", "TOPOLOGY", "TPM", "VCPU", "VCPU_MAX", "VMGROUP", "VMID", "SCHED_ACTION", "NAME",
})

NETWORK_NAME = "sandbox-net"
NETWORK_ID = 0
DATASTORE_ID = 1

Template = list[tuple[str, "str | dict[str, str]"]]


class OneError(Exception):
    """An error reply: `[false, message, code, resource_id, 0]`."""

    def __init__(self, code: int, message: str, resource_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource_id = resource_id


# ---------------------------------------------------------------- templates (ONE syntax and XML)

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


def parse_template(text: str) -> Template:
    """Parse an OpenNebula template, in its own syntax or in XML, to (NAME, value) pairs.

    Vector attributes (DISK = [ IMAGE_ID = "0" ]) become dicts; names are upper-cased as
    oned does. Raises ValueError with a parse message."""
    text = text or ""
    if text.lstrip().startswith("<"):
        return _parse_xml_template(text)
    out: Template = []
    i, n = 0, len(text)

    def skip_ws(i: int, newlines: bool = True) -> int:
        while i < n:
            c = text[i]
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            elif c in " \t\r" or (newlines and c == "\n"):
                i += 1
            else:
                break
        return i

    def read_value(i: int, stop: str) -> tuple[str, int]:
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("syntax error, unterminated string")
            return "".join(buf), i + 1
        start = i
        while i < n and text[i] not in stop:
            i += 1
        return text[start:i].strip(), i

    while True:
        i = skip_ws(i)
        if i >= n:
            return out
        m = _NAME_RE.match(text, i)
        if not m:
            raise ValueError(f"syntax error, unexpected {text[i]!r} at position {i}")
        name = m.group(0).upper()
        i = skip_ws(m.end(), newlines=False)
        if i >= n or text[i] != "=":
            raise ValueError(f"syntax error, expecting '=' after {name}")
        i = skip_ws(i + 1, newlines=False)
        if i < n and text[i] == "[":
            vector: dict[str, str] = {}
            i += 1
            while True:
                i = skip_ws(i)
                if i < n and text[i] == "]":
                    i += 1
                    break
                m = _NAME_RE.match(text, i)
                if not m:
                    raise ValueError(f"syntax error in vector attribute {name}")
                key = m.group(0).upper()
                i = skip_ws(m.end())
                if i >= n or text[i] != "=":
                    raise ValueError(f"syntax error, expecting '=' after {name}/{key}")
                value, i = read_value(skip_ws(i + 1), ",]\n")
                vector[key] = value
                i = skip_ws(i)
                if i < n and text[i] == ",":
                    i += 1
            out.append((name, vector))
        else:
            value, i = read_value(i, "\n")
            out.append((name, value))


def _parse_xml_template(text: str) -> Template:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"syntax error in XML template: {e}") from None
    out: Template = []
    for child in root:
        if len(child):
            out.append((child.tag.upper(), {g.tag.upper(): (g.text or "") for g in child}))
        else:
            out.append((child.tag.upper(), child.text or ""))
    return out


def merge_templates(base: Template, extra: Template) -> Template:
    """oned's Template::merge: an attribute in `extra` replaces every same-named one in `base`."""
    names = {k for k, _ in extra}
    return [(k, v) for k, v in base if k not in names] + list(extra)


def _first(tmpl: Template, name: str) -> Any:
    for k, v in tmpl:
        if k == name:
            return v
    return None


# ---------------------------------------------------------------- XML helpers


def _x(value: Any) -> str:
    """Escape element text (oned writes plain escaped text for object fields)."""
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
_PERMS_SHARED = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>1</GROUP_U>"
                 "<GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>1</OTHER_U><OTHER_M>0</OTHER_M>"
                 "<OTHER_A>0</OTHER_A></PERMISSIONS>")


def _mac(vm_id: int) -> str:
    return f"02:00:7f:{(vm_id >> 16) & 0xFF:02x}:{(vm_id >> 8) & 0xFF:02x}:{vm_id & 0xFF:02x}"


# ---------------------------------------------------------------- the front-end


class _Server(KeepAliveServer, SimpleXMLRPCServer):
    def __init__(self, front: OpenNebulaFront, addr: tuple[str, int]) -> None:
        self.front = front
        super().__init__(addr, requestHandler=_Handler, logRequests=False, allow_none=False,
                         encoding="utf-8", bind_and_activate=True)

    def _dispatch(self, method: str, params: tuple[Any, ...]) -> Any:
        return self.front.dispatch(method, params)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Called on the one accepting thread, so the count needs no lock.
        self.front.connections_accepted += 1
        super().process_request(request, client_address)


class _Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as oned's xmlrpc-c/abyss server
    rpc_paths = ("/RPC2", "/")
    timeout = 120                   # idle keep-alive connections end eventually
    encode_threshold = None         # oned's abyss server does not gzip replies
    server: _Server

    def _drop_if_down(self) -> bool:
        if self.server.front.world.faults.down:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        return False

    def handle_one_request(self) -> None:
        if self._drop_if_down():
            return
        super().handle_one_request()

    def do_POST(self) -> None:
        if self._drop_if_down():
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class OpenNebulaFront:
    """XML-RPC `one.*` front-end for one `SiteWorld`."""

    def __init__(self, world: SiteWorld, *, host: str = "127.0.0.1", port: int = 0,
                 username: str = "oneadmin", password: str = "sandbox") -> None:
        self.world = world
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.uid = 0 if username == "oneadmin" else 2
        self.gid, self.gname = (0, "oneadmin") if username == "oneadmin" else (1, "users")
        self.connections_accepted = 0   # TCP connections taken; shows whether clients reuse them
        self._server: _Server | None = None
        self._started_at = int(time.time())
        self._methods: dict[str, Callable[..., Any]] = {
            "one.system.version": self._system_version,
            "one.templatepool.info": self._templatepool_info,
            "one.template.info": self._template_info,
            "one.template.instantiate": self._template_instantiate,
            "one.vm.allocate": self._vm_allocate,
            "one.vm.info": self._vm_info,
            "one.vmpool.info": self._vmpool_info,
            "one.vmpool.infoextended": self._vmpool_infoextended,
            "one.vm.action": self._vm_action,
            "one.vm.update": self._vm_update,
            "one.user.info": self._user_info,
            "one.user.quota": self._user_quota,
            "one.hostpool.info": self._hostpool_info,
            "one.imagepool.info": self._imagepool_info,
            "one.vnpool.info": self._vnpool_info,
        }

    # ------------------------------------------------------------ lifecycle of the server
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/RPC2"

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server(self, (self.host, self.port))
        self.port = server.server_address[1]
        self._server = server
        server.serve_in_thread(f"one-front-{self.world.name}", poll_interval=0.05)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop_serving()

    # ------------------------------------------------------------ dispatch
    def dispatch(self, method: str, params: tuple[Any, ...]) -> list[Any]:
        fn = self._methods.get(method)
        if fn is None:
            # xmlrpc-c's answer for an unknown method
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        if not params or not isinstance(params[0], str):
            raise xmlrpc.client.Fault(-501, "Type mismatch")
        if self.world.inject():
            return self._failure(INTERNAL, f"[{method}] Internal error, the request could not be completed.")
        if not hmac.compare_digest(params[0].encode(), f"{self.username}:{self._password}".encode()):
            return self._failure(AUTHENTICATION, f"[{method}] User couldn't be authenticated, aborting call.")
        _check_arguments(fn, method, params[1:])
        try:
            return [True, fn(method, *params[1:]), 0]
        except OneError as e:
            return self._failure(e.code, e.message, e.resource_id)

    @staticmethod
    def _failure(code: int, message: str, resource_id: int = -1) -> list[Any]:
        return [False, message, code, resource_id, 0]

    # ------------------------------------------------------------ state, computed lazily
    @staticmethod
    def _one(vm: SVM) -> dict[str, Any]:
        return vm.extra.setdefault("one", {})

    def vm_state(self, vm: SVM, now: float | None = None) -> tuple[int, int]:
        one = self._one(vm)
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
        if since < 0.2 * delay:
            return S_PENDING, L_LCM_INIT
        if since < 0.6 * delay:
            return S_ACTIVE, L_PROLOG
        if since < delay:
            return S_ACTIVE, L_BOOT
        return S_ACTIVE, L_RUNNING

    @staticmethod
    def _state_str(state: int, lcm: int) -> str:
        return LCM_NAMES.get(lcm, str(lcm)) if state == S_ACTIVE else STATE_NAMES.get(state, str(state))

    # ------------------------------------------------------------ hosts (two, sharing the site's room)
    def _hosts(self) -> list[tuple[int, str, int, int]]:
        """(id, name, max_cpu in cores, max_mem in MiB). Unlimited sites get big hosts."""
        cpus = self.world.host_cpus if self.world.host_cpus is not None else 512
        ram = self.world.host_ram_mib if self.world.host_ram_mib is not None else 2 * 1024 * 1024
        half_cpu, half_ram = cpus // 2, ram // 2
        return [(0, "kvm-node-0", cpus - half_cpu, ram - half_ram), (1, "kvm-node-1", half_cpu, half_ram)]

    @staticmethod
    def _holds_host(state: int) -> bool:
        return state in (S_ACTIVE, S_POWEROFF, S_SUSPENDED)

    def _vms(self) -> list[SVM]:
        """A consistent copy of the live VMs (front-end threads create and delete concurrently)."""
        with self.world.lock:
            return self.world.live_vms()

    def _host_usage(self, now: float) -> dict[int, list[int]]:
        usage = {h[0]: [0, 0, 0] for h in self._hosts()}   # cpu cores, MiB, running VMs
        for vm in self._vms():
            state, _ = self.vm_state(vm, now)
            host = self._one(vm).get("host")
            if host in usage and self._holds_host(state):
                u = usage[host]
                u[0] += vm.vcpus
                u[1] += vm.ram_mib
                u[2] += 1
        return usage

    def _pick_host(self) -> int:
        now = time.time()
        usage = self._host_usage(now)
        return max(self._hosts(), key=lambda h: (h[2] - usage[h[0]][0], -h[0]))[0]

    # ------------------------------------------------------------ templates and images
    def _templates(self) -> list[tuple[int, str, Template]]:
        out = []
        for image in sorted(self.world.images.values(), key=lambda i: int(i.id) if i.id.isdigit() else 0):
            tid = int(image.id) if image.id.isdigit() else 0
            tmpl: Template = [
                ("CONTEXT", {"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]"}),
                ("CPU", "1"),
                ("DISK", {"IMAGE": image.name, "IMAGE_UNAME": "oneadmin"}),
                ("GRAPHICS", {"LISTEN": "0.0.0.0", "TYPE": "VNC"}),
                ("HYPERVISOR", "kvm"),
                ("LOGO", "images/logos/linux.png"),
                ("MEMORY", "1024"),
                ("NIC", {"NETWORK": NETWORK_NAME, "NETWORK_UNAME": "oneadmin"}),
                ("OS", {"ARCH": "x86_64"}),
                ("VCPU", "1"),
            ]
            out.append((tid, image.name, tmpl))
        return out

    def _template_xml(self, tid: int, name: str, tmpl: Template) -> str:
        return (f"<VMTEMPLATE><ID>{tid}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
                f"<GNAME>oneadmin</GNAME><NAME>{_x(name)}</NAME>{_PERMS_SHARED}"
                f"<REGTIME>{self._started_at}</REGTIME><TEMPLATE>{_attrs_xml(tmpl)}</TEMPLATE></VMTEMPLATE>")

    def _find_image(self, image_id: str | None = None, name: str | None = None) -> Any:
        for image in self.world.images.values():
            if (image_id is not None and image.id == image_id) or (name is not None and image.name == name):
                return image
        return None

    # ------------------------------------------------------------ VM bodies
    def _vm_parts(self, vm: SVM, now: float) -> dict[str, Any]:
        one = self._one(vm)
        state, lcm = self.vm_state(vm, now)
        vid = int(vm.id)
        scheduled = state != S_PENDING and state != S_HOLD
        ip = vm.address or "127.0.0.1"
        nic = {"AR_ID": "0", "BRIDGE": "br0", "BRIDGE_TYPE": "linux", "IP": ip, "MAC": _mac(vid),
               "NAME": "NIC0", "NETWORK": NETWORK_NAME, "NETWORK_ID": str(NETWORK_ID),
               "NETWORK_UNAME": "oneadmin", "NIC_ID": "0", "SECURITY_GROUPS": "0", "TARGET": f"one-{vid}-0",
               "VN_MAD": "bridge"}
        image = self._find_image(image_id=vm.image_id)
        disk = {"ALLOW_ORPHANS": "FORMAT", "CLONE": "YES", "CLONE_TARGET": "SYSTEM", "CLUSTER_ID": "0",
                "DATASTORE": "default", "DATASTORE_ID": str(DATASTORE_ID), "DEV_PREFIX": "vd", "DISK_ID": "0",
                "DISK_SNAPSHOT_TOTAL_SIZE": "0", "DISK_TYPE": "FILE", "DRIVER": "qcow2", "FORMAT": "qcow2",
                "IMAGE": image.name if image else "", "IMAGE_ID": vm.image_id, "IMAGE_STATE": "2",
                "IMAGE_UNAME": "oneadmin", "LN_TARGET": "NONE", "ORIGINAL_SIZE": "10240", "READONLY": "NO",
                "SAVE": "NO", "SIZE": "10240", "SOURCE": f"/var/lib/one//datastores/1/{vm.image_id}",
                "TARGET": "vda", "TM_MAD": "ssh", "TYPE": "FILE"} if vm.image_id != "" else None
        user_template = dict(vm.metadata)
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

    def _short_vm_xml(self, vm: SVM, now: float) -> str:
        p = self._vm_parts(vm, now)
        vid = p["vid"]
        disk = p["disk"]
        tmpl: list[tuple[str, Any]] = [("CPU", self._one(vm).get("cpu", str(vm.vcpus))),
                                       ("MEMORY", str(vm.ram_mib)),
                                       ("VCPU", self._one(vm).get("vcpu", str(vm.vcpus)))]
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
        return (f"<VM><ID>{vid}</ID><UID>{self.uid}</UID><GID>{self.gid}</GID><UNAME>{_x(self.username)}</UNAME>"
                f"<GNAME>{self.gname}</GNAME><NAME>{_x(vm.name)}</NAME><LAST_POLL>{int(now)}</LAST_POLL>"
                f"<STATE>{p['state']}</STATE><LCM_STATE>{p['lcm']}</LCM_STATE><RESCHED>0</RESCHED>"
                f"<STIME>{p['stime']}</STIME><ETIME>0</ETIME>"
                f"<DEPLOY_ID>{f'one-{vid}' if p['scheduled'] else ''}</DEPLOY_ID>"
                f"<TEMPLATE>{body}</TEMPLATE><MONITORING></MONITORING>"
                f"<USER_TEMPLATE>{_attrs_xml(list(p['user_template'].items()))}</USER_TEMPLATE>"
                f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS></VM>")

    def _full_vm_xml(self, vm: SVM, now: float) -> str:
        p = self._vm_parts(vm, now)
        one = self._one(vm)
        vid = p["vid"]
        context = dict(vm.context)
        if context:
            context.update(_context_network(context, vm.id, vm.address or "127.0.0.1"))
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
        return (f"<VM><ID>{vid}</ID><UID>{self.uid}</UID><GID>{self.gid}</GID><UNAME>{_x(self.username)}</UNAME>"
                f"<GNAME>{self.gname}</GNAME><NAME>{_x(vm.name)}</NAME>{_PERMS_VM}"
                f"<LAST_POLL>{int(now)}</LAST_POLL><STATE>{p['state']}</STATE><LCM_STATE>{p['lcm']}</LCM_STATE>"
                f"<PREV_STATE>{p['state']}</PREV_STATE><PREV_LCM_STATE>{p['lcm']}</PREV_LCM_STATE>"
                f"<RESCHED>0</RESCHED><STIME>{p['stime']}</STIME><ETIME>0</ETIME>"
                f"<DEPLOY_ID>{f'one-{vid}' if p['scheduled'] else ''}</DEPLOY_ID>"
                f"<MONITORING></MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>"
                f"<TEMPLATE>{_attrs_xml(tmpl)}</TEMPLATE>"
                f"<USER_TEMPLATE>{_attrs_xml(list(p['user_template'].items()))}</USER_TEMPLATE>"
                f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS>"
                f"<BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>")

    # ------------------------------------------------------------ the methods
    def _system_version(self, method: str) -> str:
        return ONE_VERSION

    @staticmethod
    def _page(items: list[Any], start: int, end: int, key: Callable[[Any], int]) -> list[Any]:
        """Pool ranges: end >= -1 means an id range [start, end] (-1 open); below -1 it is a
        page size and start the offset."""
        if end < -1:
            offset = max(start, 0)
            return items[offset:offset - end]
        lo = start if start >= 0 else -1
        return [i for i in items if key(i) >= lo and (end == -1 or key(i) <= end)]

    def _check_filter(self, flag: int) -> bool:
        """Pool filter: -4 primary group, -3 mine, -2 all, -1 mine+my groups, >= 0 a user id."""
        if flag < -4:
            raise OneError(XML_RPC_API, "Incorrect filter_flag.")
        return flag < 0 or flag == self.uid

    def _templatepool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        items = self._templates() if self._check_filter(flag) else []
        items = self._page(items, start, end, key=lambda t: t[0])
        return "<VMTEMPLATE_POOL>" + "".join(self._template_xml(*t) for t in items) + "</VMTEMPLATE_POOL>"

    def _template_info(self, method: str, tid: int, extended: bool = False, decrypt: bool = False) -> str:
        for t in self._templates():
            if t[0] == tid:
                return self._template_xml(*t)
        raise OneError(NO_EXISTS, f"[{method}] Error getting virtual machine template [{tid}].", tid)

    def _template_instantiate(self, method: str, tid: int, name: str = "", hold: bool = False,
                              extra: str = "", persistent: bool = False) -> int:
        found = [t for t in self._templates() if t[0] == tid]
        if not found:
            raise OneError(NO_EXISTS, f"[{method}] Error getting virtual machine template [{tid}].", tid)
        _, tname, base = found[0]
        try:
            extra_tmpl = parse_template(extra)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Parse error: {e}") from None
        merged = merge_templates(base, [kv for kv in extra_tmpl if kv[0] != "NAME"])
        merged.append(("TEMPLATE_ID", str(tid)))
        return self._create(method, merged, name, hold, default_name=tname)

    def _vm_allocate(self, method: str, template: str, hold: bool = False) -> int:
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Parse error: {e}") from None
        name = _first(tmpl, "NAME") or ""
        return self._create(method, tmpl, str(name), hold, default_name="one")

    def _create(self, method: str, tmpl: Template, name: str, hold: bool, default_name: str) -> int:
        def number(attr: str, default: str | None) -> float:
            raw = _first(tmpl, attr)
            raw = default if raw is None or raw == "" else raw
            try:
                value = float(str(raw))
            except (TypeError, ValueError):
                value = -1
            if value <= 0:
                raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. "
                                         f"{attr} attribute must be a positive number.")
            return value

        memory = number("MEMORY", None)
        cpu = number("CPU", None)
        vcpu_raw = _first(tmpl, "VCPU")
        vcpu = int(number("VCPU", "1")) if vcpu_raw not in (None, "") else None

        image_id = ""
        disk = _first(tmpl, "DISK")
        if isinstance(disk, dict):
            image = None
            if disk.get("IMAGE_ID", "") != "":
                image = self._find_image(image_id=str(disk["IMAGE_ID"]))
                missing = f"[{method}] Error getting image [{disk['IMAGE_ID']}]."
            elif disk.get("IMAGE"):
                image = self._find_image(name=disk["IMAGE"])
                missing = f"[{method}] Error getting image named {disk['IMAGE']}."
            else:
                missing = ""
            if missing and image is None:
                raise OneError(ALLOCATE, missing)
            image_id = image.id if image is not None else ""
        nic = _first(tmpl, "NIC")
        if isinstance(nic, dict):
            net = nic.get("NETWORK_ID", nic.get("NETWORK"))
            if net not in (None, "", str(NETWORK_ID), NETWORK_NAME):
                raise OneError(ALLOCATE, f"[{method}] Error getting virtual network [{net}].")

        vm_id = self.world.next_int_id()
        name = name or f"{default_name}-{vm_id}"
        context_raw = _first(tmpl, "CONTEXT")
        context: dict[str, str] = {}
        if isinstance(context_raw, dict):
            variables = {k: v for k, v in tmpl if isinstance(v, str)}
            variables.update({"NAME": name, "VMID": vm_id, "UID": str(self.uid), "UNAME": self.username,
                              "GID": str(self.gid), "GNAME": self.gname})
            context = {k: _substitute(v, variables, vm_id) for k, v in context_raw.items()}
        user_data = None
        if context.get("USER_DATA"):
            user_data = context["USER_DATA"]
            if context.get("USERDATA_ENCODING", "").lower() == "base64":
                try:
                    user_data = base64.b64decode(user_data, validate=False).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    raise OneError(ALLOCATE, f"[{method}] USER_DATA is not valid base64.") from None
        ssh_keys = [line.strip() for line in context.get("SSH_PUBLIC_KEY", "").splitlines() if line.strip()]
        if context:
            context.update(_context_network(context, vm_id, None))
        user_template = {k: v for k, v in tmpl if k not in VM_TEMPLATE_ATTRS and isinstance(v, str)}

        vcpus = max(1, math.ceil(cpu))
        one = {"cpu": _num_str(cpu), "vcpu": str(vcpu if vcpu is not None else vcpus), "hold": bool(hold),
               "template_id": _first(tmpl, "TEMPLATE_ID"), "uuid": _uuid_for(self.world.name, vm_id)}
        one["host"] = self._pick_host()
        try:
            vm = self.world.create_vm(
                name=name, vcpus=vcpus, ram_mib=int(memory), image_id=image_id,
                vm_id=vm_id, metadata=user_template, context=context, user_data=user_data,
                ssh_keys=ssh_keys, extra={"one": one})
        except QuotaError as q:
            what = {"instances": "VMS", "cores": "CPU", "ram": "MEMORY"}.get(q.resource, q.resource.upper())
            raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : user [{self.uid}] limit of {q.limit} "
                                          f"reached for {what} quota in VM.") from None
        if vm.context:      # the address is known once the runtime's on_create hook ran
            vm.context.update(_context_network(vm.context, vm.id, vm.address or "127.0.0.1"))
        return int(vm.id)

    def _get_vm(self, method: str, vm_id: Any, what: str = "virtual machine") -> SVM:
        vm = self.world.get_vm(str(vm_id)) if isinstance(vm_id, int) else None
        if vm is None:
            raise OneError(NO_EXISTS, f"[{method}] Error getting {what} [{vm_id}].",
                           vm_id if isinstance(vm_id, int) else -1)
        return vm

    def _vm_info(self, method: str, vm_id: int, decrypt: bool = False) -> str:
        vm = self._get_vm(method, vm_id)
        return self._full_vm_xml(vm, time.time())

    def _select_vms(self, flag: int, start: int, end: int, state: int, query: str) -> list[SVM]:
        if not self._check_filter(flag):
            return []
        now = time.time()
        vms = sorted(self._vms(), key=lambda v: int(v.id))
        if state >= 0:
            vms = [v for v in vms if self.vm_state(v, now)[0] == state]
        if query:
            key, _, value = query.partition("=")
            key = key.strip().upper().rsplit(".", 1)[-1].rsplit("/", 1)[-1]
            vms = [v for v in vms if (v.name if key == "NAME" else v.metadata.get(key)) == value.strip()]
        return self._page(vms, start, end, key=lambda v: int(v.id))

    def _vmpool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1, state: int = -1,
                     query: str = "") -> str:
        now = time.time()
        return "<VM_POOL>" + "".join(self._short_vm_xml(v, now)
                                     for v in self._select_vms(flag, start, end, state, query)) + "</VM_POOL>"

    def _vmpool_infoextended(self, method: str, flag: int = -2, start: int = -1, end: int = -1, state: int = -1,
                             query: str = "") -> str:
        now = time.time()
        return "<VM_POOL>" + "".join(self._full_vm_xml(v, now)
                                     for v in self._select_vms(flag, start, end, state, query)) + "</VM_POOL>"

    def _vm_action(self, method: str, action: str, vm_id: int) -> int:
        vm = self._get_vm(method, vm_id)
        with self.world.lock:
            state, lcm = self.vm_state(vm)
            one = self._one(vm)

            def refuse() -> OneError:
                return OneError(ACTION, f'[{method}] Error performing action "{action}": This action is not '
                                        f"available for state {self._state_str(state, lcm)}", vm_id)

            running = state == S_ACTIVE and lcm == L_RUNNING
            if action in ("terminate", "terminate-hard"):
                if action == "terminate" and state in (S_ACTIVE,) and lcm != L_RUNNING:
                    raise refuse()
            elif action in ("poweroff", "poweroff-hard", "suspend", "stop", "undeploy", "undeploy-hard"):
                if not running:
                    raise refuse()
                one["off"] = {"poweroff": S_POWEROFF, "poweroff-hard": S_POWEROFF, "suspend": S_SUSPENDED,
                              "stop": S_STOPPED}.get(action, S_UNDEPLOYED)
                vm.stopped = True
            elif action == "resume":
                if state not in (S_POWEROFF, S_SUSPENDED, S_STOPPED, S_UNDEPLOYED):
                    raise refuse()
                one["resumed_from"] = one.pop("off")
                one["resumed_at"] = time.time()
                vm.stopped = False
            elif action in ("reboot", "reboot-hard"):
                if not running:
                    raise refuse()
            elif action == "hold":
                if state != S_PENDING:
                    raise refuse()
                one["hold"] = True
            elif action == "release":
                if state != S_HOLD:
                    raise refuse()
                one["hold"] = False
                one["released_at"] = time.time()
            elif action == "resched":
                if not running:
                    raise refuse()
            else:
                raise OneError(ACTION, f'[{method}] Error performing action "{action}": Invalid action', vm_id)
        if action in ("terminate", "terminate-hard"):
            # outside the lock: the runtime's on_delete hook tears down the VM's SSH endpoint
            self.world.delete_vm(vm.id)
        return vm_id

    def _vm_update(self, method: str, vm_id: int, template: str, update_type: int = 0) -> int:
        vm = self._get_vm(method, vm_id)
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Error parsing template: {e}", vm_id) from None
        attrs = {k: v for k, v in tmpl if isinstance(v, str)}
        with self.world.lock:
            vm.metadata = {**vm.metadata, **attrs} if update_type == 1 else attrs
        return vm_id

    def _user_info(self, method: str, user_id: int = -1, decrypt: bool = False) -> str:
        if user_id not in (-1, self.uid):
            raise OneError(NO_EXISTS, f"[{method}] Error getting user [{user_id}].", user_id)
        with self.world.lock:
            n, cores, ram = self.world.usage()
            vms = self.world.live_vms()
        q = self.world.quota
        now = time.time()
        running = [v for v in vms if self.vm_state(v, now)[0] == S_ACTIVE]

        # The world's -1 means "no limit": the user then has the default (-1), and the
        # system default is unlimited (-2), as on a fresh oned.
        def lim(value: int) -> str:
            return "-1" if value < 0 else str(value)

        vm_quota = ""
        if n or q.instances >= 0 or q.cores >= 0 or q.ram_mib >= 0:
            fields = [("CPU", lim(q.cores)), ("CPU_USED", str(cores)), ("MEMORY", lim(q.ram_mib)),
                      ("MEMORY_USED", str(ram)), ("PCI_DEV", "-1"), ("PCI_DEV_USED", "0"), ("PCI_NIC", "-1"),
                      ("PCI_NIC_USED", "0"), ("RUNNING_CPU", "-1"),
                      ("RUNNING_CPU_USED", str(sum(v.vcpus for v in running))), ("RUNNING_MEMORY", "-1"),
                      ("RUNNING_MEMORY_USED", str(sum(v.ram_mib for v in running))),
                      ("RUNNING_PCI_DEV", "-1"), ("RUNNING_PCI_DEV_USED", "0"), ("RUNNING_PCI_NIC", "-1"),
                      ("RUNNING_PCI_NIC_USED", "0"), ("RUNNING_VMS", "-1"), ("RUNNING_VMS_USED", str(len(running))),
                      ("SYSTEM_DISK_SIZE", "-1"), ("SYSTEM_DISK_SIZE_USED", "0"), ("VMS", lim(q.instances)),
                      ("VMS_USED", str(n))]
            vm_quota = "<VM>" + "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in fields) + "</VM>"
        defaults = "<VM>" + "".join(f"<{k}>{_cd(v)}</{k}>" for k, v in (
            ("CPU", "-2"), ("CPU_USED", "0"), ("MEMORY", "-2"), ("MEMORY_USED", "0"), ("PCI_DEV", "-2"),
            ("PCI_DEV_USED", "0"), ("PCI_NIC", "-2"), ("PCI_NIC_USED", "0"), ("RUNNING_CPU", "-2"),
            ("RUNNING_CPU_USED", "0"), ("RUNNING_MEMORY", "-2"), ("RUNNING_MEMORY_USED", "0"),
            ("RUNNING_PCI_DEV", "-2"), ("RUNNING_PCI_DEV_USED", "0"), ("RUNNING_PCI_NIC", "-2"),
            ("RUNNING_PCI_NIC_USED", "0"), ("RUNNING_VMS", "-2"), ("RUNNING_VMS_USED", "0"),
            ("SYSTEM_DISK_SIZE", "-2"), ("SYSTEM_DISK_SIZE_USED", "0"), ("VMS", "-2"), ("VMS_USED", "0"))) + "</VM>"
        # oned shows the password's hash, never the password
        pw_hash = hashlib.sha256(self._password.encode()).hexdigest()
        return (f"<USER><ID>{self.uid}</ID><GID>{self.gid}</GID><GROUPS><ID>{self.gid}</ID></GROUPS>"
                f"<GNAME>{self.gname}</GNAME><NAME>{_x(self.username)}</NAME><PASSWORD>{pw_hash}</PASSWORD>"
                f"<AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED>"
                f"<TEMPLATE><TOKEN_PASSWORD>{_cd(hashlib.sha1(pw_hash.encode()).hexdigest())}</TOKEN_PASSWORD></TEMPLATE>"
                f"<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{vm_quota}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
                f"<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
                f"<VM_QUOTA>{defaults}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></DEFAULT_USER_QUOTAS></USER>")

    def _user_quota(self, method: str, user_id: int, template: str) -> int:
        """one.user.quota: set VM quota limits (VM = [ VMS = n, CPU = n, MEMORY = n ]).
        -1 (default) and -2 (unlimited) both lift the limit here."""
        if user_id != self.uid:
            raise OneError(NO_EXISTS, f"[{method}] Error getting user [{user_id}].", user_id)
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Error parsing quota template: {e}") from None
        vm = _first(tmpl, "VM")
        if not isinstance(vm, dict):
            return user_id

        def value(raw: str) -> int:
            try:
                v = int(float(raw))
            except ValueError:
                raise OneError(ACTION, f"[{method}] Quota {raw!r} is not a number") from None
            return -1 if v < 0 else v

        with self.world.lock:
            q = self.world.quota
            if "VMS" in vm:
                q.instances = value(vm["VMS"])
            if "CPU" in vm:
                q.cores = value(vm["CPU"])
            if "MEMORY" in vm:
                q.ram_mib = value(vm["MEMORY"])
        return user_id

    def _hostpool_info(self, method: str) -> str:
        now = time.time()
        usage = self._host_usage(now)
        hosts_vms: dict[int, list[int]] = {h[0]: [] for h in self._hosts()}
        for vm in self._vms():
            host = self._one(vm).get("host")
            if host in hosts_vms and self._holds_host(self.vm_state(vm, now)[0]):
                hosts_vms[host].append(int(vm.id))
        parts = []
        for hid, name, cpus, ram in self._hosts():
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

    def _imagepool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        images = sorted(self.world.images.values(), key=lambda i: int(i.id) if i.id.isdigit() else 0)
        if not self._check_filter(flag):
            images = []
        images = self._page(images, start, end, key=lambda i: int(i.id) if i.id.isdigit() else 0)
        now = time.time()
        running: dict[str, list[int]] = {}
        for vm in self._vms():
            if self.vm_state(vm, now)[0] not in (S_PENDING, S_HOLD):
                running.setdefault(vm.image_id, []).append(int(vm.id))
        parts = []
        for img in images:
            vms = sorted(running.get(img.id, []))
            size_mb = max(img.size // (1024 * 1024), 1)
            parts.append(
                f"<IMAGE><ID>{img.id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>"
                f"<NAME>{_x(img.name)}</NAME>{_PERMS_SHARED}<TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE>"
                f"<PERSISTENT>0</PERSISTENT><REGTIME>{self._started_at}</REGTIME><MODTIME>{self._started_at}</MODTIME>"
                f"<SOURCE><![CDATA[/var/lib/one//datastores/1/{img.checksum}]]></SOURCE>"
                f"<PATH><![CDATA[]]></PATH><FORMAT><![CDATA[qcow2]]></FORMAT><FS><![CDATA[]]></FS>"
                f"<SIZE>{size_mb}</SIZE><STATE>{2 if vms else 1}</STATE><PREV_STATE>1</PREV_STATE>"
                f"<RUNNING_VMS>{len(vms)}</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID>"
                f"<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>{DATASTORE_ID}</DATASTORE_ID>"
                f"<DATASTORE>default</DATASTORE><VMS>{''.join(f'<ID>{i}</ID>' for i in vms)}</VMS>"
                f"<CLONES></CLONES><APP_CLONES></APP_CLONES>"
                f"<TEMPLATE><DEV_PREFIX><![CDATA[vd]]></DEV_PREFIX><MD5><![CDATA[{img.checksum}]]></MD5></TEMPLATE>"
                f"<SNAPSHOTS><ALLOW_ORPHANS><![CDATA[FORMAT]]></ALLOW_ORPHANS><CURRENT_BASE><![CDATA[-1]]>"
                f"</CURRENT_BASE><NEXT_SNAPSHOT><![CDATA[0]]></NEXT_SNAPSHOT></SNAPSHOTS>"
                f"<BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>")
        return "<IMAGE_POOL>" + "".join(parts) + "</IMAGE_POOL>"

    def _vnpool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        leases = len(self._vms())
        vnets = [] if not self._check_filter(flag) else [NETWORK_ID]
        vnets = self._page(vnets, start, end, key=lambda i: i)
        body = "".join(
            f"<VNET><ID>{NETWORK_ID}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>"
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


_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?:\[([A-Za-z0-9_]+)[^\]]*\])?")


def _substitute(value: str, variables: dict[str, str], vm_id: str) -> str:
    """oned's CONTEXT variables: $NAME, $VMID, $UNAME, a template attribute ($CPU...),
    $NIC[IP] / $NETWORK[IP, ...]; $USER[...] comes from the owner's (empty) template and an
    unknown variable becomes empty."""
    if "$" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        name, attr = m.group(1).upper(), (m.group(2) or "").upper()
        if attr:
            if name in ("NIC", "NETWORK"):
                return {"IP": "127.0.0.1", "MAC": _mac(int(vm_id)), "NETWORK": NETWORK_NAME,
                        "NETWORK_ID": str(NETWORK_ID)}.get(attr, "")
            return ""
        return variables.get(name, "")

    return _VAR_RE.sub(one, value)


def _context_network(context: dict[str, str], vm_id: str, address: str | None) -> dict[str, str]:
    """What oned adds to CONTEXT: the context disk, and per-NIC ETH0_* when NETWORK=YES."""
    extra = {"DISK_ID": "1", "TARGET": "hda"}
    if str(context.get("NETWORK", "")).upper() == "YES":
        extra.update({"ETH0_DNS": "", "ETH0_EXTERNAL": "", "ETH0_GATEWAY": "", "ETH0_MAC": _mac(int(vm_id)),
                      "ETH0_MASK": "255.0.0.0", "ETH0_NETWORK": "127.0.0.0"})
        if address is not None:   # None: before the runtime's on_create hook hands one out
            extra["ETH0_IP"] = address
    return extra


_XMLRPC_TYPES = {"int": (int,), "bool": (bool, int), "str": (str,)}


def _check_arguments(fn: Callable[..., Any], method: str, args: tuple[Any, ...]) -> None:
    """xmlrpc-c checks each method's signature: wrong count or type is a fault, not a reply."""
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(method, *args)
    except TypeError:
        raise xmlrpc.client.Fault(-501, "Parameter count mismatch") from None
    for name, value in list(bound.arguments.items())[1:]:
        allowed = _XMLRPC_TYPES.get(str(sig.parameters[name].annotation))
        if allowed and (not isinstance(value, allowed) or (allowed == (int,) and isinstance(value, bool))):
            raise xmlrpc.client.Fault(-501, f"Type mismatch in parameter {name}")


def _num_str(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _uuid_for(site: str, vm_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"skyctl-sandbox/{site}/vm/{vm_id}"))
