"""The SFTP server of a sandbox VM, rooted in the VM's directory: `/` and `.` are that
directory, so relative paths agree with the shell's, and nothing outside it is reachable."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
from paramiko.sftp import SFTP_OK, SFTP_PERMISSION_DENIED


def set_attributes(path: str, attr: paramiko.SFTPAttributes) -> None:
    """SETSTAT/FSETSTAT as sshd's sftp-server does them. Not paramiko's helper: it truncates a
    file to zero before resizing it, so OpenSSH's scp (which sets the size after writing the
    data, "truncating at N") would leave N zero bytes."""
    if attr._flags & attr.FLAG_PERMISSIONS:
        os.chmod(path, attr.st_mode)
    if attr._flags & attr.FLAG_UIDGID:
        os.chown(path, attr.st_uid, attr.st_gid)
    if attr._flags & attr.FLAG_AMTIME:
        os.utime(path, (attr.st_atime, attr.st_mtime))
    if attr._flags & attr.FLAG_SIZE:
        os.truncate(path, attr.st_size)


class _SftpHandle(paramiko.SFTPHandle):
    def stat(self) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        try:
            set_attributes(self.filename, attr)
            return SFTP_OK
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)


class GuestSftpServer(paramiko.SFTPServer):
    """paramiko's SFTP subsystem, ending its channel as OpenSSH's sshd does: with exit status 0.

    OpenSSH's scp (SFTP mode, the default since 9.0) fails a copy whose session ended without
    an exit status ("Exit status -1"), although every byte arrived.
    """

    def finish_subsystem(self) -> None:
        try:
            self.sock.send_exit_status(0)
        except (OSError, EOFError):
            pass  # the client is gone already
        super().finish_subsystem()


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
                set_attributes(local, attr)
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
                set_attributes(local, attr)
            return SFTP_OK
        return self._do(go)

    def rmdir(self, path: str) -> Any:
        return self._do(lambda: (os.rmdir(self._local(path)), SFTP_OK)[1])

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> Any:
        return self._do(lambda: (set_attributes(self._local(path), attr), SFTP_OK)[1])

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
