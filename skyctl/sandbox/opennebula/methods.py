"""The `one.*` methods the sandbox answers, as oned 7.x does: argument handling, pool filters
and pages, allocation (quota, CONTEXT, OneGate, name lookups, hosts), VM actions per state,
user and group quotas. Each one returns a body from `views` or raises `OneError` with oned's
code and message.

As a production site runs it: the caller is an ordinary user in group `users`; the templates,
images and the network belong to oneadmin and are usable by that group; a name is looked up
among the caller's own objects unless *_UNAME / *_UID says whose; no OneGate endpoint unless
the spec sets one."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from skyctl.sandbox.opennebula.images import ImageMethods
from skyctl.sandbox.opennebula.template import (
    VM_TEMPLATE_ATTRS, Template, first, merge_templates, parse_template, substitute,
)
from skyctl.sandbox.opennebula.views import (
    L_BOOT_FAILURE, L_PROLOG_FAILURE, L_RUNNING, L_UNKNOWN, NETWORK_ID, NETWORK_NAME, OBJECT_UID, OBJECT_UNAME,
    ONE_VERSION, S_ACTIVE, S_HOLD, S_PENDING, S_POWEROFF, S_STOPPED, S_SUSPENDED, S_UNDEPLOYED, SHARED_GID,
    SHARED_GNAME, TERMINABLE_FAILURES, Owner, Views, boot_phases, context_network, find_image, host_usage, hosts,
    live_vms, nic_variables, one_extra, state_name, vm_state,
)
from skyctl.sandbox.opennebula.xmlrpc import (
    ACTION, ALLOCATE, AUTHORIZATION, INTERNAL, NO_EXISTS, XML_RPC_API, OneError, XmlRpcFront,
)
from skyctl.sandbox.world import QuotaError, SiteWorld, SVM


# The ordinary user skyctl logs in as (oned numbers users from 2 after oneadmin and serveradmin).
SANDBOX_USER = "skyuser"
SANDBOX_UID = 2


class OpenNebulaFront(ImageMethods, XmlRpcFront):
    """XML-RPC `one.*` front-end for one `SiteWorld`, as one user (an ordinary one by default)."""

    def __init__(self, world: SiteWorld, *, host: str = "127.0.0.1", port: int = 0,
                 username: str = SANDBOX_USER, password: str = "sandbox", tls: Any = None) -> None:
        self.uid = 0 if username == OBJECT_UNAME else SANDBOX_UID
        self.gid, self.gname = (0, "oneadmin") if username == OBJECT_UNAME else (SHARED_GID, SHARED_GNAME)
        super().__init__(world, host=host, port=port, username=username, password=password, tls=tls)
        self.views = Views(world, Owner(self.uid, self.gid, self.gname, username), int(time.time()))

    def method_table(self) -> dict[str, Callable[..., Any]]:
        return {
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
            "one.vm.recover": self._vm_recover,
            "one.user.login": self._user_login,
            "one.user.info": self._user_info,
            "one.user.quota": self._user_quota,
            "one.group.info": self._group_info,
            "one.hostpool.info": self._hostpool_info,
            "one.imagepool.info": self._imagepool_info,
            "one.vnpool.info": self._vnpool_info,
            **self.image_methods(),
        }

    @staticmethod
    def vm_state(vm: SVM, now: float | None = None) -> tuple[int, int]:
        return vm_state(vm, now)

    # ------------------------------------------------------------ helpers
    def _pick_host(self) -> int:
        now = time.time()
        usage = host_usage(self.world, now)
        return max(hosts(self.world), key=lambda h: (h[2] - usage[h[0]][0], -h[0]))[0]

    def _templates(self) -> list[tuple[int, str, Template]]:
        """One VM template per image, named after it, as a site's marketplace import leaves them."""
        out = []
        for image in sorted(self.world.images.values(), key=lambda i: int(i.id) if i.id.isdigit() else 0):
            tid = int(image.id) if image.id.isdigit() else 0
            # The site's own CONTEXT (init scripts, the owner's key, a DNS variable) and NIC,
            # and CPU=0.5: half a physical core per virtual one, the site's overcommit.
            tmpl: Template = [
                ("CONTEXT", {"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]",
                             "INIT_SCRIPTS": "site-init.sh", "DNS": "127.0.0.53", "SET_HOSTNAME": "$NAME"}),
                ("CPU", "0.5"),
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
        """Pool filter for the caller's own objects (VMs): -4 primary group, -3 mine, -2 all,
        -1 mine+my groups, >= 0 a user id."""
        if flag < -4:
            raise OneError(XML_RPC_API, "Incorrect filter_flag.")
        return flag < 0 or flag == self.uid

    def _shared_visible(self, flag: int) -> bool:
        """The same filter for oneadmin's objects in group `users`: not "mine" unless the
        caller is oneadmin; in "my groups" for a member of `users`; all when usable."""
        if flag < -4:
            raise OneError(XML_RPC_API, "Incorrect filter_flag.")
        if flag == -3:
            return self.uid == OBJECT_UID
        if flag in (-4, -1):
            return self.uid == OBJECT_UID or self.gid == SHARED_GID
        return flag == -2 or flag == OBJECT_UID

    def _owner_uid(self, method: str, vector: dict[str, str], kind: str, where: str) -> int:
        """Whose objects a name is looked up among: *_UID, else *_UNAME, else the caller's own
        (src/vnm/VirtualNetworkPool.cc, src/image/ImageManager.cc)."""
        uid = vector.get(f"{kind}_UID", "")
        if uid != "":
            try:
                return int(uid)
            except ValueError:
                raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. "
                                         f"Wrong {kind}_UID in {where}.") from None
        uname = vector.get(f"{kind}_UNAME", "")
        if uname:
            users = {OBJECT_UNAME: OBJECT_UID, self.username: self.uid}
            if uname not in users:
                raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. "
                                         f"User set in {kind}_UNAME does not exist")
            return users[uname]
        return self.uid

    def _get_vm(self, method: str, vm_id: Any, what: str = "virtual machine") -> SVM:
        vm = self.world.get_vm(str(vm_id)) if isinstance(vm_id, int) else None
        if vm is None:
            raise OneError(NO_EXISTS, f"[{method}] Error getting {what} [{vm_id}].",
                           vm_id if isinstance(vm_id, int) else -1)
        return vm

    # ------------------------------------------------------------ system, templates
    def _system_version(self, method: str) -> str:
        return ONE_VERSION

    def _templatepool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        items = self._templates() if self._shared_visible(flag) else []
        items = self._page(items, start, end, key=lambda t: t[0])
        return self.views.template_pool(items)

    def _template_info(self, method: str, tid: int, extended: bool = False, decrypt: bool = False) -> str:
        for t in self._templates():
            if t[0] == tid:
                return self.views.template(*t)
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
            # oned answers a user template it cannot parse with INTERNAL (0x2000)
            raise OneError(INTERNAL, f"[{method}] Parse error: {e}") from None
        merged = merge_templates(base, [kv for kv in extra_tmpl if kv[0] != "NAME"])
        merged.append(("TEMPLATE_ID", str(tid)))
        return self._create(method, merged, name, hold, default_name=tname)

    # ------------------------------------------------------------ VMs
    def _vm_allocate(self, method: str, template: str, hold: bool = False) -> int:
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Parse error: {e}") from None
        name = first(tmpl, "NAME") or ""
        return self._create(method, tmpl, str(name), hold, default_name="one")

    def _create(self, method: str, tmpl: Template, name: str, hold: bool, default_name: str) -> int:
        def number(attr: str, default: str | None) -> float:
            raw = first(tmpl, attr)
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
        vcpu_raw = first(tmpl, "VCPU")
        vcpu = int(number("VCPU", "1")) if vcpu_raw not in (None, "") else None

        image_id = ""
        disk = first(tmpl, "DISK")
        if isinstance(disk, dict):
            image = None
            if disk.get("IMAGE_ID", "") != "":
                image = find_image(self.world, image_id=str(disk["IMAGE_ID"]))
                missing = f"[{method}] Error getting image [{disk['IMAGE_ID']}]."
            elif disk.get("IMAGE"):
                owner = self._owner_uid(method, disk, "IMAGE", "DISK")
                image = find_image(self.world, name=disk["IMAGE"]) if owner == OBJECT_UID else None
                missing = (f"[{method}] Error allocating a new virtual machine. User {owner} does not own an image "
                           f"with name: {disk['IMAGE']} . Set IMAGE_UNAME or IMAGE_UID of owner in DISK.")
            else:
                missing = ""
            if missing and image is None:
                raise OneError(ALLOCATE, missing)
            image_id = image.id if image is not None else ""
        nic = first(tmpl, "NIC")
        if isinstance(nic, dict):
            if nic.get("NETWORK_ID", "") != "":
                if nic["NETWORK_ID"] != str(NETWORK_ID):
                    raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. "
                                             f"Virtual network {nic['NETWORK_ID']} does not exist.")
            elif nic.get("NETWORK"):
                owner = self._owner_uid(method, nic, "NETWORK", "NIC")
                if owner != OBJECT_UID or nic["NETWORK"] != NETWORK_NAME:
                    raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. User {owner} does "
                                             f"not own a network with name: {nic['NETWORK']} . Set NETWORK_UNAME or "
                                             "NETWORK_UID of owner in NIC.")

        vm_id = self.world.next_int_id()
        name = name or f"{default_name}-{vm_id}"
        context_raw = first(tmpl, "CONTEXT")
        context: dict[str, str] = {}
        onegate = self.world.settings.get("onegate_endpoint")
        if isinstance(context_raw, dict) and str(context_raw.get("TOKEN", "")).upper() == "YES":
            if not onegate:
                # src/vm/VirtualMachineContext.cc, generate_token_context
                raise OneError(ALLOCATE, f"[{method}] Error allocating a new virtual machine. "
                                         "TOKEN set, but onegate endpoint was not defined in oned.conf.")
            context_raw = {**context_raw, "ONEGATE_ENDPOINT": str(onegate), "VMID": vm_id}
        if isinstance(context_raw, dict):
            variables = {k: v for k, v in tmpl if isinstance(v, str)}
            variables.update({"NAME": name, "VMID": vm_id, "UID": str(self.uid), "UNAME": self.username,
                              "GID": str(self.gid), "GNAME": self.gname})
            nic_vars = nic_variables(vm_id)
            context = {k: substitute(v, variables, nic_vars) for k, v in context_raw.items()}
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
            context.update(context_network(context, vm_id, None))
        user_template = {k: v for k, v in tmpl if k not in VM_TEMPLATE_ATTRS and isinstance(v, str)}

        vcpus = max(1, math.ceil(cpu))
        one = {"cpu": _num_str(cpu), "vcpu": str(vcpu if vcpu is not None else vcpus), "hold": bool(hold),
               "template_id": first(tmpl, "TEMPLATE_ID"), "uuid": _uuid_for(self.world.name, vm_id)}
        one["host"] = self._pick_host()
        settings = self.world.settings
        boot_delay = self.world.faults.boot_delay
        if "prolog_seconds" in settings or "boot_seconds" in settings:
            one["phases"] = boot_phases(boot_delay, settings)
            boot_delay = sum(one["phases"])
        if self.world.chance(float(settings.get("prolog_failure_rate", 0))):
            one["failure"] = L_PROLOG_FAILURE
        elif self.world.chance(float(settings.get("boot_failure_rate", 0))):
            one["failure"] = L_BOOT_FAILURE
        try:
            vm = self.world.create_vm(
                name=name, vcpus=vcpus, ram_mib=int(memory), image_id=image_id,
                vm_id=vm_id, metadata=user_template, context=context, user_data=user_data,
                ssh_keys=ssh_keys, extra={"one": one}, quota=self.uid != OBJECT_UID,
                boot_delay=boot_delay)
        except QuotaError as q:
            what = {"instances": "VMS", "cores": "CPU", "ram": "MEMORY"}.get(q.resource, q.resource.upper())
            whose = f"group [{self.gid}]" if q.scope == "group" else f"user [{self.uid}]"
            raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : {whose} limit of {q.limit} "
                                          f"reached for {what} quota in VM.") from None
        if vm.context:      # the address is known once the runtime's on_create hook ran
            vm.context.update(context_network(vm.context, vm.id, vm.address or "127.0.0.1"))
        return int(vm.id)

    def _vm_info(self, method: str, vm_id: int, decrypt: bool = False) -> str:
        vm = self._get_vm(method, vm_id)
        return self.views.vm_full(vm, time.time())

    def _select_vms(self, flag: int, start: int, end: int, state: int, query: str) -> list[SVM]:
        if not self._check_filter(flag):
            return []
        now = time.time()
        vms = sorted(live_vms(self.world), key=lambda v: int(v.id))
        if state >= 0:
            vms = [v for v in vms if vm_state(v, now)[0] == state]
        if query:
            key, _, value = query.partition("=")
            key = key.strip().upper().rsplit(".", 1)[-1].rsplit("/", 1)[-1]
            vms = [v for v in vms if (v.name if key == "NAME" else v.metadata.get(key)) == value.strip()]
        return self._page(vms, start, end, key=lambda v: int(v.id))

    def _vmpool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1, state: int = -1,
                     query: str = "") -> str:
        now = time.time()
        return self.views.vm_pool(self._select_vms(flag, start, end, state, query), now, extended=False)

    def _vmpool_infoextended(self, method: str, flag: int = -2, start: int = -1, end: int = -1, state: int = -1,
                             query: str = "") -> str:
        now = time.time()
        return self.views.vm_pool(self._select_vms(flag, start, end, state, query), now, extended=True)

    def _vm_action(self, method: str, action: str, vm_id: int) -> int:
        vm = self._get_vm(method, vm_id)
        with self.world.lock:
            state, lcm = vm_state(vm)
            one = one_extra(vm)

            def refuse() -> OneError:
                return OneError(ACTION, f'[{method}] Error performing action "{action}": This action is not '
                                        f"available for state {state_name(state, lcm)}", vm_id)

            running = state == S_ACTIVE and lcm == L_RUNNING
            if action in ("terminate", "terminate-hard"):
                # DispatchManager::terminate (src/dm/DispatchManagerActions.cc): an ACTIVE VM
                # only when RUNNING, UNKNOWN or failed; in PROLOG, BOOT, HOTPLUG, EPILOG... no.
                if state == S_ACTIVE and lcm not in (L_RUNNING, L_UNKNOWN) and lcm not in TERMINABLE_FAILURES:
                    raise OneError(ACTION, f'[{method}] Error performing action "{action}": Could not terminate '
                                           f"VM {vm_id}, wrong state ACTIVE.",
                                   vm_id)
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
                # oned keeps the VM ACTIVE/RUNNING through a reboot; its guest is down a moment.
                vm.rebooting_until = time.time() + self.world.faults.boot_delay
                one["reboots"] = int(one.get("reboots", 0)) + 1
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

    def _vm_recover(self, method: str, vm_id: int, operation: int) -> int:
        """one.vm.recover: 0 failure, 1 success, 2 retry, 3 delete, 4 delete-recreate, 5
        delete-db. `recover` is one of oned.conf's VM_ADMIN_OPERATIONS: an ordinary user, who
        has USE and MANAGE on their VMs only, is refused unless the site moved it to the
        manage operations (spec `user_recover: true`)."""
        vm = self._get_vm(method, vm_id)
        if self.uid != OBJECT_UID and not self.world.settings.get("user_recover"):
            raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : Not authorized to perform ADMIN VM "
                                          f"[{vm_id}].", vm_id)
        if operation not in range(6):
            raise OneError(ACTION, f"[{method}] Wrong recovery operation code", vm_id)
        if operation in (3, 5):
            self.world.delete_vm(vm.id)
            return vm_id
        with self.world.lock:
            state, lcm = vm_state(vm)
            if state != S_ACTIVE:
                raise OneError(ACTION, f'[{method}] Error performing action "recover": This action is not '
                                       f"available for state {state_name(state, lcm)}", vm_id)
            one = one_extra(vm)
            one.pop("failure", None)
            one["phases"] = (0.0, 0.0, 0.0)    # 1 success / 2 retry: on to RUNNING
        return vm_id

    # ------------------------------------------------------------ the user
    def _user_login(self, method: str, username: str, token: str = "", valid: int = 36000,
                    egid: int = -1) -> str:
        """one.user.login: a login token for `user:token` sessions (`oneuser token-create`);
        valid 0 drops the token given (all of them without one), -1 never expires (expiry
        is not modelled here)."""
        if username != self.username:
            raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : Not authorized to perform MANAGE USER "
                                          f"[{username}].")
        if valid == 0:
            if token:
                self.login_tokens.discard(token)
            else:
                self.login_tokens.clear()
            return token
        token = token or secrets.token_hex(20)
        self.login_tokens.add(token)
        return token

    def _user_info(self, method: str, user_id: int = -1, decrypt: bool = False) -> str:
        if user_id not in (-1, self.uid):
            raise OneError(NO_EXISTS, f"[{method}] Error getting user [{user_id}].", user_id)
        return self.views.user(self._password)

    def _user_quota(self, method: str, user_id: int, template: str) -> int:
        """one.user.quota: set VM quota limits (VM = [ VMS = n, CPU = n, MEMORY = n ]).
        -1 (default) and -2 (unlimited) both lift the limit here."""
        if user_id not in (self.uid, SANDBOX_UID):
            raise OneError(NO_EXISTS, f"[{method}] Error getting user [{user_id}].", user_id)
        if self.uid != OBJECT_UID:
            # UserSetQuota needs ADMIN on the user, which only oneadmin's group has: an ordinary
            # user may not raise their own limits (src/rm/RequestManagerUser.cc; the text is
            # Request::authorization_error around AuthRequest's message, src/rm/Request.cc).
            raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : Not authorized to perform ADMIN USER "
                                          f"[{user_id}].", user_id)
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(XML_RPC_API, f"[{method}] Error parsing quota template: {e}") from None
        vm = first(tmpl, "VM")
        if not isinstance(vm, dict) or user_id != SANDBOX_UID:   # oneadmin itself has no quota here
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

    def _group_info(self, method: str, group_id: int, decrypt: bool = False) -> str:
        groups = {0: ("oneadmin", [OBJECT_UID]), SHARED_GID: (SHARED_GNAME, [SANDBOX_UID])}
        if group_id == -1:
            group_id = self.gid
        if group_id not in groups or (self.uid != OBJECT_UID and group_id != self.gid):
            # an ordinary user may read only its own groups
            if group_id in groups:
                raise OneError(AUTHORIZATION, f"[{method}] User [{self.uid}] : Not authorized to perform USE "
                                              f"GROUP [{group_id}].", group_id)
            raise OneError(NO_EXISTS, f"[{method}] Error getting group [{group_id}].", group_id)
        name, members = groups[group_id]
        return self.views.group(group_id, name, members)

    # ------------------------------------------------------------ hosts, images, networks
    def _hostpool_info(self, method: str) -> str:
        # HostPoolInfo dumps the pool through the ACL filter (src/rm/RequestManagerPoolInfoFilter.cc):
        # the stock ACLs give group `users` no right on hosts, so an ordinary user gets an
        # empty pool, not an error.
        if self.uid != OBJECT_UID:
            return "<HOST_POOL></HOST_POOL>"
        return self.views.host_pool()

    def _imagepool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        images = sorted(self.world.images.values(), key=lambda i: int(i.id) if i.id.isdigit() else 0)
        if not self._shared_visible(flag):
            images = [i for i in images if i.created > 0]   # the user's own images stay visible
        images = self._page(images, start, end, key=lambda i: int(i.id) if i.id.isdigit() else 0)
        return self.views.image_pool(images)

    def _vnpool_info(self, method: str, flag: int = -2, start: int = -1, end: int = -1) -> str:
        vnets = [] if not self._shared_visible(flag) else [NETWORK_ID]
        vnets = self._page(vnets, start, end, key=lambda i: i)
        return self.views.vnet_pool(vnets)


def _num_str(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _uuid_for(site: str, vm_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"skyctl-sandbox/{site}/vm/{vm_id}"))
