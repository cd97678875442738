"""The sandbox's cloud state, shared by its protocol front-ends.

A `SiteWorld` is one cloud: quota, hosts, flavors, images, VMs, fault knobs. The OpenStack
(HTTP) and OpenNebula (XML-RPC) front-ends translate their protocol to calls on it and its
`QuotaError`/`NoHostError` into the exact wire errors the real services send. Nothing here
knows about either protocol.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class QuotaError(Exception):
    """Quota would be exceeded. Carries what real services put in their message."""

    def __init__(self, resource: str, requested: int, used: int, limit: int, scope: str = "user") -> None:
        super().__init__(resource)
        self.resource = resource      # "instances" | "cores" | "ram"
        self.requested = requested
        self.used = used
        self.limit = limit
        self.scope = scope            # "user" | "group": whose quota ran out


class NoHostError(Exception):
    """Quota allows it but no host has room (Nova: ERROR + 'No valid host' fault)."""


@dataclass
class Faults:
    latency_ms: float = 0.0       # added to every request
    error_rate: float = 0.0       # share of requests answered with a server error
    down: bool = False            # refuse connections
    boot_delay: float = 0.2       # seconds from create to RUNNING/ACTIVE
    # Accept this many more creates, then hold further create requests open until released:
    # a test's exact moment "some VMs exist, the rest are on the wire" (None: no hold).
    hold_creates_after: int | None = None
    # VMs created from now on go to ERROR with this fault message (a build that failed on
    # the host: Nova's "Exceeded maximum number of retries...", a port that would not bind).
    build_fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "error_rate": self.error_rate, "down": self.down,
                "boot_delay": self.boot_delay, "hold_creates_after": self.hold_creates_after,
                "build_fault": self.build_fault}


@dataclass
class Quota:
    instances: int = -1   # -1 unlimited
    cores: int = -1
    ram_mib: int = -1
    floating_ips: int = 50   # Neutron's default floatingip quota
    key_pairs: int = 100     # Nova's default; Nova counts them per user, the sandbox has one user
    volumes: int = 10        # Cinder's default volumes quota
    gigabytes: int = 1000    # and gigabytes
    ports: int = 500         # Neutron's default port quota


@dataclass(frozen=True)
class SFlavor:
    id: str
    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int = 10
    extra_specs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SImage:
    """An image. A seeded one's bytes are its name (`tampered`: a different copy, as a site
    holding a corrupted or substituted image has); an uploaded one's live in `path`, hashed
    as they arrived. `status` follows Glance (queued -> saving -> active) or OpenNebula
    (LOCKED -> READY)."""

    id: str
    name: str
    size: int = 1024
    tampered: bool = False
    path: str | None = None            # uploaded bytes on disk
    md5: str | None = None             # of the uploaded bytes
    sha512_value: str | None = None
    status: str = "active"
    disk_format: str | None = "qcow2"
    container_format: str | None = "bare"
    datastore: int = 1
    created: float = 0.0
    url: str | None = None             # OpenNebula PATH it was fetched from
    error: str | None = None           # why the fetch failed (OpenNebula ERROR state)
    min_disk: int = 0             # GiB (Glance's min_disk)
    min_ram: int = 0              # MiB (Glance's min_ram)

    @property
    def content(self) -> bytes:
        """A seeded image's bytes."""
        return self.name.encode() + (b" (tampered copy)" if self.tampered else b"")

    @property
    def checksum(self) -> str | None:
        if self.path is not None or self.status not in ("active", "ready"):
            return self.md5
        return hashlib.md5(self.content, usedforsecurity=False).hexdigest()

    @property
    def sha512(self) -> str | None:
        if self.path is not None or self.status not in ("active", "ready"):
            return self.sha512_value
        return hashlib.sha512(self.content).hexdigest()


@dataclass
class SVM:
    id: str                       # uuid (OpenStack) or decimal string (OpenNebula)
    name: str
    vcpus: int
    ram_mib: int
    image_id: str
    flavor_id: str | None
    created: float
    boot_delay: float
    metadata: dict[str, str] = field(default_factory=dict)     # Nova metadata / ONE USER_TEMPLATE
    tags: list[str] = field(default_factory=list)
    user_data: str | None = None     # decoded text
    context: dict[str, str] = field(default_factory=dict)      # ONE CONTEXT
    key_name: str | None = None
    ssh_keys: list[str] = field(default_factory=list)          # keys the guest will accept
    address: str | None = None
    ssh_port: int | None = None
    host_key_fingerprint: str | None = None
    stopped: bool = False
    rebooting_until: float = 0.0  # a reboot in progress ends then (its guest is down until)
    hard_reboot: bool = False
    error: str | None = None      # fault message when the VM went to ERROR
    deleted: bool = False
    ready: bool = False           # context applied (READY=YES / cloud-init done)
    floating_addresses: list[str] = field(default_factory=list)   # attached floating IPs
    extra: dict[str, Any] = field(default_factory=dict)

    def booted(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.created + self.boot_delay

    def rebooting(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.rebooting_until

    def offline(self, now: float | None = None) -> bool:
        """Its guest answers no one: powered off, or in the middle of a reboot."""
        return self.stopped or self.rebooting(now)


@dataclass
class SFloatingIP:
    """A floating IP from the site's external network; attached to one VM's port or not."""

    id: str
    address: str
    project_id: str
    created: float
    updated: float
    description: str = ""
    vm_id: str | None = None      # the VM whose (only) port it is attached to
    revision: int = 1


@dataclass
class SVolume:
    """A Cinder volume; a boot volume is attached to its VM (in-use) and may go with it."""

    id: str
    name: str
    size_gib: int
    project_id: str
    created: float
    image_id: str | None = None
    description: str = ""
    vm_id: str | None = None                 # attached to this VM (device /dev/vda)
    delete_on_termination: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "in-use" if self.vm_id else "available"


class FloatingIPError(Exception):
    """A floating IP operation the world refuses; `kind` names the reason."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind              # "not_found" | "already_associated" | "exhausted"
        self.message = message


class SiteWorld:
    """One sandbox cloud. Thread-safe: every front-end request takes `lock`."""

    def __init__(self, name: str, kind: str, *, quota: Quota, flavors: list[SFlavor],
                 images: list[SImage], host_cpus: int | None = None,
                 host_ram_mib: int | None = None, seed: int | None = None) -> None:
        self.name = name
        self.kind = kind              # "openstack" | "opennebula"
        self.quota = quota
        # The quota of the user's group (OpenNebula enforces both; -1 everywhere: none).
        self.group_quota = Quota(floating_ips=-1, key_pairs=-1)
        # Front-specific settings from the spec (OpenNebula: onegate_endpoint, prolog/boot
        # seconds, failure rates); the world itself does not read them.
        self.settings: dict[str, Any] = {}
        self.flavors = {f.id: f for f in flavors}
        self.images = {i.id: i for i in images}
        self.image_dir: str | None = None   # where uploaded image bytes go (set by the server)
        # OpenNebula image imports (PATH=URL) wait on this gate while set and not open, so a
        # test can see an image LOCKED for as long as it likes.
        self.image_gate: threading.Event | None = None
        self.host_cpus = host_cpus
        self.host_ram_mib = host_ram_mib
        self.faults = Faults()
        self.vms: dict[str, SVM] = {}
        self.lock = threading.RLock()
        self._creates_released = threading.Condition(self.lock)
        self._creates_since_hold = 0
        self.creates_held = 0         # create requests waiting for --release-creates now
        self.creates_in_progress = 0  # create requests accepted and not finished (held ones too)
        self.keypairs: dict[str, str] = {}        # name -> public key (OpenStack)
        self.request_count = 0
        self.requests_by_path: Counter[str] = Counter()  # "GET /path" -> count (tests count calls)
        self._next_int_id = 0
        self._rng = random.Random(seed)
        # Hooks the sandbox server sets: give a VM its SSH endpoint, take it away.
        self.on_create: Callable[[SiteWorld, SVM], None] | None = None
        self.on_delete: Callable[[SiteWorld, SVM], None] | None = None
        # Floating IPs: 127.<floating_octet>.x.y, so each can really reach its VM (the guest
        # server binds the address for the VM while attached, through these hooks).
        self.floating_ips: dict[str, SFloatingIP] = {}
        self.floating_octet = 200
        self._floating_next = 0
        self.on_address_added: Callable[[SiteWorld, SVM, str], None] | None = None
        self.on_address_removed: Callable[[SiteWorld, SVM, str], None] | None = None
        # OpenStack: the member project has its own network (not shared) next to a shared one,
        # behind a router to the external network (else: one shared provider network).
        self.tenant_network = False
        # Set by a front with security groups: may this client address (vm, peer, port) reach
        # the VM's SSH? None: every address may.
        self.admits_ssh: Callable[[SVM, str, int], bool] | None = None
        # OpenStack: a block storage service (Cinder) and its volumes.
        self.block_storage = True
        self.volumes: dict[str, SVolume] = {}
        # Neutron's pagination_max_limit: every list is paged to it (None: lists come whole).
        self.neutron_max_limit: int | None = None

    # ------------------------------------------------------------ faults
    def inject(self, what: str = "") -> bool:
        """Count the request (`what`: "METHOD /path"), apply latency; return True when this
        request must fail with a server error."""
        with self.lock:
            self.request_count += 1
            if what:
                self.requests_by_path[what] += 1
            latency, rate = self.faults.latency_ms, self.faults.error_rate
            fail = rate > 0 and self._rng.random() < rate
        if latency:
            time.sleep(latency / 1000.0)
        return fail

    def hold_creates(self, after: int | None) -> None:
        """From now on accept `after` creates, then hold the rest; None releases them all."""
        with self.lock:
            self.faults.hold_creates_after = after
            self._creates_since_hold = 0
            self._creates_released.notify_all()

    def _admit_create(self) -> None:
        with self.lock:
            held = False
            while (self.faults.hold_creates_after is not None
                   and self._creates_since_hold >= self.faults.hold_creates_after):
                if not held:
                    held = True
                    self.creates_held += 1
                self._creates_released.wait()
            if held:
                self.creates_held -= 1
            self._creates_since_hold += 1

    # ------------------------------------------------------------ usage
    def live_vms(self) -> list[SVM]:
        return [v for v in self.vms.values() if not v.deleted]

    def usage(self) -> tuple[int, int, int]:
        vms = self.live_vms()
        return len(vms), sum(v.vcpus for v in vms), sum(v.ram_mib for v in vms)

    def next_int_id(self) -> str:
        with self.lock:
            i = self._next_int_id
            self._next_int_id += 1
            return str(i)

    def check_quota(self, vcpus: int, ram_mib: int) -> None:
        """The user's quota, then its group's (the sandbox's one user is its group's only member)."""
        n, cores, ram = self.usage()
        for scope, q in (("user", self.quota), ("group", self.group_quota)):
            if q.instances >= 0 and n + 1 > q.instances:
                raise QuotaError("instances", 1, n, q.instances, scope)
            if q.cores >= 0 and cores + vcpus > q.cores:
                raise QuotaError("cores", vcpus, cores, q.cores, scope)
            if q.ram_mib >= 0 and ram + ram_mib > q.ram_mib:
                raise QuotaError("ram", ram_mib, ram, q.ram_mib, scope)

    def chance(self, rate: float) -> bool:
        """True with probability `rate`, from the world's seeded generator."""
        with self.lock:
            return rate > 0 and self._rng.random() < rate

    def hosts_have_room(self, vcpus: int, ram_mib: int) -> bool:
        _, cores, ram = self.usage()
        if self.host_cpus is not None and cores + vcpus > self.host_cpus:
            return False
        if self.host_ram_mib is not None and ram + ram_mib > self.host_ram_mib:
            return False
        return True

    # ------------------------------------------------------------ lifecycle
    def create_vm(self, *, name: str, vcpus: int, ram_mib: int, image_id: str,
                  flavor_id: str | None = None, vm_id: str | None = None, quota: bool = True,
                  boot_delay: float | None = None, **attrs: Any) -> SVM:
        """Create a VM or raise QuotaError (`quota=False`: an administrator, whom no quota
        binds). A VM for which no host has room is created in error (as Nova does); the
        front-end decides how to show that."""
        with self.lock:
            self.creates_in_progress += 1
        try:
            self._admit_create()
            return self._create_vm(name=name, vcpus=vcpus, ram_mib=ram_mib, image_id=image_id, flavor_id=flavor_id,
                                   vm_id=vm_id, quota=quota, boot_delay=boot_delay, **attrs)
        finally:
            with self.lock:
                self.creates_in_progress -= 1

    def _create_vm(self, *, name: str, vcpus: int, ram_mib: int, image_id: str, flavor_id: str | None,
                   vm_id: str | None, quota: bool, boot_delay: float | None, **attrs: Any) -> SVM:
        with self.lock:
            if quota:
                self.check_quota(vcpus, ram_mib)
            room = self.hosts_have_room(vcpus, ram_mib)
            vm = SVM(id=vm_id or (str(uuid.uuid4()) if self.kind == "openstack" else self.next_int_id()),
                     name=name, vcpus=vcpus, ram_mib=ram_mib, image_id=image_id,
                     flavor_id=flavor_id, created=time.time(),
                     boot_delay=self.faults.boot_delay if boot_delay is None else boot_delay,
                     **attrs)
            if not room:
                vm.error = "No valid host was found. There are not enough hosts available."
            elif self.faults.build_fault:
                vm.error = self.faults.build_fault
            self.vms[vm.id] = vm
        if self.on_create and not vm.error:
            self.on_create(self, vm)
        return vm

    def get_vm(self, vm_id: str) -> SVM | None:
        vm = self.vms.get(vm_id)
        return None if vm is None or vm.deleted else vm

    def delete_vm(self, vm_id: str) -> bool:
        with self.lock:
            vm = self.vms.get(vm_id)
            if vm is None or vm.deleted:
                return False
            vm.deleted = True
            # Deleted VMs leave the listing at once; keep no tombstones (memory at 3x1000 VMs).
            del self.vms[vm_id]
            # Its port goes with it: Neutron disassociates the floating IPs but keeps them
            # allocated to the project (they leak unless someone releases them).
            detached = [f for f in self.floating_ips.values() if f.vm_id == vm_id]
            for f in detached:
                f.vm_id = None
                f.updated = time.time()
                f.revision += 1
            vm.floating_addresses = []
            # Its volumes: those marked delete_on_termination go with it, the rest are detached.
            for vol in [v for v in self.volumes.values() if v.vm_id == vm_id]:
                if vol.delete_on_termination:
                    del self.volumes[vol.id]
                else:
                    vol.vm_id = None
        for f in detached:
            if self.on_address_removed:
                self.on_address_removed(self, vm, f.address)
        if self.on_delete:
            self.on_delete(self, vm)
        return True

    # ------------------------------------------------------------ floating IPs
    def floating_quota_check(self, project_id: str) -> None:
        used = sum(1 for f in self.floating_ips.values() if f.project_id == project_id)
        if self.quota.floating_ips >= 0 and used + 1 > self.quota.floating_ips:
            raise QuotaError("floatingip", 1, used, self.quota.floating_ips)

    def _next_floating_address(self) -> str:
        taken = {f.address for f in self.floating_ips.values()}
        for _ in range(256 * 253):
            n = self._floating_next
            self._floating_next = (n + 1) % (256 * 253)
            address = f"127.{self.floating_octet}.{n // 253}.{n % 253 + 2}"
            if address not in taken:
                return address
        raise FloatingIPError("exhausted", "No more IP addresses available on the external network.")

    def allocate_floating_ip(self, project_id: str, *, description: str = "",
                             vm_id: str | None = None) -> SFloatingIP:
        """Allocate one (and attach it to `vm_id` when given), or raise QuotaError /
        FloatingIPError."""
        with self.lock:
            self.floating_quota_check(project_id)
            now = time.time()
            fip = SFloatingIP(id=str(uuid.uuid4()), address=self._next_floating_address(),
                              project_id=project_id, created=now, updated=now, description=description)
            self.floating_ips[fip.id] = fip
        if vm_id is not None:
            try:
                self.attach_floating_ip(fip.id, vm_id)
            except FloatingIPError:
                with self.lock:
                    self.floating_ips.pop(fip.id, None)
                raise
        return fip

    def attach_floating_ip(self, fip_id: str, vm_id: str | None) -> SFloatingIP:
        """Attach to a VM's port (moving it if attached elsewhere), or detach with None."""
        with self.lock:
            fip = self.floating_ips.get(fip_id)
            if fip is None:
                raise FloatingIPError("not_found", f"Floating IP {fip_id} could not be found")
            vm = self.get_vm(vm_id) if vm_id is not None else None
            if vm_id is not None and vm is None:
                raise FloatingIPError("not_found", f"VM {vm_id} could not be found")
            if vm is not None and fip.vm_id != vm.id and vm.floating_addresses:
                raise FloatingIPError("already_associated", vm.floating_addresses[0])
            old = self.vms.get(fip.vm_id) if fip.vm_id else None
            if old is vm:
                return fip
            if old is not None and fip.address in old.floating_addresses:
                old.floating_addresses.remove(fip.address)
            fip.vm_id = vm.id if vm is not None else None
            if vm is not None:
                vm.floating_addresses.append(fip.address)
            fip.updated = time.time()
            fip.revision += 1
        # Outside the lock: binding an address may take a moment.
        if old is not None and self.on_address_removed:
            self.on_address_removed(self, old, fip.address)
        if vm is not None and self.on_address_added:
            self.on_address_added(self, vm, fip.address)
        return fip

    def release_floating_ip(self, fip_id: str) -> None:
        """Detach (if attached) and give the address back; FloatingIPError if unknown."""
        self.attach_floating_ip(fip_id, None)
        with self.lock:
            self.floating_ips.pop(fip_id, None)

    # ------------------------------------------------------------ volumes
    def volume_usage(self, project_id: str) -> tuple[int, int]:
        """(volumes, gigabytes) the project holds."""
        with self.lock:
            mine = [v for v in self.volumes.values() if v.project_id == project_id]
            return len(mine), sum(v.size_gib for v in mine)

    def create_volume(self, project_id: str, size_gib: int, *, name: str = "", image_id: str | None = None,
                      description: str = "", vm_id: str | None = None,
                      delete_on_termination: bool = False) -> SVolume:
        """Create a volume or raise QuotaError ("volumes" or "gigabytes", as Cinder checks them:
        gigabytes first, the way its quota engine reports the overs)."""
        with self.lock:
            n, gib = self.volume_usage(project_id)
            if self.quota.gigabytes >= 0 and gib + size_gib > self.quota.gigabytes:
                raise QuotaError("gigabytes", size_gib, gib, self.quota.gigabytes)
            if self.quota.volumes >= 0 and n + 1 > self.quota.volumes:
                raise QuotaError("volumes", 1, n, self.quota.volumes)
            vol = SVolume(id=str(uuid.uuid4()), name=name, size_gib=size_gib, project_id=project_id,
                          created=time.time(), image_id=image_id, description=description, vm_id=vm_id,
                          delete_on_termination=delete_on_termination)
            self.volumes[vol.id] = vol
            return vol

    def vm_volumes(self, vm_id: str) -> list[SVolume]:
        with self.lock:
            return [v for v in self.volumes.values() if v.vm_id == vm_id]
