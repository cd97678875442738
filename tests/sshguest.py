"""A small SSH guest for tests: a real paramiko server on a real loopback socket.

It behaves like a freshly booted cloud VM as far as skyctl's SSH client can tell: key auth
only (for one login user and the keys it was given), exec runs `sh -c` in the guest's own
directory, SFTP is rooted in that directory, `cloud-init status` answers from a status the
test switches (running / done / error), and, when asked, it forwards `direct-tcpip` channels
like a bastion does for `ssh -J`.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import paramiko

# The sandbox VMs' own SFTP server, host-key maker and fingerprint: this guest serves the
# same way, with a cloud-init status the test switches and bastion forwarding on top.
from skyctl.sandbox.vmssh import RootedSftp, fingerprint
from skyctl.sandbox.vmssh import new_host_key as new_key

_CLOUD_INIT = """#!/bin/sh
[ "$1" = status ] || { echo "usage: cloud-init status" >&2; exit 2; }
s=$(cat "$GUEST_STATUS_FILE")
echo "status: $s"
[ "$s" = error ] && exit 1
exit 0
"""


def new_key_pair(path: Path) -> tuple[Path, str]:
    """A client key pair as ssh-keygen leaves it: private 0600, public beside it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    key = paramiko.Ed25519Key(file_obj=io.StringIO(pem))
    public = f"{key.get_name()} {key.get_base64()} test@skyctl"
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return path, public


class _Server(paramiko.ServerInterface):
    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.guest.user and key.get_base64() in self.guest.authorized
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, destination: Any) -> int:
        if not self.guest.forwarding:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.guest.forwarded.append((destination[0], int(destination[1])))
        self.guest._pending_forwards[chanid] = (destination[0], int(destination[1]))
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self.guest._exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True


class Guest:
    """One SSH-able test VM on host:port (127.0.0.1:<ephemeral> unless told otherwise)."""

    def __init__(self, root: Path, *, user: str = "cloud-user", authorized: set[str] | None = None,
                 host_key: paramiko.PKey | None = None, status: str = "done", forwarding: bool = False,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.authorized: set[str] = set(authorized or ())
        self.host_key = host_key or new_key()
        self.forwarding = forwarding
        self.forwarded: list[tuple[str, int]] = []
        self._pending_forwards: dict[int, tuple[str, int]] = {}
        self.connections = 0
        self._bin = root.parent / f".{root.name}-bin"
        self._bin.mkdir(exist_ok=True)
        (self._bin / "cloud-init").write_text(_CLOUD_INIT)
        (self._bin / "cloud-init").chmod(0o755)
        self._status_file = root.parent / f".{root.name}-status"
        self.status = status
        self._sock = socket.create_server((host, port), backlog=32)
        self.host, self.port = self._sock.getsockname()[:2]
        self._transports: list[paramiko.Transport] = []
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"guest-{self.port}")
        self._thread.start()

    @property
    def status(self) -> str:
        return self._status_file.read_text().strip()

    @status.setter
    def status(self, value: str) -> None:
        self._status_file.write_text(value + "\n")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key)

    def authorize(self, public_line: str) -> None:
        self.authorized.add(public_line.split()[1])

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, RootedSftp, self.root)
            self._transports.append(t)
            try:
                t.start_server(event=threading.Event(), server=_Server(self))
            except Exception:  # noqa: BLE001 - a client that hangs up early
                conn.close()
                continue
            if self.forwarding:
                threading.Thread(target=self._serve_forwards, args=(t,), daemon=True).start()

    def _serve_forwards(self, t: paramiko.Transport) -> None:
        while t.is_active() and not self._stopped:
            chan = t.accept(timeout=0.5)
            if chan is None:
                continue
            dest = self._pending_forwards.pop(chan.get_id(), None)
            if dest is None:
                continue  # a session channel: served by its exec request
            try:
                upstream = socket.create_connection(dest, timeout=5)
            except OSError:
                chan.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=_pump, args=(chan, upstream), daemon=True).start()
            threading.Thread(target=_pump_back, args=(upstream, chan), daemon=True).start()

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        env = {"PATH": f"{self._bin}:/usr/bin:/bin", "HOME": str(self.root),
               "GUEST_STATUS_FILE": str(self._status_file), "LANG": "C.UTF-8"}
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._procs.add(proc)
        err_thread = threading.Thread(target=_copy, args=(proc.stderr, channel.sendall_stderr), daemon=True)
        err_thread.start()
        _copy(proc.stdout, channel.sendall)
        err_thread.join()
        rc = proc.wait()
        self._procs.discard(proc)
        rc = rc if rc >= 0 else 128 - rc  # killed by a signal, as a shell reports it
        try:
            channel.send_exit_status(rc)
            channel.shutdown_write()
            channel.close()
        except (OSError, EOFError):
            pass

    def stop(self) -> None:
        self._stopped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in our thread
        except OSError:
            pass
        self._sock.close()
        for t in self._transports:
            t.close()
        for proc in list(self._procs):
            proc.kill()  # nothing a test started outlives it
            proc.wait()
        self._thread.join(timeout=5)


def _copy(stream: Any, send: Any) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        try:
            send(chunk)
        except (OSError, EOFError):
            pass
    stream.close()


def _pump(chan: paramiko.Channel, sock: socket.socket) -> None:
    try:
        for chunk in iter(lambda: chan.recv(65536), b""):
            sock.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _pump_back(sock: socket.socket, chan: paramiko.Channel) -> None:
    try:
        for chunk in iter(lambda: sock.recv(65536), b""):
            chan.sendall(chunk)
    except OSError:
        pass
    finally:
        chan.close()
        sock.close()
