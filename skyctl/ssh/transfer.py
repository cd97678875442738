"""Commands and copies on many nodes: fan-out (bounded, in node order), run/run_many, and
SFTP put/get/put_many.

paramiko is imported inside functions only (through skyctl.ssh.session).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from skyctl.errors import GuestError, NotFound, SkyError, Unreachable, UsageError
from skyctl.model import Node
from skyctl.ssh.session import Session, SshOptions

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

    from skyctl.site import SiteConfig

DEFAULT_PARALLEL = 16

OutputCallback = Callable[[Node, str, str], None]  # (node, "stdout"|"stderr", line without newline)

T = TypeVar("T")


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

# ---------------------------------------------------------------- fan-out and commands


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
        try:
            return [one(n) for n in nodes]
        except KeyboardInterrupt:
            if on_interrupt is not None:
                on_interrupt()
            raise
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
    written: list[str] = []
    try:
        if remote.endswith("/") and remote.strip("/"):
            _makedirs(sftp, remote)          # `cp f node:new/dir/`: the directory is made
        if remote in ("", ".") or remote.endswith("/") or _remote_isdir(sftp, remote):
            dest = str(PurePosixPath(remote or ".") / local.name)
        else:
            dest = remote
            _makedirs(sftp, str(PurePosixPath(remote).parent))   # as `mkdir -p` of its directory
    except OSError as e:
        raise _sftp_error(e, node, remote) from None
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


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """`mkdir -p path` over SFTP (missing parents first); existing directories are fine."""
    if path in ("", ".", "/") or _remote_isdir(sftp, path):
        return
    parent = str(PurePosixPath(path).parent)
    if parent != path:
        _makedirs(sftp, parent)
    try:
        sftp.mkdir(path)
    except OSError:
        if not _remote_isdir(sftp, path):   # made meanwhile by another copy: fine
            raise


def _check_entry_name(name: str, node: Node, rdir: str) -> None:
    """A directory entry from the node must be one ordinary name, never a path."""
    bad = (name in ("", ".", "..") or "/" in name or "\0" in name
           or os.sep in name or (os.altsep is not None and os.altsep in name))
    if bad:
        raise GuestError(f"{node.name}:{rdir}: the node sent the file name {name!r}, which is not a "
                         "plain name; refusing to copy it (the node may be compromised)", site=node.site)


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
    inside = dest.resolve()
    fetched: list[Path] = []

    def pull(rpath: str, lpath: Path, is_directory: bool) -> None:
        # The node names the files of a directory: a hostile one could send `../x` or `/x`
        # (scp's CVE-2019-6111), so each name is one plain component and stays under dest.
        if lpath.resolve() != inside and not lpath.resolve().is_relative_to(inside):
            raise GuestError(f"{node.name}:{rpath}: refusing to write {lpath}, outside {dest}", site=node.site)
        if is_directory:
            lpath.mkdir(parents=True, exist_ok=True)
            for entry in sorted(sftp.listdir_attr(rpath), key=lambda a: a.filename):
                _check_entry_name(entry.filename, node, rpath)
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


def read_text(node: Node, site: SiteConfig, remote: str, opts: SshOptions, *, limit: int = 16 << 20) -> str:
    """A text file of the node (its last `limit` bytes), read over SFTP; a file the login user
    may not read (cloud-init's log is root:adm 0640 on some images) is read with `sudo -n cat`."""
    import errno as errno_mod
    import shlex

    with opts.open(node, site) as s:
        sftp = s.sftp()
        try:
            with sftp.open(remote, "rb") as f:
                size = f.stat().st_size or 0
                if size > limit:
                    f.seek(size - limit)
                data = f.read()
            return data.decode("utf-8", "replace")
        except PermissionError:
            pass
        except OSError as e:
            if e.errno != errno_mod.EACCES:
                raise _sftp_error(e, node, remote) from None
        code, out, err = s.exec(f"sudo -n tail -c {limit} {shlex.quote(remote)}")
        if code != 0:
            raise GuestError(f"{node.name}:{remote}: permission denied, and sudo refused "
                             f"({' '.join(err.split()) or f'exit {code}'})", site=node.site)
        return out


def get_many(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], remote: str, local_dir: Path,
             opts: SshOptions, *, recursive: bool = False,
             parallel: int = DEFAULT_PARALLEL) -> list[list[Path] | SkyError]:
    """The same path from every node, each into its own `local_dir/<node name>/`."""
    def one(n: Node) -> list[Path]:
        _check_entry_name(n.name, n, ".")   # the node's name becomes a local directory
        into = Path(local_dir) / n.name
        into.mkdir(parents=True, exist_ok=True)
        return get(n, sites[n.site], remote, into, opts, recursive=recursive)

    return fan_out(nodes, one, parallel=parallel, on_interrupt=opts.cancel)


def put_many(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], local: Path, remote: str,
             opts: SshOptions, *, recursive: bool = False,
             parallel: int = DEFAULT_PARALLEL) -> list[list[str] | SkyError]:
    return fan_out(nodes, lambda n: put(n, sites[n.site], local, remote, opts, recursive=recursive),
                   parallel=parallel, on_interrupt=opts.cancel)
