"""What a sandbox VM's sshd does besides commands and SFTP: relaying forwarded connections
(`ssh -L` and jump hosts through `relay`, `ssh -R` through `remote_forward`) and delivering
the "signal" channel request to a running command (`deliver_signal`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko

# RFC 4254 6.9 signal names, those OpenSSH's sshd delivers (session.c, since 7.9).
SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "HUP": signal.SIGHUP,
           "QUIT": signal.SIGQUIT, "USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2}
LOOPBACK_NAMES = ("", "localhost", "127.0.0.1", "0.0.0.0", "::1", "*")


def deliver_signal(channel: paramiko.Channel, message: paramiko.Message) -> bool:
    """A "signal" channel request: send it to the channel's command (its process group) and
    say True; any other request is left unread for paramiko (False)."""
    start = message.packet.tell()
    if message.get_text() != "signal":
        message.packet.seek(start)
        return False
    message.get_boolean()   # want-reply: always false for "signal"
    sig = SIGNALS.get(message.get_text())
    if sig is None:
        return True
    proc = getattr(channel, "skyctl_proc", None)
    if proc is None:   # the command is still starting: it gets the signal once it runs
        channel.skyctl_pending_signal = sig  # type: ignore[attr-defined]
        return True
    send_signal(proc, sig)
    return True


def started(channel: paramiko.Channel, proc: Any) -> None:
    """The channel's command runs as `proc`: signals go to it (one that came first, now)."""
    channel.skyctl_proc = proc  # type: ignore[attr-defined]
    pending = getattr(channel, "skyctl_pending_signal", None)
    if pending is not None:
        send_signal(proc, pending)


def send_signal(proc: Any, sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def remote_forward(transport: paramiko.Transport, vm_address: str, address: str, port: int) -> socket.socket | None:
    """Listen on the VM for `ssh -R` (sshd's GatewayPorts no: the VM's loopback, which in the
    sandbox is its own address) and open a forwarded-tcpip channel per connection, until the
    client's connection ends. None when the address is not the VM's or the port is taken."""
    bind = vm_address if address in LOOPBACK_NAMES else address
    if bind != vm_address:
        return None
    try:
        listener = socket.create_server((bind, port), backlog=16)
    except OSError:
        return None
    listener.settimeout(0.5)   # wakes to notice the client's connection has ended
    bound = int(listener.getsockname()[1])

    def accept_loop() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                if transport.is_active():
                    continue
                listener.close()
                return
            except OSError:
                return
            conn.settimeout(None)
            try:
                chan = transport.open_forwarded_tcpip_channel((str(peer[0]), int(peer[1])), (address, bound))
            except Exception:  # noqa: BLE001 - the client went away: this connection is dropped
                conn.close()
                continue
            up = (conn.recv, chan.sendall, chan.shutdown_write)
            down = (chan.recv, conn.sendall, lambda c=conn, ch=chan: (c.close(), ch.close()))
            for name, args in (("up", up), ("down", down)):
                threading.Thread(target=relay, args=args, daemon=True, name=f"ssh-rforward-{name}").start()

    threading.Thread(target=accept_loop, daemon=True, name=f"ssh-rforward-{bind}:{bound}").start()
    return listener


def relay(read: Callable[[int], bytes], write: Callable[[bytes], Any], done: Callable[[], Any]) -> None:
    """One direction of a relayed connection: copy until the source ends, then `done`."""
    try:
        for chunk in iter(lambda: read(65536), b""):
            write(chunk)
    except (OSError, EOFError):
        pass
    finally:
        try:
            done()
        except OSError:
            pass
