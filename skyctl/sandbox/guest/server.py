"""The SSH server every sandbox VM answers on: its listeners, the paramiko server behind them,
and the exec/shell (and jump-host) channels it serves.

Each VM has its own loopback address (127.<10+site>.x.y) and shows its own ed25519 host key
(fingerprint in `vm.host_key_fingerprint`). It lets in only what `access` allows; exec requests
run with `sh -c` on this host in the VM's directory, which is also the SFTP root, so relative
paths agree between the two. `boot` decides when its context counts as applied.

Scale (3 sites x 1000 VMs on 2 cores): one selector thread accepts on every VM's listening
socket and one timer thread applies contexts; threads exist only per live connection.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

from skyctl.sandbox.guest.access import GuestAccess, guest_access
from skyctl.sandbox.guest import jail
from skyctl.sandbox.guest.boot import Boot
from skyctl.sandbox.guest.forward import deliver_signal, relay as _relay, remote_forward, started
from skyctl.sandbox.guest.qemu import QemuGuests, QemuVm, kill_leftovers
from skyctl.sandbox.guest.sftp import GuestSftpServer, RootedSftp
from skyctl.sandbox.guest.terminal import Pty
from skyctl.sandbox.world import SVM, SiteWorld

log = logging.getLogger("skyctl.sandbox.ssh")


# Not skyctl.ssh's fingerprint: the sandbox imitates a VM and shares no code with the client it tests.
def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def new_host_key() -> paramiko.PKey:
    """A fresh ed25519 key, as a VM makes its host key on first boot."""
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
    host_key: paramiko.PKey | None            # None: a real guest (its own sshd shows its key)
    listener: socket.socket | None = None
    extra_listeners: dict[str, socket.socket] = field(default_factory=dict)   # floating IPs
    transports: set[paramiko.Transport] = field(default_factory=set)
    procs: set[subprocess.Popen[bytes]] = field(default_factory=set)
    connections: int = 0                       # accepted so far, as sshd's log would count them
    forwarded: list[tuple[str, int]] = field(default_factory=list)   # jump-host destinations
    gone: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    qemu: QemuVm | None = None                 # a real guest: connections relay to its sshd
    relays: set[socket.socket] = field(default_factory=set)

    def access(self, login_user: str) -> GuestAccess:
        return guest_access(self.vm, self.kind, login_user)


class _GuestServer(paramiko.ServerInterface):
    def __init__(self, fabric: VmSshFabric, guest: Guest) -> None:
        self.fabric = fabric
        self.guest = guest
        self.user: str | None = None
        self.env: dict[int, dict[str, str]] = {}
        self.starts: dict[int, threading.Thread] = {}
        self.relays: dict[int, socket.socket] = {}
        self.forwards: dict[tuple[str, int], socket.socket] = {}   # `ssh -R` listeners
        self.transport: paramiko.Transport | None = None
        self.ptys: dict[int, Pty] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.guest.gone or self.guest.vm.offline():
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

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, destination: Any) -> int:
        # As sshd with its default AllowTcpForwarding: a jump host (`ssh -J`) connects on to the
        # destination. The sandbox's network is the loopback: nothing else is reachable.
        host, port = str(destination[0]), int(destination[1])
        if host in ("localhost", "127.0.0.1", "::1", "ip6-localhost"):
            host = self.guest.address   # the VM's own loopback is the VM (`-L 8888:localhost:8888`)
        if not _on_loopback(host):
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        try:
            upstream = socket.create_connection((host, port), timeout=5)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        upstream.settimeout(None)
        with self.guest.lock:
            self.guest.forwarded.append((host, port))
        self.relays[chanid] = upstream  # relayed once the channel exists (_GuestTransport)
        return paramiko.OPEN_SUCCEEDED

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        """`ssh -R`: sshd listens on the VM (its loopback is the VM's own address in the sandbox)."""
        if self.transport is None:
            return False
        listener = remote_forward(self.transport, self.guest.address, address, port)
        if listener is None:
            return False
        bound = int(listener.getsockname()[1])
        self.forwards[(address, bound)] = listener
        return bound

    def cancel_port_forward_request(self, address: str, port: int) -> None:
        listener = self.forwards.pop((address, port), None)
        if listener is not None:
            listener.close()

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes | str, value: bytes | str) -> bool:
        name_s = name.decode() if isinstance(name, bytes) else name
        value_s = value.decode() if isinstance(value, bytes) else value
        self.env.setdefault(channel.get_id(), {})[name_s] = value_s
        return True

    def check_channel_pty_request(self, channel: paramiko.Channel, term: bytes | str, width: int, height: int,
                                  pixelwidth: int, pixelheight: int, modes: bytes) -> bool:
        # As sshd: the command (or login shell) runs on a pseudo-terminal of this size.
        name = term.decode("ascii", "replace") if isinstance(term, bytes) else str(term)
        self.ptys[channel.get_id()] = Pty(name or "xterm", max(1, width), max(1, height))
        return True

    def check_channel_window_change_request(self, channel: paramiko.Channel, width: int, height: int,
                                            pixelwidth: int, pixelheight: int) -> bool:
        pty = self.ptys.get(channel.get_id())
        if pty is not None:
            pty.resize(width, height)
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
        pty = self.ptys.get(channel.get_id())
        self.starts[channel.get_id()] = threading.Thread(
            target=self.fabric.run_command, args=(self.guest, channel, command, self.user, env, pty),
            name=f"ssh-exec-{self.guest.address}", daemon=True)


def _handle_request_then_start(channel: paramiko.Channel, message: paramiko.Message) -> None:
    if deliver_signal(channel, message):   # paramiko's server side ignores it; sshd delivers it
        return
    paramiko.Channel._handle_request(channel, message)  # answers the request first
    server = channel.transport.server_object if channel.transport else None
    runner = server.starts.pop(channel.get_id(), None) if isinstance(server, _GuestServer) else None
    if runner is not None:
        runner.start()


class _GuestTransport(paramiko.Transport):
    _channel_handler_table: ClassVar[dict[int, Any]] = {
        **paramiko.Transport._channel_handler_table, MSG_CHANNEL_REQUEST: _handle_request_then_start}

    def _queue_incoming_channel(self, channel: paramiko.Channel) -> None:
        server = self.server_object
        upstream = server.relays.pop(channel.get_id(), None) if isinstance(server, _GuestServer) else None
        if upstream is None:
            super()._queue_incoming_channel(channel)
            return
        # The client's EOF half-closes the destination; the destination hanging up ends the channel.
        up = (channel.recv, upstream.sendall, lambda: upstream.shutdown(socket.SHUT_WR))
        down = (upstream.recv, channel.sendall, lambda: (channel.close(), upstream.close()))
        for name, args in (("up", up), ("down", down)):
            threading.Thread(target=_relay, args=args, daemon=True, name=f"ssh-relay-{name}").start()


def listen(address: str, port: int) -> socket.socket:
    """A non-blocking listening socket for one guest address (SO_REUSEADDR, closed on failure)."""
    sock = socket.create_server((address, port), backlog=16)
    sock.setblocking(False)
    return sock


class VmSshFabric:
    """SSH endpoints for every VM of every site of one sandbox process."""

    def __init__(self, vms_dir: Path, *, login_user: str = "cloud-user", port: int = 0,
                 guests: QemuGuests | None = None) -> None:
        self.vms_dir = vms_dir
        self.guests = guests   # real guests: every VM a site creates boots under QEMU
        self.bin_dir = vms_dir.parent / "guest-bin"
        self.login_user = login_user
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
        self.boot = Boot(self.bin_dir, login_user=login_user)

    # ------------------------------------------------------------ life
    def start(self) -> None:
        _raise_fd_limit()
        logging.getLogger("paramiko.transport").addFilter(_quiet_client_hangups)
        if self.vms_dir.exists():
            if self.guests is not None:
                kill_leftovers(self.vms_dir)   # real guests of a sandbox that was killed
            shutil.rmtree(self.vms_dir, ignore_errors=True)  # guests of an earlier run are gone
        self.vms_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.port:
            # One port for every VM address. Holding it on 127.0.0.1 keeps other programs from
            # taking it on the wildcard address, which would block our per-VM binds.
            guard = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            guard.bind(("127.0.0.1", 0))
            self.port = guard.getsockname()[1]
            self._port_guard = guard
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._loop.start()
        self.boot.start()  # the guest tools on PATH, and the timer that applies contexts
        if self.guests is not None:
            self.guests.start()   # probes KVM once (else TCG) and starts reading consoles

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._loop.is_alive():
            self._loop.join(timeout=5)
        self.boot.stop()
        with self._lock:
            guests = list(self._guests.values())
            self._guests.clear()
        for g in guests:
            self._retire(g, remove_dir=False)
        if self.guests is not None:
            self.guests.stop()
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
        if self.guests is not None:
            self._create_real(world, vm, root, address)
            return
        guest = Guest(site=world.name, kind=world.kind, world=world, vm=vm, root=root, address=address,
                      host_key=new_host_key())
        self.boot.received(guest)
        try:
            guest.listener = listen(address, self.port)
        except OSError as e:
            # The VM still boots (the cloud API must not fail for it); it just has no sshd.
            log.warning("%s/%s: no SSH endpoint on %s:%s: %s", world.name, vm.id, address, self.port, e)
        self._enter(guest, self.port)
        self.boot.schedule(guest)

    def _create_real(self, world: SiteWorld, vm: SVM, root: Path, address: str) -> None:
        """A real guest: QEMU boots it; its endpoint relays to the guest's own sshd."""
        assert self.guests is not None
        guest = Guest(site=world.name, kind=world.kind, world=world, vm=vm, root=root, address=address,
                      host_key=None)
        try:
            guest.qemu = self.guests.launch(world, vm, root)
        except OSError as e:
            # As a hypervisor that cannot start the domain: the VM goes to ERROR with the reason.
            log.warning("%s/%s: the guest did not start: %s", world.name, vm.id, e)
            with world.lock:
                vm.error = f"Build of instance {vm.id} aborted: {e}"
            return
        # No listener until the guest's sshd answers: before that its address refuses
        # connections, as a booting VM's port 22 does (QEMU's forwarder would accept them).
        guest.qemu.on_sshd = lambda: self._sshd_up(guest)
        self._enter(guest, self.port)

    def _sshd_up(self, guest: Guest) -> None:
        if guest.gone or guest.listener is not None:
            return
        try:
            guest.listener = listen(guest.address, self.port)
        except OSError as e:
            log.warning("%s/%s: no SSH endpoint on %s:%s: %s", guest.site, guest.vm.id, guest.address, self.port, e)
            return
        with self._lock:
            self._pending.append(("add", guest))
        self._wake()

    def serve(self, world: SiteWorld, vm: SVM, root: Path, listener: socket.socket, *,
              host_key: paramiko.PKey | None = None) -> Guest:
        """Serve one VM that no attached site created, on a listening socket from `listen`,
        with its files in `root` (kept at stop). Its context is applied when the caller says
        (`boot.finish`), not after a boot delay."""
        address, port = listener.getsockname()[:2]
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        guest = Guest(site=world.name, kind=world.kind, world=world, vm=vm, root=root, address=address,
                      host_key=host_key or new_host_key(), listener=listener)
        self.boot.received(guest)
        self._enter(guest, port)
        return guest

    def _enter(self, guest: Guest, port: int) -> None:
        """Show the VM's endpoint in the cloud's view and hand its listener to the accept loop."""
        vm = guest.vm
        with guest.world.lock:
            vm.address = guest.address
            vm.ssh_port = port
            if guest.host_key is not None:   # a real guest's comes from its console
                vm.host_key_fingerprint = fingerprint(guest.host_key)
        with self._lock:
            self._guests[(guest.site, vm.id)] = guest
            if guest.listener is not None:
                self._pending.append(("add", guest))
        self._wake()

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
            sock = listen(address, self.port)
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
            relays, guest.relays = list(guest.relays), set()
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
        for s in relays:
            _close_quietly(s)
        if guest.qemu is not None and self.guests is not None:
            self.guests.forget(guest.world, guest.vm)   # stops QEMU; the overlay goes with the dir
        if remove_dir:
            shutil.rmtree(guest.root, ignore_errors=True)

    # ------------------------------------------------------------ commands
    def run_command(self, guest: Guest, channel: paramiko.Channel, command: str | None, user: str | None,
                    env: dict[str, str], pty: Pty | None = None) -> None:
        """Run one exec/shell request in the VM dir and relay its I/O and exit status (on a
        pseudo-terminal when the client asked for one, as `ssh -t` and interactive logins do).
        A failure here still ends the channel, with exit status 255 and the reason on stderr:
        a client must never wait for an exit status that will not come."""
        try:
            self._run_command(guest, channel, command, user, env, pty)
        except Exception as e:  # noqa: BLE001 - whatever broke, the channel gets its end
            log.warning("ssh command on %s failed to run: %s", guest.address, e)
            _close_channel(channel, f"sandbox: cannot run the command: {e}\n", 255)

    def _run_command(self, guest: Guest, channel: paramiko.Channel, command: str | None, user: str | None,
                     env: dict[str, str], pty: Pty | None) -> None:
        argv = ["/bin/sh", "-c", command] if command is not None else ["/bin/sh"]
        full_env = self.boot.env(guest, user, env)
        connection = _ssh_connection(channel)
        if connection:
            full_env["SSH_CONNECTION"] = connection   # as sshd sets it: which address was reached
        cwd: Path | None = guest.root
        confine = None
        if jail.available():   # the VM's directory is `/`, as it is for SFTP
            jail.prepare(guest.root, self.bin_dir)
            full_env.update(HOME="/", SKYCTL_SANDBOX_VM="/", PATH=jail.PATH)
            cwd, confine = None, (lambda then=None: jail.confine(guest.root, self.bin_dir, then))
        if pty is not None:
            full_env["TERM"] = pty.term
            rc = pty.run(argv, cwd, full_env, channel, guest, confine)
            _close_channel(channel, None, rc)
            return
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=full_env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, preexec_fn=confine() if confine else None)
        except OSError as e:
            _close_channel(channel, f"sh: {e.strerror}\n", 127)
            return
        started(channel, proc)   # for "signal" requests
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
            conn, peer = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:  # out of descriptors: drop this attempt, keep serving
            log.warning("accept on %s failed: %s", guest.address, e)
            return
        if guest.gone or guest.vm.offline() or self._stopping:
            conn.close()  # a stopped VM's sshd is not there
            return
        admits = guest.world.admits_ssh
        if admits is not None and not admits(guest.vm, str(peer[0]), self.port):
            conn.close()  # the VM's security groups let this client in on no SSH port
            return
        if sock is guest.listener and guest.world.tenant_network and guest.vm.extra.get("network") == "private":
            conn.close()  # a tenant network's fixed address: reached only through a floating IP
            return
        conn.setblocking(True)
        if guest.qemu is not None:
            self._relay_to_guest(guest, conn)
            return
        try:
            transport = _GuestTransport(conn)
            transport.add_server_key(guest.host_key)
            transport.set_subsystem_handler("sftp", GuestSftpServer, RootedSftp, guest.root)
            with guest.lock:
                guest.transports = {t for t in guest.transports if t.is_active()}
                guest.transports.add(transport)
                guest.connections += 1
            # With an event, start_server returns at once; negotiation runs in the transport's thread.
            server = _GuestServer(self, guest)
            server.transport = transport
            transport.start_server(event=threading.Event(), server=server)
        except Exception as e:  # noqa: BLE001 - a bad client must not stop the accept loop
            log.warning("ssh session on %s failed to start: %s", guest.address, e)
            conn.close()


    def _relay_to_guest(self, guest: Guest, conn: socket.socket) -> None:
        """Carry one client connection to the real guest's sshd (QEMU's forwarded port)."""
        assert guest.qemu is not None
        port = guest.qemu.fwd_port

        def run() -> None:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                conn.close()
                return
            upstream.settimeout(None)
            with guest.lock:
                if guest.gone:
                    conn.close()
                    upstream.close()
                    return
                guest.relays.update((conn, upstream))
                guest.connections += 1
            up = (conn.recv, upstream.sendall, lambda: _shutdown_write(upstream))
            down = (upstream.recv, conn.sendall, lambda: _shutdown_write(conn))
            threading.Thread(target=_relay, args=up, daemon=True, name="guest-relay-up").start()
            _relay(*down)   # the guest hung up: nothing more can come back, close both ends
            with guest.lock:
                guest.relays.discard(conn)
                guest.relays.discard(upstream)
            _close_quietly(conn)
            _close_quietly(upstream)

        threading.Thread(target=run, daemon=True, name=f"guest-relay-{guest.address}").start()


# ---------------------------------------------------------------- helpers


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass



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


def _on_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # the sandbox resolves no other names
