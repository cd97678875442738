"""Real guests: each sandbox VM boots the guest image under QEMU and runs real cloud-init.

A `QemuVm` is one guest: a copy-on-write overlay of the image, the data its cloud delivers on
a CD-ROM as a real guest sees it (OpenStack: a config drive labelled `config-2` holding
`openstack/latest/meta_data.json` and `user_data`; OpenNebula: an ISO labelled `CONTEXT`
holding `context.sh`, as oned attaches it), a serial console written to `console.log`, and
QEMU's user-mode network forwarding a loopback port to the guest's sshd (the SSH fabric
relays the VM's own address to it, after the cloud's security groups and floating IPs had
their say). `QemuGuests` starts and stops them and reads their consoles: the host key that
cloud-init printed becomes the VM's known fingerprint, and "Cloud-init ... finished" marks the
VM ready (OneGate's READY=YES where REPORT_READY was asked).

Acceleration: KVM only when a short probe boots the image's kernel to its panic within
`KVM_PROBE_SECONDS` (on a nested host /dev/kvm may exist and still run no stock kernel), else
TCG. The probe's answer is kept per host boot in the cache dir.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyctl.sandbox.guest.access import context_sh, guest_user_data
from skyctl.sandbox.guest.image import Image, overlay, require
from skyctl.sandbox.world import SVM

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.sandbox.world import SiteWorld

log = logging.getLogger("skyctl.sandbox.qemu")

KVM_PROBE_SECONDS = 20.0
SSHD_GRACE_SECONDS = 20.0   # from "Starting ssh.service" to trusting that it listens
GUEST_MEMORY_MIB = 512
# The address QEMU's user-mode network gives the guest, and the MAC OpenNebula would give that
# address (02:00 + the IPv4 in hex): cloud-init's OpenNebula source matches ETH0_MAC to a NIC.
GUEST_IP, GUEST_MAC = "10.0.2.15", "02:00:0a:00:02:0f"
GUEST_NET = {"ETH0_IP": GUEST_IP, "ETH0_MAC": GUEST_MAC, "ETH0_MASK": "255.255.255.0",
             "ETH0_NETWORK": "10.0.2.0", "ETH0_GATEWAY": "10.0.2.2", "ETH0_DNS": "10.0.2.3"}

_FINGERPRINT = re.compile(r"^\S*.*?\b(\d+) (SHA256:[A-Za-z0-9+/=]+) \S+ \((ED25519|ECDSA|RSA)\)", re.MULTILINE)
_SSHD_STARTED = re.compile(r"Started \S*ssh\.service")
_FINISHED = re.compile(r"Cloud-init v\. \S+ finished at .*Up ([0-9.]+) seconds")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_iso(folder: Path, label: str, dest: Path) -> Path:
    """An ISO 9660 image with Rock Ridge and Joliet names of `folder`, volume label `label`."""
    tool = shutil.which("genisoimage") or shutil.which("xorriso")
    if tool is None:
        require("genisoimage")
    assert tool is not None
    argv = ([tool] if tool.endswith("genisoimage") else [tool, "-as", "mkisofs"]) + \
        ["-quiet", "-output", str(dest), "-volid", label, "-joliet", "-rock", str(folder)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise OSError(f"{Path(tool).name} failed: {(proc.stderr.strip() or 'no output').splitlines()[-1]}")
    return dest


def config_drive(vm: SVM, world: SiteWorld, folder: Path) -> tuple[Path, str]:
    """What Nova writes on a config drive (the parts cloud-init's ConfigDrive source reads)."""
    public_keys = {}
    if vm.key_name and vm.ssh_keys:
        public_keys[vm.key_name] = vm.ssh_keys[0]
    host = re.sub(r"[^a-z0-9-]+", "-", vm.name.lower()).strip("-")[:63] or "server"
    meta = {"uuid": vm.id, "name": vm.name, "hostname": host, "launch_index": 0,
            "availability_zone": "nova", "project_id": "demo", "meta": dict(vm.metadata),
            "public_keys": public_keys}
    if public_keys:
        meta["keys"] = [{"name": k, "type": "ssh", "data": v} for k, v in public_keys.items()]
    # Nova's network_data.json for a network without DHCP (static injection): the guest
    # configures the address QEMU's user-mode network expects at once, no DHCP wait. One
    # deviation: the default route as the subnet's `gateway` (a key cloud-init's converter
    # takes) instead of Nova's `routes` entry, which cloud-init's ifupdown renderer turns into
    # `route add` from net-tools, a package a minimal Debian image does not have.
    network = {"links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": GUEST_MAC, "mtu": 1500,
                          "vif_id": vm.id}],
               "networks": [{"id": "network0", "type": "ipv4", "link": "tap0", "ip_address": GUEST_IP,
                             "netmask": "255.255.255.0", "network_id": vm.extra.get("network") or "sandbox",
                             "gateway": "10.0.2.2", "routes": []}],
               "services": [{"type": "dns", "address": "10.0.2.3"}]}
    latest = folder / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(meta), encoding="utf-8")
    (latest / "network_data.json").write_text(json.dumps(network), encoding="utf-8")
    user_data = guest_user_data(vm)
    if user_data is not None:
        (latest / "user_data").write_text(user_data, encoding="utf-8")
    return folder, "config-2"


def context_cdrom(vm: SVM, folder: Path) -> tuple[Path, str]:
    """What oned puts on the CONTEXT CD-ROM: context.sh, with the guest's own network."""
    context = dict(vm.context)
    context.update({"DISK_ID": "1", "TARGET": "hda"})
    if str(context.get("NETWORK", "")).upper() == "YES":
        context.update(GUEST_NET)
    folder.mkdir(parents=True)
    (folder / "context.sh").write_text(context_sh(context), encoding="utf-8")
    return folder, "CONTEXT"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_accel(image: Image, cache: Path) -> str:
    """'kvm' when KVM runs the image's kernel to its end within KVM_PROBE_SECONDS, else 'tcg'."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    memo = cache / "kvm-probe.json"
    try:
        seen = json.loads(memo.read_text(encoding="utf-8"))
        if seen.get("boot_id") == _boot_id() and seen.get("accel") in ("kvm", "tcg"):
            return str(seen["accel"])
    except (OSError, ValueError, AttributeError):
        pass
    with tempfile.TemporaryDirectory(prefix="skyctl-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        # No root disk: a kernel that really runs gets to its "VFS: Unable to mount root fs"
        # panic and QEMU exits (-no-reboot); one that does not make progress never prints it.
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "256",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{console}", "-kernel", str(image.kernel),
                "-append", "console=ttyS0 root=/dev/nonexistent panic=-1"]
        accel = "tcg"
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=KVM_PROBE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            text = console.read_text(errors="replace") if console.exists() else ""
            if "Kernel panic" in text or "Unable to mount root" in text:
                accel = "kvm"
        except OSError:
            accel = "tcg"
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"boot_id": _boot_id(), "accel": accel}), encoding="utf-8")
    except OSError:
        pass
    log.info("acceleration: %s", accel)
    return accel


def kill_leftovers(vms_dir: Path) -> int:
    """Stop the QEMU guests an earlier sandbox process left running (it was killed before it
    could stop them): each wrote its pid file into its VM dir. Returns how many were stopped."""
    stopped = 0
    for pid_file in vms_dir.glob("*/*/qemu.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"qemu-system" in cmdline and str(pid_file.parent).encode() in cmdline:
            try:
                os.kill(pid, 15)
                stopped += 1
            except OSError:
                pass
    return stopped


@dataclass(eq=False)
class QemuVm:
    """One real guest. `dir` holds its overlay, seed ISO, console log and pid file."""

    vm: SVM
    world: SiteWorld
    dir: Path
    fwd_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    console_seen: int = 0
    finished_after: float | None = None   # seconds from QEMU start to cloud-init's "finished"
    sshd_after: float | None = None       # seconds from QEMU start to systemd's "Started ssh.service"
    on_sshd: Callable[[], None] | None = None   # called once, when sshd first answers
    sshd_starting: float | None = None    # when the console first named ssh.service
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    def console_text(self) -> str:
        try:
            return self.console.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class QemuGuests:
    """Starts a QEMU guest for every VM the sandbox's sites create; stops it at delete."""

    def __init__(self, image: Image, cache: Path, *, memory_mib: int = GUEST_MEMORY_MIB,
                 accel: str = "auto") -> None:
        require("qemu-system-x86_64", "qemu-img")
        if shutil.which("genisoimage") is None and shutil.which("xorriso") is None:
            require("genisoimage")
        self.image = image
        self.cache = cache
        self.memory_mib = memory_mib
        self.accel = accel
        self._vms: dict[tuple[str, str], QemuVm] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="qemu-consoles", daemon=True)

    def start(self) -> None:
        if self.accel == "auto":
            self.accel = probe_accel(self.image, self.cache)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            vms = list(self._vms.values())
            self._vms.clear()
        for q in vms:
            q.stop()

    def launch(self, world: SiteWorld, vm: SVM, folder: Path) -> QemuVm:
        """Boot a guest for this VM, its files in `folder` (removed with the VM)."""
        q = QemuVm(vm=vm, world=world, dir=folder)
        disk = overlay(self.image, folder / "overlay.qcow2")
        with tempfile.TemporaryDirectory(prefix="seed-", dir=folder) as tmp:
            if world.kind == "opennebula":
                src, label = context_cdrom(vm, Path(tmp) / "context")
            else:
                src, label = config_drive(vm, world, Path(tmp) / "drive")
            seed = make_iso(src, label, folder / ("context.iso" if label == "CONTEXT" else "config-drive.iso"))
        accel = (["-accel", "kvm", "-cpu", "host,-arch-capabilities"] if self.accel == "kvm"
                 else ["-accel", "tcg,thread=single,tb-size=256"])
        for _attempt in range(3):   # the forwarded port is picked free, then bound by QEMU: retry a race
            q.fwd_port = _free_port()
            argv = ["qemu-system-x86_64", *accel, "-m", str(self.memory_mib), "-smp", "1",
                    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                    "-serial", f"file:{q.console}", "-pidfile", str(folder / "qemu.pid"),
                    "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                    "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0",
                    "-drive", f"file={disk},if=virtio,format=qcow2,discard=unmap",
                    "-drive", f"file={seed},media=cdrom,if=ide,readonly=on",
                    "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{q.fwd_port}-:22",
                    "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}"]
            log_file = open(folder / "qemu.log", "wb")  # noqa: SIM115 - QEMU keeps writing to it
            try:
                q.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                          start_new_session=True)
            finally:
                log_file.close()
            q.started = time.monotonic()
            try:
                q.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                break   # running
            err = (folder / "qemu.log").read_text(errors="replace").strip()
            if "hostfwd" not in err and "Could not set up host forwarding" not in err:
                raise OSError(f"qemu-system-x86_64 exited at start: {err.splitlines()[-1] if err else 'no output'}")
        vm.extra["console"] = q.console_text   # the OpenStack front's console output: the real one
        vm.extra["guest"] = "qemu"
        with self._lock:
            self._vms[(world.name, vm.id)] = q
        log.info("%s/%s: QEMU guest started (%s, pid %s, ssh forwarded from 127.0.0.1:%s)",
                 world.name, vm.id, self.accel, q.proc.pid if q.proc else "?", q.fwd_port)
        return q

    def forget(self, world: SiteWorld, vm: SVM) -> None:
        """Stop the VM's QEMU (its folder goes with the VM)."""
        with self._lock:
            q = self._vms.pop((world.name, vm.id), None)
        if q is not None:
            q.stop()
            log.info("%s/%s: QEMU guest stopped", world.name, vm.id)

    def count(self) -> int:
        with self._lock:
            return len(self._vms)

    def timings(self) -> list[dict[str, Any]]:
        """Per guest: seconds from QEMU start to cloud-init finished (its own 'Up N seconds')."""
        with self._lock:
            return [{"site": q.world.name, "vm": q.vm.id, "name": q.vm.name, "sshd_after": q.sshd_after,
                     "finished_after": q.finished_after,
                     "guest_uptime_at_finish": q.vm.extra.get("cloud_init_up")} for q in self._vms.values()]

    # ------------------------------------------------------------ consoles
    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                vms = list(self._vms.values())
            for q in vms:
                try:
                    self._read(q)
                except Exception:  # one guest's console must not stop the others'
                    log.exception("reading a guest console failed")

    def _read(self, q: QemuVm) -> None:
        vm = q.vm
        if vm.ready and vm.host_key_fingerprint and q.sshd_after is not None:
            return
        text = q.console_text()
        if len(text) == q.console_seen and q.sshd_starting is None:
            return
        q.console_seen = len(text)
        # sshd listens from now on: systemd said it started it, or cloud-init's final stage
        # (which runs after it) printed the host keys, or systemd began starting it a while
        # ago (its "Started" line does not always reach the console). Probing the port
        # instead would fork an sshd in a guest that is still booting under emulation.
        if q.sshd_after is None and "ssh.service" in text and q.sshd_starting is None:
            q.sshd_starting = time.monotonic()
        if q.sshd_after is None and (_SSHD_STARTED.search(text) or _FINGERPRINT.search(text) or (
                q.sshd_starting is not None and time.monotonic() - q.sshd_starting > SSHD_GRACE_SECONDS)):
            q.sshd_after = round(time.monotonic() - q.started, 1)
            log.info("%s/%s: sshd started %.1f s after QEMU started", q.world.name, vm.id, q.sshd_after)
            if q.on_sshd is not None:
                q.on_sshd()
        fps = _FINGERPRINT.findall(text)
        with q.world.lock:
            if fps and not vm.host_key_fingerprint:
                ed = [fp for _bits, fp, kind in fps if kind == "ED25519"]
                vm.host_key_fingerprint = (ed or [fps[0][1]])[0]
            m = _FINISHED.search(text)
            if m and not vm.ready:
                vm.ready = True
                q.finished_after = round(time.monotonic() - q.started, 1)
                vm.extra["cloud_init_up"] = float(m.group(1))
                log.info("%s/%s: cloud-init finished %.1f s after QEMU started (guest uptime %s s)",
                         q.world.name, vm.id, q.finished_after, m.group(1))
