"""Into the VMs over SSH: host keys, commands on many nodes, SFTP copies, readiness.

paramiko is imported inside functions only, so `skyctl --help` never pays for it.

Host keys live in skyctl's own known-hosts file (state dir, 0600, OpenSSH format) under a
per-node alias, `<node id>.<site>.skyctl`, not under the address: clouds hand a deleted VM's
address to the next one (and the sandbox does on every restart), so an address-keyed entry
would refuse every rebuilt node, teaching users to ignore the warning. Keyed by node, a
changed key really means the same VM now shows another key. The system `ssh` is pointed at
the same entry with `-o HostKeyAlias=`. Trust: the first key seen is recorded (TOFU), unless
the cloud's console log carries cloud-init's host-key fingerprints, which the key must match.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import getpass
import hashlib
import os
import re
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from skyctl.errors import AuthError, DriverTimeout, NotFound, SkyError, Transient, UsageError
from skyctl.model import L_USER, Capability, Node, NodeState

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

    from skyctl.site import SiteConfig

DEFAULT_USER = "cloud-user"
CONNECT_TIMEOUT = 10.0
DEFAULT_PARALLEL = 16

# Where a node stands on its way to ready, in order.
STAGE_ADDRESS, STAGE_SSH, STAGE_CONTEXT, STAGE_READY = "address", "ssh", "context", "ready"

KeySource = Path | tuple[Path, str]          # a private key path, or default_ssh_key()'s pair
ConsoleReader = Callable[[Node], str | None]  # a node's console log, None where the cloud has none
OutputCallback = Callable[[Node, str, str], None]  # (node, "stdout"|"stderr", line without newline)

T = TypeVar("T")


# ---------------------------------------------------------------- errors


class HostKeyError(SkyError):
    """A node presented a host key that skyctl must not trust."""


class HostKeyChanged(HostKeyError):
    pass


class HostKeyNotInConsole(HostKeyError):
    pass


class SshAuthError(AuthError):
    """The node (or jump host) refused the key."""


class Unreachable(Transient):
    """No SSH session could be opened: no address, refused, timed out, handshake failed."""


class ContextFailed(SkyError):
    """The node's contextualisation finished with errors (cloud-init status: error)."""


class NotReady(DriverTimeout):
    """wait_ready gave up; `.ready` and `.failures` say which nodes made it and which did not."""

    ready: list[Node]
    failures: dict[str, SkyError]


# ---------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class Jump:
    user: str | None
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.port}" if self.port != 22 else f"{user}{host}"

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_jump(spec: str, *, path: str = "ssh.jump_host") -> Jump:
    """'user@host[:port]' (IPv6 as [addr]:port) -> Jump."""
    from skyctl.errors import ConfigError

    user, _, hostport = spec.strip().rpartition("@")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?", hostport)
    if not m or (user and not re.fullmatch(r"[A-Za-z0-9._-]+", user)):
        raise ConfigError(f"not a jump host: {spec!r} (expected user@host[:port])", path=path)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 22)
    if not 0 < port < 65536:
        raise ConfigError(f"port out of range in {spec!r}", path=path)
    return Jump(user or None, host, port)


def host_key_alias(node: Node) -> str:
    """The known-hosts name of a node: stable for the VM, never reused by another one."""
    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9-]", "-", s)
    return f"{clean(node.id)}.{clean(node.site)}.skyctl"


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in to one node."""

    node: Node
    host: str
    port: int
    user: str
    jump: Jump | None = None

    @property
    def alias(self) -> str:
        return host_key_alias(self.node)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        via = f" via {self.jump}" if self.jump else ""
        return f"{self.node.name} ({self.user}@{host}:{self.port}{via})"


def target_for(node: Node, site: SiteConfig, *, user: str | None = None) -> Target:
    if not node.addresses:
        raise Unreachable(f"{node.name} has no address yet", site=node.site)
    ssh = site.ssh
    jump = parse_jump(ssh.jump_host, path=f"sites.{site.name}.ssh.jump_host") if ssh.jump_host else None
    # The user the node's own context created beats the site's generic one.
    login = user or node.labels.get(L_USER) or ssh.user or DEFAULT_USER
    return Target(node, node.addresses[0], ssh.port, login, jump)


def fingerprint(key: paramiko.PKey | bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (or its wire blob)."""
    blob = key if isinstance(key, bytes) else key.asbytes()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _md5_fingerprint(blob: bytes) -> str:
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i:i + 2] for i in range(0, 32, 2))


_FP_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
_FP_END = "-----END SSH HOST KEY FINGERPRINTS-----"
_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
_KEYS_END = "-----END SSH HOST KEY KEYS-----"
_SHA_RE = re.compile(r"SHA256:([A-Za-z0-9+/]{43})")
_MD5_RE = re.compile(r"(?<![0-9a-f:])((?:[0-9a-f]{2}:){15}[0-9a-f]{2})(?![0-9a-f:])")
_KEY_LINE_RE = re.compile(r"\b(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})")


def _last_block(text: str, begin: str, end: str) -> str | None:
    start = text.rfind(begin)
    if start < 0:
        return None
    stop = text.find(end, start)
    return text[start + len(begin): stop if stop >= 0 else len(text)]


def console_fingerprints(text: str | None) -> set[str] | None:
    """Host-key fingerprints cloud-init printed on the console ("SHA256:..." / "MD5:aa:..").

    None when the log has no such block (not printed yet, or an image that does not print it).
    The last block counts: it belongs to the latest boot.
    """
    if not text:
        return None
    found: set[str] = set()
    block = _last_block(text, _FP_BEGIN, _FP_END)
    if block is not None:
        found |= {f"SHA256:{m}" for m in _SHA_RE.findall(block)}
        found |= {f"MD5:{m}" for m in _MD5_RE.findall(block)}
    keys = _last_block(text, _KEYS_BEGIN, _KEYS_END)
    if keys is not None:
        for _, b64 in _KEY_LINE_RE.findall(keys):
            try:
                blob = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                continue
            found |= {fingerprint(blob), _md5_fingerprint(blob)}
    if block is None and keys is None:
        return None
    return found


def key_matches_console(key: paramiko.PKey, listed: set[str]) -> bool:
    blob = key.asbytes()
    return fingerprint(blob) in listed or _md5_fingerprint(blob) in listed


def cloud_init_state(exit_code: int, stdout: str, stderr: str) -> str:
    """'done', 'error', 'absent' (no cloud-init on the image), or what to keep waiting on."""
    m = re.search(r"^\s*status:\s*([a-z][a-z ]*?)\s*$", stdout, re.MULTILINE)
    if m:
        status = m.group(1)
        if status in ("done", "disabled"):  # disabled: nothing will run, nothing to wait for
            return "done"
        return "error" if status == "error" else status
    if exit_code == 127 or "not found" in stderr:
        return "absent"
    first = (stdout.strip() or stderr.strip() or f"exit {exit_code}").splitlines()[0]
    return f"unknown ({first[:60]})"


def ssh_command(target: Target, key_path: Path, known_hosts: Path, command: Sequence[str] = ()) -> list[str]:
    """argv for the system ssh, pinned to skyctl's known-hosts entry for this node."""
    argv = ["ssh", "-i", str(key_path), "-p", str(target.port),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={target.alias}",
            "-o", "CheckHostIP=no",
            "-l", target.user]
    if target.jump:
        argv += ["-J", str(target.jump)]
    argv.append(target.host)
    if command:
        argv += ["--", *command]
    return argv


def remote_command(args: Sequence[str]) -> str:
    """Words after `--` joined the way OpenSSH does: the remote shell parses them."""
    return " ".join(args)


def split_location(arg: str) -> tuple[str | None, str]:
    """'NAME:PATH' -> (NAME, PATH); a local path (no colon before the first slash) -> (None, arg)."""
    head, sep, tail = arg.partition(":")
    if sep and head and "/" not in head and not head.startswith("."):
        return head, tail
    return None, arg


# ---------------------------------------------------------------- known hosts


class KnownHosts:
    """skyctl's known-hosts file (OpenSSH format, 0600). Safe across threads and processes.

    Parsed once and re-read only when another process changed it; a new key is appended, so
    the first connection to 1000 fresh nodes does not rewrite the file 1000 times.
    """

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from skyctl.paths import state_dir

            path = state_dir() / "known_hosts"
        self.path = path
        self._lock = threading.Lock()
        self._keys: paramiko.HostKeys | None = None
        self._seen: tuple[int, int, int] | None = None

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _current(self) -> paramiko.HostKeys:
        import paramiko

        sig = self._signature()
        if self._keys is None or sig != self._seen:
            keys = paramiko.HostKeys()
            if sig is not None:
                keys.load(str(self.path))
            self._keys, self._seen = keys, sig
        return self._keys

    def known(self, name: str) -> list[paramiko.PKey]:
        with self._lock:
            entry = self._current().lookup(name)
        return list(entry.values()) if entry else []

    def record(self, name: str, key: paramiko.PKey, *, replace: bool = False) -> None:
        import fcntl

        from skyctl.paths import private_dir

        private_dir(self.path.parent)
        with self._lock:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # another skyctl may be recording at the same time
                keys = self._current()
                if replace:
                    while keys.lookup(name):
                        del keys[name]
                    keys.add(name, key.get_name(), key)
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # 0600 from the start
                    keys.save(str(tmp))
                    os.replace(tmp, self.path)
                else:
                    out = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                    try:
                        os.fchmod(out, 0o600)
                        size = os.fstat(out).st_size
                        glue = b"\n" if size and os.pread(out, 1, size - 1) != b"\n" else b""
                        os.write(out, glue + f"{name} {key.get_name()} {key.get_base64()}\n".encode())
                    finally:
                        os.close(out)
                    keys.add(name, key.get_name(), key)
                self._seen = self._signature()
            finally:
                os.close(fd)


def check_host_key(store: KnownHosts, name: str, what: str, key: paramiko.PKey, *,
                   console: Callable[[], str | None] | None = None, accept_new: bool = False,
                   site: str | None = None) -> None:
    """Trust `key` for `name` or raise HostKeyError. Records it when it is new (or replaced)."""
    known = store.known(name)
    presented = fingerprint(key)
    if any(k.asbytes() == key.asbytes() for k in known):
        return
    if known and not accept_new:
        old = ", ".join(sorted({fingerprint(k) for k in known}))
        raise HostKeyChanged(
            f"host key of {what} changed: recorded {old}, presented {presented}; refusing to connect",
            site=site, hint="if the node was rebuilt, pass --accept-new-host-key to replace it")
    listed = console_fingerprints(console()) if console else None
    if listed is not None and not key_matches_console(key, listed):
        shown = ", ".join(sorted(f for f in listed if f.startswith("SHA256:"))) or ", ".join(sorted(listed))
        raise HostKeyNotInConsole(
            f"host key of {what} is {presented}, but its console log lists {shown or 'no usable fingerprint'}; "
            "refusing to trust it", site=site)
    store.record(name, key, replace=bool(known))


# ---------------------------------------------------------------- keys


_key_cache: dict[tuple[str, float], Any] = {}
_key_lock = threading.Lock()


def _split_key(key: KeySource) -> tuple[Path, str | None]:
    if isinstance(key, tuple):
        return Path(key[0]), key[1]
    return Path(key), None


def load_private_key(key: KeySource) -> paramiko.PKey:
    """The private key (cached); an encrypted one is taken from the ssh-agent if it holds it."""
    import paramiko

    path, public = _split_key(key)
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
        pub_file = path.with_name(path.name + ".pub")
        public = pub_file.read_text().strip() if pub_file.exists() else ""
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


@dataclass
class ExecResult:
    node: Node
    exit_code: int | None          # None: the command never ran (node unreachable)
    stdout: str = ""
    stderr: str = ""
    error: SkyError | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node.name, "exit_code": self.exit_code, "stdout": self.stdout,
                "stderr": self.stderr, "error": self.error.line() if self.error else None}


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
        try:
            chan.exec_command(command)
            chan.shutdown_write()  # no stdin: commands that read it see end of file
        except (paramiko.SSHException, OSError, EOFError) as e:
            # Some servers run a quick command and close the channel before answering the exec
            # request; its output and exit status have still arrived, so the result stands.
            if not (chan.exit_status_ready() and chan.exit_status != -1):
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
                    raise DriverTimeout(f"{self.target.where}: command still running after {timeout:g}s",
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
        finally:
            chan.close()
        return code, out.close(), err.close()

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
    key_path, _ = _split_key(key)
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


def console_reader(sky: Any) -> ConsoleReader:
    """Console logs through a Sky's drivers, for the sites that offer them (OpenStack)."""
    from skyctl.errors import DriverError

    def read(node: Node) -> str | None:
        try:
            driver = sky.driver(node.site)
            if Capability.CONSOLE_LOG not in driver.capabilities:
                return None
            return driver.console_log(node.id)
        except DriverError:
            return None  # no console today: fall back to trusting the first key

    return read


# ---------------------------------------------------------------- fan-out


def fan_out(nodes: Sequence[Node], fn: Callable[[Node], T], *, parallel: int = DEFAULT_PARALLEL,
            on_interrupt: Callable[[], None] | None = None) -> list[T | SkyError]:
    """fn(node) on every node, at most `parallel` at once; a node's SkyError is returned, in order.

    On Ctrl-C, `on_interrupt` runs (closing the sessions unblocks the workers) before re-raising.
    """

    def one(node: Node) -> T | SkyError:
        try:
            return fn(node)
        except SkyError as e:
            if e.site is None:
                e.site = node.site
            return e
        except OSError as e:
            return Unreachable(f"{node.name}: {e.strerror or type(e).__name__}", site=node.site)

    if len(nodes) <= 1:
        return [one(n) for n in nodes]
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes))), thread_name_prefix="ssh")
    try:
        futures = [pool.submit(one, n) for n in nodes]
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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

    def open(self, node: Node, site: SiteConfig, *, timeout: float | None = None) -> Session:
        from skyctl.errors import Interrupted

        session = connect(target_for(node, site, user=self.user), self.key, known_hosts=self.known_hosts,
                          console=self.console, accept_new_host_key=self.accept_new_host_key,
                          timeout=self.timeout if timeout is None else timeout)
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
            s.close()


def run(node: Node, site: SiteConfig, command: str, opts: SshOptions, *,
        on_output: OutputCallback | None = None, timeout: float | None = None) -> ExecResult:
    """Run a command on one node. A node that cannot be reached raises (see run_many)."""
    on_line = (lambda stream, line: on_output(node, stream, line)) if on_output else None
    with opts.open(node, site) as s:
        code, out, err = s.exec(command, on_line=on_line, timeout=timeout)
    return ExecResult(node, code, out, err)


def run_many(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], command: str, opts: SshOptions, *,
             parallel: int = DEFAULT_PARALLEL, on_output: OutputCallback | None = None,
             timeout: float | None = None) -> list[ExecResult]:
    """The command on every node at once (bounded); unreachable nodes come back with `error` set."""
    results = fan_out(nodes, lambda n: run(n, sites[n.site], command, opts, on_output=on_output,
                                           timeout=timeout), parallel=parallel, on_interrupt=opts.cancel)
    return [r if isinstance(r, ExecResult) else ExecResult(n, None, error=r) for n, r in zip(nodes, results)]


# ---------------------------------------------------------------- SFTP


def _sftp_error(e: OSError, node: Node, path: str) -> SkyError:
    import errno as errno_mod

    if e.errno == errno_mod.ENOENT or isinstance(e, FileNotFoundError):
        return NotFound(f"{node.name}:{path}: no such file or directory", site=node.site)
    reason = e.strerror or (str(e) if str(e) else type(e).__name__)
    return SkyError(f"{node.name}:{path}: {reason}", site=node.site)


def _remote_isdir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path or ".").st_mode or 0)
    except OSError:
        return False


def _put_session(s: Session, local: Path, remote: str, recursive: bool) -> list[str]:
    sftp = s.sftp()
    node = s.target.node
    if local.is_dir() and not recursive:
        raise UsageError(f"{local} is a directory (use -r)")
    if not local.exists():
        raise NotFound(f"{local}: no such file or directory")
    if remote in ("", ".") or remote.endswith("/") or _remote_isdir(sftp, remote):
        dest = str(PurePosixPath(remote or ".") / local.name)
    else:
        dest = remote
    written: list[str] = []
    try:
        if local.is_dir():
            for dirpath, dirnames, filenames in os.walk(local):
                rel = Path(dirpath).relative_to(local)
                rdir = str(PurePosixPath(dest, *rel.parts))
                if not _remote_isdir(sftp, rdir):
                    sftp.mkdir(rdir)
                dirnames.sort()
                for f in sorted(filenames):
                    rpath = str(PurePosixPath(rdir, f))
                    sftp.put(str(Path(dirpath) / f), rpath)
                    sftp.chmod(rpath, (Path(dirpath) / f).stat().st_mode & 0o777)
                    written.append(rpath)
        else:
            sftp.put(str(local), dest)
            sftp.chmod(dest, local.stat().st_mode & 0o777)
            written.append(dest)
    except OSError as e:
        raise _sftp_error(e, node, dest) from None
    return written


def _get_session(s: Session, remote: str, local: Path, recursive: bool) -> list[Path]:
    sftp = s.sftp()
    node = s.target.node
    try:
        attrs = sftp.stat(remote or ".")
    except OSError as e:
        raise _sftp_error(e, node, remote) from None
    is_dir = stat.S_ISDIR(attrs.st_mode or 0)
    if is_dir and not recursive:
        raise UsageError(f"{node.name}:{remote} is a directory (use -r)")
    name = PurePosixPath(remote).name or node.name
    dest = local / name if local.is_dir() or str(local).endswith(os.sep) else local
    fetched: list[Path] = []

    def pull(rpath: str, lpath: Path, is_directory: bool) -> None:
        if is_directory:
            lpath.mkdir(parents=True, exist_ok=True)
            for entry in sorted(sftp.listdir_attr(rpath), key=lambda a: a.filename):
                pull(str(PurePosixPath(rpath, entry.filename)), lpath / entry.filename,
                     stat.S_ISDIR(entry.st_mode or 0))
        else:
            lpath.parent.mkdir(parents=True, exist_ok=True)
            sftp.get(rpath, str(lpath))
            fetched.append(lpath)

    try:
        pull(remote or ".", dest, is_dir)
    except OSError as e:
        raise _sftp_error(e, node, remote) from None
    return fetched


def put(node: Node, site: SiteConfig, local: Path, remote: str, opts: SshOptions, *,
        recursive: bool = False) -> list[str]:
    """Copy a local file (or directory with recursive) to the node; returns the remote paths."""
    with opts.open(node, site) as s:
        return _put_session(s, Path(local), remote, recursive)


def get(node: Node, site: SiteConfig, remote: str, local: Path, opts: SshOptions, *,
        recursive: bool = False) -> list[Path]:
    """Copy a file (or directory with recursive) from the node; returns the local paths."""
    with opts.open(node, site) as s:
        return _get_session(s, remote, Path(local), recursive)


def put_many(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], local: Path, remote: str,
             opts: SshOptions, *, recursive: bool = False,
             parallel: int = DEFAULT_PARALLEL) -> list[list[str] | SkyError]:
    return fan_out(nodes, lambda n: put(n, sites[n.site], local, remote, opts, recursive=recursive),
                   parallel=parallel, on_interrupt=opts.cancel)


# ---------------------------------------------------------------- readiness


@dataclass
class _Progress:
    node: Node
    deadline: float
    timeout: float
    stage: str = STAGE_ADDRESS
    problem: str | None = None
    session: Session | None = None
    error: SkyError | None = None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def _step(p: _Progress, sites: Mapping[str, SiteConfig], opts: SshOptions, keep_open: bool,
          report: Callable[[_Progress], None]) -> None:
    """Move one node as far as it can go now; never blocks past its deadline."""
    node = p.node
    # a probe near the deadline still gets a fair chance (a loaded host handshakes slowly)
    remaining = lambda: max(2.0, p.deadline - time.monotonic())  # noqa: E731
    if p.stage == STAGE_ADDRESS:
        if not node.addresses:
            p.problem = "no address yet"
            return
        p.stage = STAGE_SSH
        report(p)
    if p.stage in (STAGE_SSH, STAGE_CONTEXT) and p.session is None:
        try:
            p.session = opts.open(node, sites[node.site], timeout=min(opts.timeout, remaining()))
        except (Unreachable, SshAuthError) as e:
            p.problem = _without_where(e.message, node)  # sshd not up, or the key not there yet: retry
            return
        if p.stage == STAGE_SSH:
            p.stage, p.problem = STAGE_CONTEXT, None
            report(p)
    if p.stage == STAGE_CONTEXT and p.session is not None:
        try:
            code, out, err = p.session.exec("cloud-init status", timeout=min(30.0, remaining()))
        except (Unreachable, DriverTimeout) as e:
            p.close()
            p.stage, p.problem = STAGE_SSH, _without_where(e.message, node)  # lost it (a reboot?)
            report(p)
            return
        state = cloud_init_state(code, out, err)
        if state in ("done", "absent"):  # absent: an image without cloud-init is ready once SSH works
            p.stage, p.problem = STAGE_READY, None
            p.close()
        elif state == "error":
            p.close()
            raise ContextFailed(f"{node.name}: its context failed (cloud-init status: error); "
                                f"see 'skyctl ssh {node.name} -- cloud-init status --long'", site=node.site)
        else:
            p.problem = f"cloud-init status: {state}"
            if not keep_open:
                p.close()  # reconnects on its next turn, still at the context stage


def _without_where(message: str, node: Node) -> str:
    """'web-0 (cloud-user@10.0.0.5:22): connection refused' -> 'connection refused'."""
    head, sep, rest = message.partition("): ")
    return rest if sep and head.startswith(f"{node.name} (") else message


def wait_ready(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], opts: SshOptions, *,
               timeout_for: Callable[[str], float] | None = None, reporter: Any = None,
               refresh: Callable[[list[Node]], list[Node]] | None = None, poll: float = 1.0,
               parallel: int = 32, hold_connections: int = 64) -> list[Node]:
    """Wait until every node is ready: address -> ssh (TCP + auth with the key) -> context
    (cloud-init status: done) -> ready. Per-site timeouts (site.ready_timeout by default).

    Raises NotReady (a DriverTimeout naming each stuck node and its stage), ContextFailed, or a
    HostKeyError; the error carries `.ready` and `.failures` for callers that go on partially.
    Up to `hold_connections` waiting nodes keep their SSH session between polls; beyond that
    each poll reconnects, so a big group does not hold a connection and a thread per node.
    """
    start = time.monotonic()
    timeouts = {s: (timeout_for(s) if timeout_for else sites[s].ready_timeout) for s in {n.site for n in nodes}}
    progress = [_Progress(n, start + timeouts[n.site], timeouts[n.site]) for n in nodes]
    reported: dict[str, str] = {}
    lock = threading.Lock()

    def report(p: _Progress) -> None:
        with lock:
            _report(p)

    def _report(p: _Progress) -> None:
        if reporter is not None and reported.get(p.node.name) != p.stage:
            reported[p.node.name] = p.stage
            if p.stage == STAGE_READY:
                reporter.node_ready(p.node)
            else:
                reporter.node_stage(p.node, p.stage)

    for p in progress:
        report(p)
    pending = list(progress)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes))), thread_name_prefix="wait") as pool:
            while pending:
                if refresh is not None:
                    _refresh_addresses(pending, refresh)
                keep_open = len(pending) <= hold_connections

                def one(p: _Progress) -> None:
                    try:
                        _step(p, sites, opts, keep_open, report)
                    except SkyError as e:
                        p.error = e
                        p.close()

                try:
                    list(pool.map(one, pending))
                except KeyboardInterrupt:
                    opts.cancel()
                    raise
                now = time.monotonic()
                still: list[_Progress] = []
                for p in pending:
                    report(p)
                    if p.error is not None or p.stage == STAGE_READY:
                        continue
                    if now >= p.deadline:
                        p.close()
                        why = f" ({p.problem})" if p.problem else ""
                        p.error = DriverTimeout(f"{p.node.name} stuck at stage '{p.stage}'{why}", site=p.node.site)
                        continue
                    still.append(p)
                pending = still
                if pending:
                    # One probe per node per round; big groups poll less often to stay cheap.
                    nap = max(poll, 0.02 * len(pending))
                    time.sleep(max(0.0, min(nap, min(p.deadline for p in pending) - time.monotonic())))
    finally:
        for p in progress:
            p.close()
    failures = {p.node.name: p.error for p in progress if p.error is not None}
    ready = [p.node for p in progress if p.stage == STAGE_READY]
    if failures:
        raise _not_ready(progress, failures, ready, timeouts)
    return ready


def _refresh_addresses(pending: list[_Progress], refresh: Callable[[list[Node]], list[Node]]) -> None:
    lacking = [p for p in pending if p.stage == STAGE_ADDRESS and not p.node.addresses]
    if not lacking:
        return
    try:
        fresh = {(n.site, n.id): n for n in refresh([p.node for p in lacking])}
    except SkyError as e:
        for p in lacking:
            p.problem = e.line()
        return
    for p in lacking:
        n = fresh.get((p.node.site, p.node.id))
        if n is None:
            p.error = NotFound(f"{p.node.name} disappeared while waiting for it", site=p.node.site)
        elif n.state is NodeState.ERROR:
            p.error = ContextFailed(f"{p.node.name} went to state error", site=p.node.site)
        else:
            p.node = n


def _not_ready(progress: list[_Progress], failures: dict[str, SkyError], ready: list[Node],
               timeouts: Mapping[str, float]) -> SkyError:
    hard = [e for e in failures.values() if not isinstance(e, DriverTimeout)]
    if hard:
        err: SkyError = hard[0]
        if len(failures) > 1:
            err.message += f" (and {len(failures) - 1} more node(s) not ready)"
    else:
        by_site: dict[str, list[str]] = {}
        for p in progress:
            if p.node.name in failures:
                by_site.setdefault(p.node.site, []).append(failures[p.node.name].message)
        parts = []
        for site, lines in by_site.items():
            shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
            parts.append(f"{site}: {shown}: not ready after {timeouts[site]:g}s (sites.{site}.ready_timeout)")
        first = next(iter(by_site))
        msg = " | ".join(parts)
        err = NotReady(msg.removeprefix(f"{first}: ") if len(parts) == 1 else msg, site=first)
    err.ready = ready  # type: ignore[attr-defined]
    err.failures = failures  # type: ignore[attr-defined]
    return err
