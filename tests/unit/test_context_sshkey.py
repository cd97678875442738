"""The default SSH key (skyctl.keys): the user's own if there is one, else a skyctl key pair
made once; contexts deliver the keys they are given."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import paramiko
import yaml

from skyctl.context import build_context
from skyctl.keys import default_ssh_key, fingerprint, md5_fingerprint
from skyctl.paths import data_dir


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_without_a_user_key_skyctl_makes_one_private_key_pair_once(skyctl_home: Path) -> None:
    private, public = default_ssh_key()
    folder = data_dir() / "ssh"
    assert private == folder / "id_ed25519"
    assert str(private).startswith(str(skyctl_home))
    assert mode(private) == 0o600 and mode(folder) == 0o700
    assert public.startswith("ssh-ed25519 ") and " skyctl@" in public
    # the private key is a real key whose public half is what we deliver
    key = paramiko.Ed25519Key(filename=str(private))
    assert public.split()[1] == key.get_base64()
    assert default_ssh_key() == (private, public)  # created once, then reused


def test_concurrent_first_uses_make_a_single_key() -> None:
    results: list[tuple[Path, str]] = []

    def take() -> None:
        results.append(default_ssh_key())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({pub for _, pub in results}) == 1
    key = paramiko.Ed25519Key(filename=str(results[0][0]))
    assert results[0][1].split()[1] == key.get_base64()


def test_the_users_own_key_wins_in_openssh_order(skyctl_home: Path) -> None:
    ssh = skyctl_home / "user" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_rsa.pub").write_text("ssh-rsa AAAArsa me@laptop\n")
    assert default_ssh_key() == (ssh / "id_rsa", "ssh-rsa AAAArsa me@laptop")
    (ssh / "id_ed25519.pub").write_text("ssh-ed25519 AAAAed me@laptop\n")
    assert default_ssh_key() == (ssh / "id_ed25519", "ssh-ed25519 AAAAed me@laptop")
    assert not (data_dir() / "ssh" / "id_ed25519").exists()  # no skyctl key needed


def test_a_context_delivers_exactly_the_keys_it_is_given(skyctl_home: Path) -> None:
    _, public = default_ssh_key()
    built = build_context(["base"], environ={}, ssh_public_keys=[public])
    doc = yaml.safe_load(built.rendered.user_data)
    assert doc["users"][1]["ssh_authorized_keys"] == [public]
    assert built.rendered.one_context["SSH_PUBLIC_KEY"] == public
    assert public in base64.b64decode(built.rendered.one_context["START_SCRIPT_BASE64"]).decode()
    assert built.rendered.ssh_public_keys == (public,)
    explicit = build_context(["base"], environ={}, ssh_public_keys=["ssh-ed25519 AAAAother x@y"])
    assert explicit.rendered.ssh_public_keys == ("ssh-ed25519 AAAAother x@y",)
    # building a context makes no key (the caller passes the keys in)
    before = sorted(data_dir().rglob("*"))
    assert build_context(["base"], environ={}, ssh_public_keys=[]).rendered.ssh_public_keys == ()
    assert sorted(data_dir().rglob("*")) == before


def test_fingerprints_in_openssh_forms() -> None:
    private, public = default_ssh_key()
    key = paramiko.Ed25519Key(filename=str(private))
    blob = base64.b64decode(public.split()[1])
    assert fingerprint(blob) == fingerprint(key) == key.fingerprint  # paramiko's own SHA256 form
    md5 = md5_fingerprint(blob)
    assert md5.startswith("MD5:") and len(md5.split(":")) == 17 and md5 == md5_fingerprint(key)
