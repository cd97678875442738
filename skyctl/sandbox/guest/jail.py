"""The file system a default sandbox VM's commands see: the VM's directory as `/`.

SFTP (`skyctl cp`) is rooted in the VM's directory; so are `exec` and `ssh` when this host
lets the sandbox make a mount namespace (it runs as root): each command starts in a private
mount namespace, `chroot`ed into the VM's directory, with this host's programs (`/usr`, and
the `bin`/`lib` links merged-/usr systems have) and `/etc/alternatives` bound read-only, `/dev`
and `/proc` bound in, the sandbox's guest tools at `/.sandbox/bin`, and a few files of `/etc`
(users, groups, name service) copied in once. So `/etc/hostname` is the VM's for `exec`,
`ssh` and `cp` alike, and a command cannot write outside the VM's directory through `/`.
Without that privilege commands run in the VM's directory as before (relative paths agree,
absolute ones are this host's); `available()` tells which.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18

GUEST_BIN = ".sandbox/bin"     # where the guest tools appear inside the VM
ETC_COPIES = ("passwd", "group", "nsswitch.conf", "hosts", "resolv.conf", "ld.so.cache", "localtime")
TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PATH = f"/{GUEST_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc: ctypes.CDLL | None = None
_available: bool | None = None
_preparing = threading.Lock()   # two commands at once on a new VM prepare it once


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        _libc.unshare.argtypes = [ctypes.c_int]
    return _libc


def available() -> bool:
    """True when commands can be confined: root on Linux with mount namespaces."""
    global _available
    if _available is None:
        _available = (os.name == "posix" and hasattr(os, "geteuid") and os.geteuid() == 0
                      and Path("/proc/self/ns/mnt").exists()
                      and os.environ.get("SKYCTL_SANDBOX_NO_JAIL") != "1")
        if _available:
            try:
                _lib()
            except OSError:
                _available = False
    return _available


def prepare(root: Path, bin_dir: Path) -> None:
    """Mount points, links and /etc copies inside the VM's directory (once per VM, however
    many commands start at once: two racing ones met a link the other had just made)."""
    with _preparing:
        _prepare(root, bin_dir)


def _prepare(root: Path, bin_dir: Path) -> None:
    marker = root / ".sandbox" / "prepared"
    if marker.exists():
        return
    for d in ("usr", "dev", "proc", "etc/alternatives", GUEST_BIN, "root", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    for name in TOP_LINKS:
        host = Path("/") / name
        mine = root / name
        if host.is_symlink() and not mine.exists() and not mine.is_symlink():
            with contextlib.suppress(FileExistsError):   # another sandbox process made it
                mine.symlink_to(os.readlink(host))
        elif host.is_dir() and not host.is_symlink():
            mine.mkdir(exist_ok=True)
    for name in ETC_COPIES:
        src, dst = Path("/etc") / name, root / "etc" / name
        if src.exists() and not dst.exists():
            try:
                shutil.copyfile(src, dst, follow_symlinks=True)
            except OSError:
                pass
    marker.write_text("")


def binds(root: Path, bin_dir: Path) -> list[tuple[bytes, bytes, bool]]:
    """(source, target inside root, read-only) for every bind mount a command needs."""
    out: list[tuple[bytes, bytes, bool]] = [(b"/usr", b"usr", True), (b"/etc/alternatives", b"etc/alternatives", True),
                                            (b"/dev", b"dev", False), (b"/proc", b"proc", False),
                                            (str(bin_dir).encode(), GUEST_BIN.encode(), True)]
    for name in TOP_LINKS:
        host = Path("/") / name
        if host.is_dir() and not host.is_symlink():
            out.append((str(host).encode(), name.encode(), True))
    return [(src, str(root).encode() + b"/" + dst, ro) for src, dst, ro in out if os.path.exists(src)]


def confine(root: Path, bin_dir: Path, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A `preexec_fn`: a private mount namespace, the binds, chroot into `root`, cwd `/`.
    Everything it calls is prepared here, in the parent: the child only makes system calls."""
    libc = _lib()
    plan = binds(root, bin_dir)
    root_b = str(root).encode()

    def fail(what: str) -> None:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")

    def child() -> None:
        if libc.unshare(CLONE_NEWNS) != 0:
            fail("unshare")
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            fail("mount --make-rprivate /")
        for src, dst, ro in plan:
            if libc.mount(src, dst, None, MS_BIND | MS_REC, None) != 0:
                fail(f"bind {src.decode()}")
            if ro and libc.mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) != 0:
                fail(f"read-only {src.decode()}")
        os.chroot(root_b)
        os.chdir("/")
        if then is not None:
            then()

    return child
