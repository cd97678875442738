"""SSH-able sandbox VMs: every VM gets its own loopback address and an SSH server there.

A VM's endpoint behaves like a freshly booted cloud guest, as far as skyctl can tell:
- it accepts only the public keys its context delivered (the Nova keypair, cloud-init
  `ssh_authorized_keys` / `users[].ssh_authorized_keys`, OpenNebula `SSH_PUBLIC_KEY`), for the
  login user, the users the context creates, and root on OpenNebula (where one-context puts keys);
- it shows its own ed25519 host key (fingerprint in `vm.host_key_fingerprint`);
- exec requests run with `sh -c` on this host in the VM's directory, which is also the SFTP
  root, so relative paths agree between the two;
- the user-data / CONTEXT it received sits at the paths real guests use, inside the VM dir;
- after its boot delay the context is "applied": `cloud-init status` answers `status: done`
  (`status: running` before) and `vm.ready` is set (the OpenNebula front turns it into
  `READY=YES` when REPORT_READY was asked, as OneGate does). The context's own scripts run
  only when the spec asks for it (`run_scripts: true`).

Scale (3 sites x 1000 VMs on 2 cores): one selector thread accepts on every VM's listening
socket and one timer thread applies contexts; threads exist only per live connection.
"""

from __future__ import annotations

import base64
import binascii
import email
import gzip
import hashlib
import heapq
import io
import json
import logging
import os
import posixpath
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST
from paramiko.sftp import SFTP_OK, SFTP_PERMISSION_DENIED

from skyctl.sandbox.world import SVM, SiteWorld

log = logging.getLogger("skyctl.sandbox.ssh")

# Paths inside a VM dir, as on a real guest.
USER_DATA_PATH = "var/lib/cloud/instance/user-data.txt"
ONE_CONTEXT_PATH = "var/run/one-context/context.sh"
CLOUD_INIT_RESULT = "run/cloud-init/result.json"
CLOUD_INIT_STATUS = "run/cloud-init/status.json"
CLOUD_INIT_OUTPUT = "var/log/cloud-init-output.log"

# Stand-ins for the guest tools that skyctl and users call over SSH. They live in one shared
# bin dir on every VM's PATH (not copied per VM: 3000 VMs).
_CLOUD_INIT_SH = r"""#!/bin/sh
# Sandbox stand-in for a guest's cloud-init: answers 'cloud-init status' from the VM's own
# run/cloud-init/result.json, which the sandbox writes once the context is applied.
root="${SKYCTL_SANDBOX_VM:-.}"
if [ "$1" != status ]; then
  echo "cloud-init: the sandbox guest only answers 'cloud-init status'" >&2
  exit 2
fi
shift
wait=0
for a in "$@"; do
  case "$a" in -w|--wait) wait=1 ;; esac
done
while [ ! -f "$root/run/cloud-init/result.json" ]; do
  if [ "$wait" = 0 ]; then echo "status: running"; exit 0; fi
  sleep 0.1
done
if grep -q '"errors": \[\]' "$root/run/cloud-init/result.json"; then
  echo "status: done"
else
  echo "status: error"
  exit 1
fi
"""

_SUDO_SH = r"""#!/bin/sh
# Sandbox guests run commands as the sandbox's own user: sudo just runs its command.
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -eq 0 ] && exit 0
exec "$@"
"""

_HOSTNAME_SH = r"""#!/bin/sh
# Sandbox guests answer with the name their context set (etc/hostname in the VM dir).
if [ $# -eq 0 ] && [ -f "${SKYCTL_SANDBOX_VM:-.}/etc/hostname" ]; then
  cat "${SKYCTL_SANDBOX_VM:-.}/etc/hostname"
  exit 0
fi
PATH="${PATH#*:}" exec hostname "$@"
"""

# ---------------------------------------------------------------- pure: what the context delivered


def _cloud_config_docs(user_data: str | None) -> list[dict[str, Any]]:
    """The cloud-config documents in user-data: plain `#cloud-config` or MIME multipart parts."""
    import yaml

    if not user_data:
        return []
    text = user_data.lstrip()
    if text.startswith("#cloud-config"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return []
        return [doc] if isinstance(doc, dict) else []
    if text.lower().startswith(("content-type:", "mime-version:")):
        docs: list[dict[str, Any]] = []
        msg = email.message_from_string(text)
        for part in msg.walk():
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            body = payload.decode("utf-8", "replace")
            if part.get_content_type() in ("text/cloud-config", "text/x-cloud-config") \
                    and not body.lstrip().startswith("#cloud-config"):
                body = "#cloud-config\n" + body
            docs.extend(_cloud_config_docs(body))
        return docs
    return []


def _key_lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return [ln.strip() for ln in value.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if isinstance(value, Iterable):
        return [ln for v in value for ln in _key_lines(v)]
    return []


def key_blob(line: str) -> str | None:
    """The base64 key blob of an authorized_keys line (options and comment ignored)."""
    parts = line.split()
    for i, part in enumerate(parts):
        if part.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(parts):
            blob = parts[i + 1]
            try:
                base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                return None
            return blob
    return None


def decode_one_user_data(context: dict[str, str]) -> str | None:
    raw = context.get("USER_DATA")
    if not raw:
        return None
    if context.get("USERDATA_ENCODING", "").lower() == "base64":
        try:
            return base64.b64decode(raw).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return None
    return raw


def guest_user_data(vm: SVM) -> str | None:
    """The user-data cloud-init in the guest sees (OpenStack user_data, or ONE USER_DATA)."""
    return vm.user_data if vm.user_data is not None else decode_one_user_data(vm.context)


@dataclass(frozen=True)
class GuestAccess:
    users: frozenset[str]
    key_blobs: frozenset[str]

    def allows(self, user: str, blob: str) -> bool:
        return user in self.users and blob in self.key_blobs


def guest_access(vm: SVM, kind: str, login_user: str) -> GuestAccess:
    """Who may log in to this VM and with which keys, from what its context delivered."""
    users = {login_user}
    lines: list[str] = list(_key_lines(vm.ssh_keys))
    for doc in _cloud_config_docs(guest_user_data(vm)):
        lines += _key_lines(doc.get("ssh_authorized_keys") or [])
        for u in doc.get("users") or []:
            if isinstance(u, dict) and u.get("name"):
                users.add(str(u["name"]))
                lines += _key_lines(u.get("ssh_authorized_keys") or u.get("ssh-authorized-keys") or [])
        if isinstance(doc.get("system_info"), dict):
            default = (doc["system_info"].get("default_user") or {}).get("name")
            if default:
                users.add(str(default))
    if kind == "opennebula" or vm.context:
        lines += _key_lines(vm.context.get("SSH_PUBLIC_KEY", ""))
        users.add("root")
        if vm.context.get("USERNAME"):
            users.add(vm.context["USERNAME"])
    blobs = {b for b in (key_blob(ln) for ln in lines) if b}
    return GuestAccess(frozenset(users), frozenset(blobs))


def context_sh(context: dict[str, str]) -> str:
    """A CONTEXT section as oned writes it: a header comment, then sorted KEY='value' lines."""
    out = ["# Context variables generated by OpenNebula"]
    for k in sorted(context):
        out.append(f"{k}='" + str(context[k]).replace("'", "'\\''") + "'")
    return "\n".join(out) + "\n"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def new_host_key() -> paramiko.PKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))


class AddressPool:
    """127.<second>.<hi>.<lo> addresses for one site, handed out in order, .0/.1/.255 skipped."""

    def __init__(self, second_octet: int) -> None:
        if not 0 < second_octet < 256:
            raise ValueError("second octet out of range")
        self.second = second_octet
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            n = self._next
            self._next = (n + 1) % (256 * 253)
        return f"127.{self.second}.{n // 253}.{n % 253 + 2}"


# ---------------------------------------------------------------- one guest


@dataclass(eq=False)
class Guest:
    site: str
    kind: str
    world: SiteWorld
    vm: SVM
    root: Path
    address: str
    host_key: paramiko.PKey
    listener: socket.socket | None = None
    extra_listeners: dict[str, socket.socket] = field(default_factory=dict)   # floating IPs
    transports: set[paramiko.Transport] = field(default_factory=set)
    procs: set[subprocess.Popen[bytes]] = field(default_factory=set)
    gone: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def access(self, login_user: str) -> GuestAccess:
        return guest_access(self.vm, self.kind, login_user)


class _GuestServer(paramiko.ServerInterface):
    def __init__(self, fabric: VmSshFabric, guest: Guest) -> None:
        self.fabric = fabric
        self.guest = guest
        self.user: str | None = None
        self.env: dict[int, dict[str, str]] = {}
        self.starts: dict[int, threading.Thread] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.guest.gone or self.guest.vm.stopped:
            return paramiko.AUTH_FAILED
        if self.guest.access(self.fabric.login_user).allows(username, key.get_base64()):
            self.user = username
            return paramiko.AUTH_SUCCESSFUL
        log.info("%s/%s: refused key %s for %s", self.guest.site, self.guest.vm.id, fingerprint(key), username)
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes | str, value: bytes | str) -> bool:
        name_s = name.decode() if isinstance(name, bytes) else name
        value_s = value.decode() if isinstance(value, bytes) else value
        self.env.setdefault(channel.get_id(), {})[name_s] = value_s
        return True

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True  # accepted; commands still run without a terminal

    def check_channel_window_change_request(self, *args: Any) -> bool:
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self._start(channel, command.decode("utf-8", "replace"))
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self._start(channel, None)
        return True

    def _start(self, channel: paramiko.Channel, command: str | None) -> None:
        # Started by _GuestTransport once the request's reply is on the wire: a quick command
        # must not close the channel before the client has heard "success".
        env = self.env.pop(channel.get_id(), {})
        self.starts[channel.get_id()] = threading.Thread(
            target=self.fabric.run_command, args=(self.guest, channel, command, self.user, env),
            name=f"ssh-exec-{self.guest.address}", daemon=True)


def _handle_request_then_start(channel: paramiko.Channel, message: paramiko.Message) -> None:
    paramiko.Channel._handle_request(channel, message)  # answers the request first
    server = channel.transport.server_object if channel.transport else None
    runner = server.starts.pop(channel.get_id(), None) if isinstance(server, _GuestServer) else None
    if runner is not None:
        runner.start()


class _GuestTransport(paramiko.Transport):
    _channel_handler_table: ClassVar[dict[int, Any]] = {
        **paramiko.Transport._channel_handler_table, MSG_CHANNEL_REQUEST: _handle_request_then_start}


class _SftpHandle(paramiko.SFTPHandle):
    def stat(self) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        try:
            paramiko.SFTPServer.set_file_attr(self.filename, attr)
            return SFTP_OK
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)


class RootedSftp(paramiko.SFTPServerInterface):
    """SFTP confined to a VM dir: `/` and `.` are the VM dir; nothing outside it is reachable."""

    def __init__(self, server: paramiko.ServerInterface, root: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.root = os.path.realpath(root)

    def _local(self, path: str) -> str:
        rel = posixpath.normpath("/" + path).lstrip("/")
        local = os.path.join(self.root, rel) if rel else self.root
        real = os.path.realpath(local)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise PermissionError(path)
        return local

    def _do(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except PermissionError:
            return SFTP_PERMISSION_DENIED
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def canonicalize(self, path: str) -> str:
        return posixpath.normpath("/" + path)

    def list_folder(self, path: str) -> Any:
        def go() -> list[paramiko.SFTPAttributes]:
            local = self._local(path)
            out = []
            for name in os.listdir(local):
                attr = paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(local, name)))
                attr.filename = name
                out.append(attr)
            return out
        return self._do(go)

    def stat(self, path: str) -> Any:
        return self._do(lambda: paramiko.SFTPAttributes.from_stat(os.stat(self._local(path))))

    def lstat(self, path: str) -> Any:
        return self._do(lambda: paramiko.SFTPAttributes.from_stat(os.lstat(self._local(path))))

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        def go() -> Any:
            local = self._local(path)
            mode = getattr(attr, "st_mode", None)
            fd = os.open(local, flags, mode if mode is not None else 0o644)
            if (flags & os.O_CREAT) and attr is not None:
                attr._flags &= ~attr.FLAG_PERMISSIONS
                paramiko.SFTPServer.set_file_attr(local, attr)
            if flags & os.O_WRONLY:
                fmode = "ab" if flags & os.O_APPEND else "wb"
            elif flags & os.O_RDWR:
                fmode = "a+b" if flags & os.O_APPEND else "r+b"
            else:
                fmode = "rb"
            handle = _SftpHandle(flags)
            handle.filename = local
            handle.readfile = handle.writefile = os.fdopen(fd, fmode)
            return handle
        return self._do(go)

    def remove(self, path: str) -> Any:
        return self._do(lambda: (os.remove(self._local(path)), SFTP_OK)[1])

    def rename(self, oldpath: str, newpath: str) -> Any:
        def go() -> int:
            new = self._local(newpath)
            if os.path.exists(new):
                raise FileExistsError(newpath)
            os.rename(self._local(oldpath), new)
            return SFTP_OK
        return self._do(go)

    def posix_rename(self, oldpath: str, newpath: str) -> Any:
        return self._do(lambda: (os.replace(self._local(oldpath), self._local(newpath)), SFTP_OK)[1])

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> Any:
        def go() -> int:
            local = self._local(path)
            os.mkdir(local)
            if attr is not None:
                paramiko.SFTPServer.set_file_attr(local, attr)
            return SFTP_OK
        return self._do(go)

    def rmdir(self, path: str) -> Any:
        return self._do(lambda: (os.rmdir(self._local(path)), SFTP_OK)[1])

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> Any:
        return self._do(lambda: (paramiko.SFTPServer.set_file_attr(self._local(path), attr), SFTP_OK)[1])

    def readlink(self, path: str) -> Any:
        def go() -> str:
            target = os.readlink(self._local(path))
            if os.path.isabs(target):
                rel = os.path.relpath(target, self.root)
                if rel.startswith(".."):
                    raise PermissionError(path)
                return "/" + rel
            return target
        return self._do(go)

    def symlink(self, target_path: str, path: str) -> Any:
        def go() -> int:
            target = self._local(target_path) if target_path.startswith("/") else target_path
            os.symlink(target, self._local(path))
            return SFTP_OK
        return self._do(go)


# ---------------------------------------------------------------- timers


class _Timers:
    """One thread running callbacks at their time (context application for every VM)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sandbox-timers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.time()):
                    wait = (self._heap[0][0] - time.time()) if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # one VM's failure must not stop the others' contexts
                log.exception("sandbox timer callback failed")


# ---------------------------------------------------------------- the fabric


def _listen(address: str, port: int) -> socket.socket:
    """A non-blocking listening socket for one guest address (SO_REUSEADDR, closed on failure)."""
    sock = socket.create_server((address, port), backlog=16)
    sock.setblocking(False)
    return sock


class VmSshFabric:
    """SSH endpoints for every VM of every site of one sandbox process."""

    def __init__(self, vms_dir: Path, *, login_user: str = "cloud-user", port: int = 0,
                 run_scripts: bool = False) -> None:
        self.vms_dir = vms_dir
        self.bin_dir = vms_dir.parent / "guest-bin"
        self.login_user = login_user
        self.run_scripts = run_scripts
        self.port = port
        self._pools: dict[str, AddressPool] = {}
        self._guests: dict[tuple[str, str], Guest] = {}
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)  # a full wake-up buffer already means "wake up"
        self._pending: list[tuple[str, Guest]] = []
        self._pending_socks: list[tuple[str, Guest, socket.socket, threading.Event | None]] = []
        self._stopping = False
        self._port_guard: socket.socket | None = None
        self._loop = threading.Thread(target=self._accept_loop, name="sandbox-ssh-accept", daemon=True)
        self._timers = _Timers()

    # ------------------------------------------------------------ life
    def start(self) -> None:
        _raise_fd_limit()
        logging.getLogger("paramiko.transport").addFilter(_quiet_client_hangups)
        if self.vms_dir.exists():
            shutil.rmtree(self.vms_dir, ignore_errors=True)  # guests of an earlier run are gone
        self.vms_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._install_guest_tools()
        if not self.port:
            # One port for every VM address. Holding it on 127.0.0.1 keeps other programs from
            # taking it on the wildcard address, which would block our per-VM binds.
            guard = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            guard.bind(("127.0.0.1", 0))
            self.port = guard.getsockname()[1]
            self._port_guard = guard
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._loop.start()
        self._timers.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._loop.is_alive():
            self._loop.join(timeout=5)
        self._timers.stop()
        with self._lock:
            guests = list(self._guests.values())
            self._guests.clear()
        for g in guests:
            self._retire(g, remove_dir=False)
        if self._port_guard:
            self._port_guard.close()
        shutil.rmtree(self.vms_dir, ignore_errors=True)

    def attach(self, world: SiteWorld, site_index: int) -> None:
        """Give this site's VMs SSH endpoints from now on (127.<10+site_index>.x.y), and
        serve them on their floating IPs (127.<200+site_index>.x.y) while attached."""
        self._pools[world.name] = AddressPool(10 + site_index)
        world.floating_octet = 200 + site_index
        world.on_create = self.on_create
        world.on_delete = self.on_delete
        world.on_address_added = self.add_address
        world.on_address_removed = self.remove_address

    def guest(self, site: str, vm_id: str) -> Guest | None:
        with self._lock:
            return self._guests.get((site, vm_id))

    def guest_count(self) -> int:
        with self._lock:
            return len(self._guests)

    # ------------------------------------------------------------ world hooks
    def on_create(self, world: SiteWorld, vm: SVM) -> None:
        address = self._pools[world.name].take()
        root = self.vms_dir / world.name / vm.id
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, mode=0o700)
        key = new_host_key()
        guest = Guest(site=world.name, kind=world.kind, world=world, vm=vm, root=root, address=address,
                      host_key=key)
        self._write_received_context(guest)
        try:
            guest.listener = _listen(address, self.port)
        except OSError as e:
            # The VM still boots (the cloud API must not fail for it); it just has no sshd.
            log.warning("%s/%s: no SSH endpoint on %s:%s: %s", world.name, vm.id, address, self.port, e)
        with world.lock:
            vm.address = address
            vm.ssh_port = self.port
            vm.host_key_fingerprint = fingerprint(key)
        with self._lock:
            self._guests[(world.name, vm.id)] = guest
            if guest.listener is not None:
                self._pending.append(("add", guest))
        self._wake()
        self._timers.at(vm.created + vm.boot_delay, lambda: self._apply_context(guest))

    def add_address(self, world: SiteWorld, vm: SVM, address: str) -> bool:
        """Serve this VM's SSH endpoint on one more address (a floating IP). False when the
        VM has no endpoint or the address cannot be bound."""
        guest = self.guest(world.name, vm.id)
        if guest is None or guest.gone:
            return False
        with guest.lock:
            if address in guest.extra_listeners:
                return True
        try:
            sock = _listen(address, self.port)
        except OSError as e:
            log.warning("%s/%s: no SSH endpoint on floating %s:%s: %s", world.name, vm.id, address, self.port, e)
            return False
        with guest.lock:
            guest.extra_listeners[address] = sock
        with self._lock:
            self._pending_socks.append(("add", guest, sock, None))
        self._wake()
        return True

    def remove_address(self, world: SiteWorld, vm: SVM, address: str) -> None:
        """Stop serving the VM on an extra address (floating IP detached or released)."""
        guest = self.guest(world.name, vm.id)
        if guest is None:
            return
        with guest.lock:
            sock = guest.extra_listeners.pop(address, None)
        if sock is not None:
            # Wait until it is closed: once the cloud says "detached", the address must not answer.
            self._drop_sock(guest, sock, wait=True)

    def _drop_sock(self, guest: Guest, sock: socket.socket, *, wait: bool = False) -> None:
        if self._loop.is_alive() and threading.current_thread() is not self._loop:
            done = threading.Event() if wait else None
            with self._lock:
                self._pending_socks.append(("remove", guest, sock, done))
            self._wake()
            if done is not None:
                done.wait(timeout=5)
        else:
            self._close_sock(sock)

    def _close_sock(self, sock: socket.socket) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def on_delete(self, world: SiteWorld, vm: SVM) -> None:
        with self._lock:
            guest = self._guests.pop((world.name, vm.id), None)
        if guest is not None:
            self._retire(guest, remove_dir=True)

    def _retire(self, guest: Guest, *, remove_dir: bool) -> None:
        with guest.lock:
            guest.gone = True
            transports, procs = list(guest.transports), list(guest.procs)
            extra, guest.extra_listeners = list(guest.extra_listeners.values()), {}
        for sock in extra:
            self._drop_sock(guest, sock)
        if guest.listener is not None:
            if self._loop.is_alive():
                with self._lock:
                    self._pending.append(("remove", guest))
                self._wake()
            else:
                self._close_listener(guest)
        for proc in procs:
            _kill_group(proc)
        for t in transports:
            t.close()
        if remove_dir:
            shutil.rmtree(guest.root, ignore_errors=True)

    # ------------------------------------------------------------ the guest's files
    def _install_guest_tools(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text in (("cloud-init", _CLOUD_INIT_SH), ("sudo", _SUDO_SH), ("hostname", _HOSTNAME_SH)):
            p = self.bin_dir / name
            p.write_text(text, encoding="utf-8")
            p.chmod(0o700)

    def _write_received_context(self, guest: Guest) -> None:
        vm, root = guest.vm, guest.root
        user_data = guest_user_data(vm)
        if user_data is not None:
            _write(root / USER_DATA_PATH, user_data)
        if vm.context:
            _write(root / ONE_CONTEXT_PATH, context_sh(vm.context))
        _write(root / "var/lib/cloud/data/instance-id", vm.id + "\n")

    def _apply_context(self, guest: Guest) -> None:
        if guest.gone:
            return
        if self.run_scripts:
            threading.Thread(target=self._finish_boot, args=(guest, True), daemon=True,
                             name=f"ctx-{guest.address}").start()
        else:
            self._finish_boot(guest, False)

    def _finish_boot(self, guest: Guest, run_scripts: bool) -> None:
        vm, root = guest.vm, guest.root
        errors: list[str] = []
        hostname = vm.context.get("SET_HOSTNAME") or next(
            (str(d["hostname"]) for d in _cloud_config_docs(guest_user_data(vm)) if d.get("hostname")), vm.name)
        _write(root / "etc/hostname", hostname + "\n")
        if run_scripts:
            errors = self._run_context_scripts(guest)
        if guest.gone:
            return
        source = "DataSourceOpenNebula" if guest.kind == "opennebula" else "DataSourceOpenStack"
        _write(root / CLOUD_INIT_STATUS, json.dumps({"v1": {"datasource": source, "init": {"errors": errors}}}))
        _write(root / CLOUD_INIT_RESULT, json.dumps({"v1": {"datasource": source, "errors": errors}}, indent=1))
        with guest.world.lock:
            vm.ready = True  # fronts show it: READY=YES with REPORT_READY (OpenNebula)
        log.debug("%s/%s: context applied (%s)", guest.site, vm.id, "errors" if errors else "ok")

    def _run_context_scripts(self, guest: Guest) -> list[str]:
        """Opt-in: run what the guest's init would run (write_files, bootcmd/runcmd, scripts)."""
        vm, root = guest.vm, guest.root
        steps: list[tuple[str, list[str] | str]] = []
        user_data = guest_user_data(vm)
        for doc in _cloud_config_docs(user_data):
            for f in doc.get("write_files") or []:
                if isinstance(f, dict) and f.get("path"):
                    content = f.get("content", "")
                    if str(f.get("encoding", "")).lower() in ("b64", "base64"):
                        content = base64.b64decode(content).decode("utf-8", "replace")
                    elif str(f.get("encoding", "")).lower() in ("gz+b64", "gzip+base64", "gz+base64"):
                        content = gzip.decompress(base64.b64decode(content)).decode("utf-8", "replace")
                    target = root / str(f["path"]).lstrip("/")
                    _write(target, str(content), append=bool(f.get("append")))
                    if f.get("permissions"):
                        target.chmod(int(str(f["permissions"]), 8) & 0o777)
            for key in ("bootcmd", "runcmd"):
                for cmd in doc.get(key) or []:
                    steps.append((key, cmd if isinstance(cmd, list) else str(cmd)))
        if user_data and user_data.startswith("#!"):
            steps.append(("user-data script", user_data))
        start = vm.context.get("START_SCRIPT")
        if vm.context.get("START_SCRIPT_BASE64"):
            start = base64.b64decode(vm.context["START_SCRIPT_BASE64"]).decode("utf-8", "replace")
        if start:
            steps.append(("START_SCRIPT", start))
        errors = []
        out = root / CLOUD_INIT_OUTPUT
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "ab") as log_file:
            for what, cmd in steps:
                if guest.gone:
                    break
                if isinstance(cmd, list):
                    argv = [str(a) for a in cmd]
                elif cmd.startswith("#!"):
                    script = root / "var/lib/cloud/instance/scripts" / what.replace(" ", "-")
                    _write(script, cmd)
                    script.chmod(0o700)
                    argv = [str(script)]
                else:
                    argv = ["/bin/sh", "-c", cmd]
                try:
                    rc = subprocess.run(argv, cwd=root, env=self._env(guest, self.login_user, {}),
                                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                        timeout=600, start_new_session=True, check=False).returncode
                except (OSError, subprocess.TimeoutExpired) as e:
                    rc, what = -1, f"{what}: {type(e).__name__}"
                if rc != 0:
                    errors.append(f"{what} failed ({shlex.join(argv)[:80]}): exit {rc}")
        return errors

    def _env(self, guest: Guest, user: str | None, extra: dict[str, str]) -> dict[str, str]:
        env = {"PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(guest.root), "USER": user or self.login_user, "LOGNAME": user or self.login_user,
               "SHELL": "/bin/sh", "LANG": "C.UTF-8", "SKYCTL_SANDBOX_VM": str(guest.root)}
        env.update({k: v for k, v in extra.items() if k not in ("PATH", "SKYCTL_SANDBOX_VM")})
        return env

    # ------------------------------------------------------------ commands
    def run_command(self, guest: Guest, channel: paramiko.Channel, command: str | None, user: str | None,
                    env: dict[str, str]) -> None:
        """Run one exec/shell request in the VM dir and relay its I/O and exit status."""
        argv = ["/bin/sh", "-c", command] if command is not None else ["/bin/sh"]
        full_env = self._env(guest, user, env)
        connection = _ssh_connection(channel)
        if connection:
            full_env["SSH_CONNECTION"] = connection   # as sshd sets it: which address was reached
        try:
            proc = subprocess.Popen(argv, cwd=guest.root, env=full_env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as e:
            _close_channel(channel, f"sh: {e.strerror}\n", 127)
            return
        with guest.lock:
            if guest.gone:
                _kill_group(proc)
            guest.procs.add(proc)
        feeder = threading.Thread(target=_feed_stdin, args=(channel, proc), daemon=True,
                                  name=f"ssh-stdin-{guest.address}")
        feeder.start()
        try:
            _relay_output(channel, proc)
            rc = proc.wait()
        finally:
            with guest.lock:
                guest.procs.discard(proc)
        _close_channel(channel, None, rc if rc >= 0 else 128 - rc)

    # ------------------------------------------------------------ accept loop
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _close_listener(self, guest: Guest) -> None:
        sock, guest.listener = guest.listener, None
        if sock is not None:
            self._close_sock(sock)

    def _accept_loop(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
            with self._lock:
                pending, self._pending = self._pending, []
                socks, self._pending_socks = self._pending_socks, []
            for op, guest, sock, done in socks:
                if op == "add" and not guest.gone and sock.fileno() >= 0:
                    self._sel.register(sock, selectors.EVENT_READ, guest)
                elif op == "remove":
                    self._close_sock(sock)
                if done is not None:
                    done.set()
            for op, guest in pending:
                if op == "add" and guest.listener is not None and not guest.gone:
                    self._sel.register(guest.listener, selectors.EVENT_READ, guest)
                elif op == "remove":
                    self._close_listener(guest)

    def _accept(self, sock: socket.socket, guest: Guest) -> None:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:  # out of descriptors: drop this attempt, keep serving
            log.warning("accept on %s failed: %s", guest.address, e)
            return
        if guest.gone or guest.vm.stopped or self._stopping:
            conn.close()  # a stopped VM's sshd is not there
            return
        conn.setblocking(True)
        try:
            transport = _GuestTransport(conn)
            transport.add_server_key(guest.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, RootedSftp, guest.root)
            with guest.lock:
                guest.transports = {t for t in guest.transports if t.is_active()}
                guest.transports.add(transport)
            # With an event, start_server returns at once; negotiation runs in the transport's thread.
            transport.start_server(event=threading.Event(), server=_GuestServer(self, guest))
        except Exception as e:  # noqa: BLE001 - a bad client must not stop the accept loop
            log.warning("ssh session on %s failed to start: %s", guest.address, e)
            conn.close()


# ---------------------------------------------------------------- helpers


def _ssh_connection(channel: paramiko.Channel) -> str | None:
    """sshd's SSH_CONNECTION: "client_ip client_port server_ip server_port"."""
    try:
        sock = channel.get_transport().sock
        client, server = sock.getpeername(), sock.getsockname()
        return f"{client[0]} {client[1]} {server[0]} {server[1]}"
    except (AttributeError, OSError, IndexError, TypeError):
        return None


def _quiet_client_hangups(record: logging.LogRecord) -> bool:
    """Clients that hang up without a goodbye are routine for a guest; keep them out of the log."""
    msg = record.getMessage()
    return not msg.startswith("Socket exception: Connection reset") and "EOF in transport thread" not in msg


def _write(path: Path, text: str, *, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        f.write(text)


def _feed_stdin(channel: paramiko.Channel, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    try:
        while True:
            data = channel.recv(32768)
            if not data:
                break
            proc.stdin.write(data)
            proc.stdin.flush()
    except (OSError, EOFError):
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _relay_output(channel: paramiko.Channel, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, channel.sendall)
        sel.register(proc.stderr, selectors.EVENT_READ, channel.sendall_stderr)
        open_streams = 2
        while open_streams:
            for key, _ in sel.select():
                data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                try:
                    key.data(data)
                except (OSError, EOFError):
                    pass  # client went away; keep draining so the process is not blocked
    proc.stdout.close()
    proc.stderr.close()


def _close_channel(channel: paramiko.Channel, stderr: str | None, rc: int) -> None:
    try:
        if stderr:
            channel.sendall_stderr(stderr.encode())
        channel.send_exit_status(rc)
        channel.shutdown_write()
        channel.close()
    except (OSError, EOFError):
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _raise_fd_limit() -> None:
    """Every VM holds a listening socket: lift the soft descriptor limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 16
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass
