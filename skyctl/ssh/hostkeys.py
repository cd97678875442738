"""Host keys: skyctl's known-hosts file, the per-node alias, and cloud-init's console fingerprints.

Host keys live in skyctl's own known-hosts file (state dir, 0600, OpenSSH format) under a
per-node alias, `<node id>.<site>.skyctl`, not under the address: clouds hand a deleted VM's
address to the next one (and the sandbox does on every restart), so an address-keyed entry
would refuse every rebuilt node, teaching users to ignore the warning. Keyed by node, a
changed key really means the same VM now shows another key. The system `ssh` is pointed at
the same entry with `-o HostKeyAlias=`. Trust: the first key seen is recorded (TOFU), unless
the cloud's console log carries cloud-init's host-key fingerprints, which the key must match.
paramiko is imported inside functions only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from skyctl.errors import HostKeyChanged, HostKeyNotInConsole
from skyctl.keys import fingerprint, md5_fingerprint
from skyctl.model import Node

if TYPE_CHECKING:  # pragma: no cover
    import paramiko


def host_key_alias(node: Node) -> str:
    """The known-hosts name of a node: stable for the VM, never reused by another one."""
    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9-]", "-", s)
    return f"{clean(node.id)}.{clean(node.site)}.skyctl"


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
            found |= {fingerprint(blob), md5_fingerprint(blob)}
    if block is None and keys is None:
        return None
    return found


def key_matches_console(key: paramiko.PKey, listed: set[str]) -> bool:
    blob = key.asbytes()
    return fingerprint(blob) in listed or md5_fingerprint(blob) in listed


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
