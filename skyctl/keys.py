"""SSH keys, in one place: the user's key files in ~/.ssh, skyctl's own key pair (made once,
0700 dir, 0600 files), public-key lines and their SHA256/MD5 fingerprints.

Standard library only at import; `cryptography` is imported when a key has to be generated.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any, NamedTuple

USER_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")  # OpenSSH's own order of preference
SKYCTL_KEY = "id_ed25519"
_lock = threading.Lock()


class KeyPair(NamedTuple):
    """A private key file and the public key line that goes with it."""

    private: Path
    public: str


KeySource = Path | tuple[Path, str]  # a private key path, or a KeyPair (public line known)


def split_key(key: KeySource) -> tuple[Path, str | None]:
    """(private key path, public key line or None) of a key given either way."""
    if isinstance(key, tuple):
        return Path(key[0]), key[1]
    return Path(key), None


# ---------------------------------------------------------------- public keys and fingerprints


def read_public_key(path: Path) -> str | None:
    """The first line of a public key file, or None when it is missing, unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.splitlines()[0].strip() if text else None


def fingerprint(key: bytes | Any) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (or of anything with `.asbytes()`,
    such as a paramiko key)."""
    blob = key if isinstance(key, bytes) else key.asbytes()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def md5_fingerprint(key: bytes | Any) -> str:
    """The older MD5 form, 'MD5:aa:bb:...', that some images still print."""
    blob = key if isinstance(key, bytes) else key.asbytes()
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i:i + 2] for i in range(0, 32, 2))


# ---------------------------------------------------------------- key files


def user_key() -> KeyPair | None:
    """The user's own key: the first of ~/.ssh/id_{ed25519,ecdsa,rsa} with a public half."""
    ssh = Path.home() / ".ssh"
    for name in USER_KEYS:
        public = read_public_key(ssh / f"{name}.pub")
        if public:
            return KeyPair(ssh / name, public)
    return None


def skyctl_key_dir() -> Path:
    from skyctl.paths import data_dir, private_dir

    return private_dir(data_dir() / "ssh")


def generate_ed25519(private: Path, comment: str) -> None:
    """A new ed25519 pair: `private` (OpenSSH format) and `private`.pub, both 0600."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from skyctl.paths import write_private

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    # the public half last: its presence means the pair is complete
    write_private(private, pem)
    write_private(private.with_name(private.name + ".pub"), pub + f" {comment}\n".encode())


def skyctl_key() -> KeyPair:
    """skyctl's own key pair in the data dir, created on first use (dir 0700, files 0600)."""
    folder = skyctl_key_dir()
    private = folder / SKYCTL_KEY
    public = folder / f"{SKYCTL_KEY}.pub"
    with _lock:
        import fcntl

        fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two launches at once still make one key
            if not (public.is_file() and private.is_file()):
                generate_ed25519(private, f"skyctl@{socket.gethostname() or 'localhost'}")
        finally:
            os.close(fd)
    return KeyPair(private, public.read_text(encoding="utf-8").strip())


def default_ssh_key() -> KeyPair:
    """The key contexts deliver and skyctl logs in with: the user's own, else skyctl's."""
    return user_key() or skyctl_key()
