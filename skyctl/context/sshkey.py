"""The SSH key every context delivers: the user's own, else a skyctl key pair made once."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

USER_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
SKYCTL_KEY = "id_ed25519"
_lock = threading.Lock()


def _user_key() -> tuple[Path, str] | None:
    ssh = Path.home() / ".ssh"
    for name in USER_KEYS:
        pub = ssh / f"{name}.pub"
        try:
            text = pub.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return ssh / name, text.splitlines()[0].strip()
    return None


def skyctl_key_dir() -> Path:
    from skyctl.paths import data_dir, private_dir

    return private_dir(data_dir() / "ssh")


def _generate(private: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from skyctl.paths import write_private

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    comment = f"skyctl@{socket.gethostname() or 'localhost'}"
    # the public half last: its presence means the pair is complete
    write_private(private, pem)
    write_private(private.with_name(private.name + ".pub"), pub + f" {comment}\n".encode())


def skyctl_key() -> tuple[Path, str]:
    """skyctl's own key pair in the data dir, created on first use (dir 0700, private key 0600)."""
    folder = skyctl_key_dir()
    private = folder / SKYCTL_KEY
    public = folder / f"{SKYCTL_KEY}.pub"
    with _lock:
        import fcntl

        fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two launches at once still make one key
            if not (public.is_file() and private.is_file()):
                _generate(private)
        finally:
            os.close(fd)
    return private, public.read_text(encoding="utf-8").strip()


def default_ssh_key() -> tuple[Path, str]:
    """(private key path, public key line): ~/.ssh/id_{ed25519,ecdsa,rsa}.pub, else skyctl's own."""
    return _user_key() or skyctl_key()
