"""SSH sessions: load the private key, connect (jump host, host-key check, key auth), run a
command on one node; SshOptions, what every connection of one command shares.

paramiko is imported inside functions only, so `skyctl --help` never pays for it.
"""

from __future__ import annotations

import contextlib
import getpass
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyctl.errors import CommandTimeout, HostKeyError, Interrupted, SshAuthError, Unreachable
from skyctl.keys import KeySource, fingerprint, read_public_key, split_key
from skyctl.model import Node
from skyctl.ssh.hostkeys import KnownHosts, check_host_key
from skyctl.ssh.target import Target, target_for

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

    from skyctl.site import SiteConfig

CONNECT_TIMEOUT = 10.0

ConsoleReader = Callable[[Node], str | None]  # a node's console log, None where the cloud has none


# ---------------------------------------------------------------- the private key


_key_cache: dict[tuple[str, float], Any] = {}
_key_lock = threading.Lock()


def load_private_key(key: KeySource) -> paramiko.PKey:
    """The private key (cached); an encrypted one is taken from the ssh-agent if it holds it."""
    import paramiko

    path, public = split_key(key)
    try:
        mtime = path.stat().st_mtime
    except OSError as e:
        raise SshAuthError(f"cannot read the SSH key {path}: {e.strerror}") from None
    with _key_lock:
        cached = _key_cache.get((str(path), mtime))
        if cached is not None:
            return cached
        try:
            pkey = paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            pkey = _agent_key(path, public)
        except (paramiko.SSHException, ValueError, OSError) as e:
            raise SshAuthError(f"cannot use the SSH key {path}: {e}") from None
        _key_cache[(str(path), mtime)] = pkey
        return pkey


def _agent_key(path: Path, public: str | None) -> paramiko.PKey:
    import paramiko

    if public is None:
        public = read_public_key(path.with_name(path.name + ".pub")) or ""
    blob = public.split()[1] if len(public.split()) > 1 else None
    try:
        for k in paramiko.Agent().get_keys():
            if blob and k.get_base64() == blob:
                return k
    except paramiko.SSHException:
        pass
    raise SshAuthError(f"the SSH key {path} is encrypted and no ssh-agent holds it",
                       hint="run ssh-add, or use a key without a passphrase")


# ---------------------------------------------------------------- sessions


class _Lines:
    """Cuts a byte stream into text lines for a callback; keeps everything for the result."""

    def __init__(self, emit: Callable[[str], None] | None) -> None:
        self.emit = emit
        self.data = bytearray()
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if self.emit is None:
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self.emit(line.decode("utf-8", "replace"))

    def close(self) -> str:
        if self.emit is not None and self._partial:
            self.emit(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        return self.data.decode("utf-8", "replace")


class Session:
    """One authenticated SSH connection to one node (through its jump host, if any)."""

    def __init__(self, target: Target, transport: paramiko.Transport, jump: paramiko.Transport | None = None) -> None:
        self.target = target
        self.transport = transport
        self._jump = jump
        self._sftp: paramiko.SFTPClient | None = None
        self.on_close: Callable[[Session], None] | None = None
        self._running: set[paramiko.Channel] = set()   # channels whose command has not ended

    @property
    def site(self) -> str:
        return self.target.node.site

    def exec(self, command: str, *, on_line: Callable[[str, str], None] | None = None,
             timeout: float | None = None) -> tuple[int, str, str]:
        """Run `command`; returns (exit code, stdout, stderr). on_line(stream, line) streams."""
        import paramiko

        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            chan = self.transport.open_session(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise Unreachable(f"{self.target.where}: cannot open a session: {e or type(e).__name__}",
                              site=self.site) from None
        self._running.add(chan)   # from now on: a Ctrl-C while the request is on its way reaches it too
        try:
            chan.exec_command(command)
            chan.shutdown_write()  # no stdin: commands that read it see end of file
        except (paramiko.SSHException, OSError, EOFError) as e:
            # Some servers run a quick command and close the channel before answering the exec
            # request; its output and exit status have still arrived, so the result stands.
            if not (chan.exit_status_ready() and chan.exit_status != -1):
                self._running.discard(chan)
                chan.close()
                raise Unreachable(f"{self.target.where}: cannot start the command: {e or type(e).__name__}",
                                  site=self.site) from None
        out = _Lines((lambda s: on_line("stdout", s)) if on_line else None)
        err = _Lines((lambda s: on_line("stderr", s)) if on_line else None)
        try:
            while True:
                while chan.recv_ready():
                    out.feed(chan.recv(65536))
                while chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(65536))
                if chan.exit_status_ready() or chan.closed:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandTimeout(f"{self.target.where}: command still running after {timeout:g}s",
                                        site=self.site)
                if not self.transport.is_active():
                    raise Unreachable(f"{self.target.where}: connection lost", site=self.site)
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                select.select([chan], [], [], wait)
            # the exit status comes after the output; take whatever is still buffered
            while chan.recv_ready():
                out.feed(chan.recv(65536))
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(65536))
            # paramiko reports -1 when the channel closed without an exit status (a real one is unsigned)
            code = chan.recv_exit_status() if chan.exit_status_ready() else -1
            if code == -1 and self.transport.is_active():
                code = 255  # ended by a signal (exit-signal, no status): what OpenSSH's client returns
            elif code == -1:
                raise Unreachable(f"{self.target.where}: the connection closed before the command finished",
                                  site=self.site)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        finally:
            self._running.discard(chan)
            chan.close()
        return code, out.close(), err.close()

    def interrupt(self, signal_name: str = "INT") -> None:
        """Send `signal_name` to every command still running on this connection: the "signal"
        channel request of RFC 4254 6.9, which OpenSSH's sshd delivers since 7.9. Closing the
        channel alone would leave a command without a terminal running until it writes."""
        import paramiko
        from paramiko.common import cMSG_CHANNEL_REQUEST

        for chan in list(self._running):
            if chan.closed or chan.exit_status_ready():
                continue
            m = paramiko.Message()
            m.add_byte(cMSG_CHANNEL_REQUEST)
            m.add_int(chan.remote_chanid)
            m.add_string("signal")
            m.add_boolean(False)
            m.add_string(signal_name)
            with contextlib.suppress(Exception):
                self.transport._send_user_message(m)

    def sftp(self) -> paramiko.SFTPClient:
        import paramiko

        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise Unreachable(f"{self.target.where}: SFTP unavailable: {e}", site=self.site) from None
            if self._sftp is None:
                raise Unreachable(f"{self.target.where}: SFTP unavailable", site=self.site)
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        self.transport.close()
        if self._jump is not None:
            self._jump.close()
        if self.on_close is not None:
            self.on_close(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handshake(sock: Any, *, where: str, site: str, timeout: float, prefer: Sequence[str] = ()) -> paramiko.Transport:
    import paramiko

    t = paramiko.Transport(sock)
    t.banner_timeout = timeout
    t.handshake_timeout = timeout
    t.auth_timeout = timeout
    if prefer:  # ask for the key type already recorded, so a known node is not seen as "changed"
        opts = t.get_security_options()
        opts.key_types = [k for k in prefer if k in opts.key_types] + [k for k in opts.key_types if k not in prefer]
    try:
        t.start_client(timeout=timeout)
        # paramiko returns at the timeout with the key exchange unfinished; and a port that
        # accepts before sshd runs (a NAT, a booting guest behind a forwarder) can drop the
        # connection right after. Both are "not up yet", like a refused connection.
        if t.is_active() and not t.initial_kex_done:
            raise paramiko.SSHException(f"key exchange not finished within {timeout:g}s")
        t.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as e:
        t.close()
        raise Unreachable(f"{where}: SSH handshake failed ({e or type(e).__name__})", site=site) from None
    return t


def _authenticate(t: paramiko.Transport, user: str, pkey: paramiko.PKey, key_path: Path, where: str, site: str) -> None:
    import paramiko

    try:
        t.auth_publickey(user, pkey)
    except paramiko.AuthenticationException:
        t.close()
        raise SshAuthError(f"{where} refused the key {key_path} ({fingerprint(pkey)})", site=site,
                           hint="the node accepts the keys its context delivered") from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        t.close()
        raise Unreachable(f"{where}: authentication did not complete ({e or type(e).__name__})", site=site) from None


def _tcp(host: str, port: int, timeout: float, where: str, site: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise Unreachable(f"{where}: connection timed out", site=site) from None
    except OSError as e:
        raise Unreachable(f"{where}: {(e.strerror or type(e).__name__).lower()}", site=site) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(target: Target, key: KeySource, *, known_hosts: KnownHosts | None = None,
            console: ConsoleReader | None = None, accept_new_host_key: bool = False,
            timeout: float = CONNECT_TIMEOUT) -> Session:
    """Open an authenticated session: TCP (via the jump host), host key check, key auth."""
    import paramiko

    store = known_hosts or KnownHosts()
    site = target.node.site
    key_path, _ = split_key(key)
    pkey = load_private_key(key)
    jump_t: paramiko.Transport | None = None
    try:
        if target.jump:
            j = target.jump
            jwhere = f"jump host {j}"
            jump_t = _handshake(_tcp(j.host, j.port, timeout, jwhere, site), where=jwhere, site=site,
                                timeout=timeout, prefer=[k.get_name() for k in store.known(j.known_hosts_name)])
            check_host_key(store, j.known_hosts_name, jwhere, jump_t.get_remote_server_key(),
                           accept_new=accept_new_host_key, site=site)
            _authenticate(jump_t, j.user or getpass.getuser(), pkey, key_path, jwhere, site)
            try:
                sock: Any = jump_t.open_channel("direct-tcpip", (target.host, target.port), ("127.0.0.1", 0),
                                                timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise Unreachable(f"{target.where}: the jump host could not reach it ({e})", site=site) from None
        else:
            sock = _tcp(target.host, target.port, timeout, target.where, site)
        t = _handshake(sock, where=target.where, site=site, timeout=timeout,
                       prefer=[k.get_name() for k in store.known(target.alias)])
        try:
            check_host_key(store, target.alias, target.where, t.get_remote_server_key(),
                           console=(lambda: console(target.node)) if console else None,
                           accept_new=accept_new_host_key, site=site)
        except HostKeyError:
            t.close()
            raise
        _authenticate(t, target.user, pkey, key_path, target.where, site)
    except BaseException:
        if jump_t is not None:
            jump_t.close()
        raise
    return Session(target, t, jump_t)


@dataclass
class SshOptions:
    """What every connection of one command shares; it also tracks them, to cut them on Ctrl-C."""

    key: KeySource
    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    console: ConsoleReader | None = None
    accept_new_host_key: bool = False
    user: str | None = None
    timeout: float = CONNECT_TIMEOUT
    _sessions: set[Session] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cancelled: bool = field(default=False, repr=False)

    def timeout_for(self, site: SiteConfig) -> float:
        """The connect timeout for this site's nodes (its `ssh.connect_timeout`, else ours)."""
        return site.ssh.connect_timeout or self.timeout

    def open(self, node: Node, site: SiteConfig, *, timeout: float | None = None) -> Session:
        session = connect(target_for(node, site, user=self.user), self.key, known_hosts=self.known_hosts,
                          console=self.console, accept_new_host_key=self.accept_new_host_key,
                          timeout=self.timeout_for(site) if timeout is None else timeout)
        with self._lock:
            if self._cancelled:
                session.close()
                raise Interrupted("interrupted")
            self._sessions.add(session)
        session.on_close = self._forget
        return session

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def cancel(self) -> None:
        """Close every open session and refuse new ones (Ctrl-C)."""
        with self._lock:
            self._cancelled = True
            sessions = list(self._sessions)
        for s in sessions:
            s.interrupt()   # the remote commands stop, then their connections close
            s.close()
