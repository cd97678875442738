"""Pseudo-terminals for sandbox guests' SSH channels: `ssh NODE` (a login shell) and `ssh -t`
get a terminal as from sshd, so the shell prompts, line editing and job control work."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.sandbox.guest.server import Guest


class Pty:
    """A pseudo-terminal for one channel: the command's stdin, stdout and stderr, and its
    controlling terminal (so a shell prompts and job control works)."""

    def __init__(self, term: str, width: int, height: int) -> None:
        self.term, self.width, self.height = term, width, height
        self.master: int | None = None

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = max(1, width), max(1, height)
        if self.master is not None:
            _set_winsize(self.master, self.width, self.height)

    def run(self, argv: list[str], cwd: Path | None, env: dict[str, str], channel: paramiko.Channel,
            guest: Guest | Any, confine: Callable[..., Callable[[], None]] | None = None) -> int:
        import pty as ptymod

        master, slave = ptymod.openpty()
        _set_winsize(master, self.width, self.height)
        self.master = master
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                    start_new_session=True,
                                    preexec_fn=confine(_take_terminal) if confine else _take_terminal)
        except OSError as e:
            os.close(slave)
            os.close(master)
            self.master = None
            channel.sendall_stderr(f"sh: {e.strerror}\n".encode())
            return 127
        os.close(slave)
        with guest.lock:
            guest.procs.add(proc)
        threading.Thread(target=_feed_pty, args=(channel, master), daemon=True, name="ssh-pty-in").start()
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:   # EIO: every holder of the terminal's other side has gone
                    break
                if not data:
                    break
                try:
                    channel.sendall(data)
                except (OSError, EOFError):
                    pass
            rc = proc.wait()
        finally:
            with guest.lock:
                guest.procs.discard(proc)
            self.master = None
            os.close(master)
        return rc if rc >= 0 else 128 - rc


def _take_terminal() -> None:
    """In the child, after setsid: make its stdin (the pty) the controlling terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_winsize(fd: int, width: int, height: int) -> None:
    import fcntl
    import struct
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    except OSError:
        pass


def _feed_pty(channel: paramiko.Channel, master: int) -> None:
    try:
        while True:
            data = channel.recv(32768)
            if not data:
                break
            os.write(master, data)
    except (OSError, EOFError):
        pass
