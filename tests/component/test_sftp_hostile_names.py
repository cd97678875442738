"""`cp -r NODE:dir LOCAL` against a node whose SFTP server sends names that are paths."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from skyctl.errors import GuestError
from skyctl.keys import generate_ed25519, read_public_key
from skyctl.model import Node, NodeState
from skyctl.sandbox.guest import server as guest_server
from skyctl.sandbox.guest.loopback import LoopbackGuest, start_guest
from skyctl.sandbox.guest.sftp import RootedSftp
from skyctl.site import SiteConfig
from skyctl.ssh import transfer
from skyctl.ssh.session import SshOptions

FORGED: list[str] = []  # names the hostile server adds to every listing of `loot`


class HostileSftp(RootedSftp):
    """A compromised node: its listing of `loot` carries extra entries whose names are paths."""

    def list_folder(self, path: str) -> Any:
        entries = super().list_folder(path)
        if isinstance(entries, list) and path.rstrip("/").endswith("loot"):
            for name in FORGED:
                attr = paramiko.SFTPAttributes()
                attr.filename, attr.st_mode, attr.st_size = name, stat.S_IFREG | 0o644, 5
                entries.append(attr)
        return entries

    # whatever file was asked for, hand out the payload: the client decides where it lands
    def open(self, path: str, flags: int, attr: Any) -> Any:
        return super().open(self._payload(path), flags, attr)

    def stat(self, path: str) -> Any:
        return super().stat(self._payload(path))

    @staticmethod
    def _payload(path: str) -> str:
        return "loot/payload" if path.rstrip("/").split("/")[-1] != "loot" and "loot/" in path else path


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoopbackGuest, SshOptions]]:
    monkeypatch.setattr(guest_server, "RootedSftp", HostileSftp)
    key = tmp_path / "id_ed25519"
    generate_ed25519(key, "test@skyctl")
    public = read_public_key(key.with_name(key.name + ".pub"))
    assert public is not None
    g = start_guest(tmp_path / "vm", [public])
    (g.root / "loot").mkdir()
    (g.root / "loot" / "payload").write_text("pwned")
    yield g, SshOptions(key=(key, public))
    g.stop()


def _get(guest: LoopbackGuest, opts: SshOptions, local: Path) -> list[Path]:
    node = Node("n-0", "n", "s1", "memory", "vm-1", NodeState.RUNNING, ("127.0.0.1",))
    site = SiteConfig(name="s1", driver="memory", ssh={"port": guest.port})
    return transfer.get(node, site, "loot", local, opts, recursive=True)


@pytest.mark.parametrize("name", ["../../pwned", "../pwned", "sub/../../pwned", "a/b"])
def test_a_name_that_climbs_or_nests_is_refused_and_nothing_lands_outside(
        hostile: tuple[LoopbackGuest, SshOptions], tmp_path: Path, name: str) -> None:
    guest, opts = hostile
    FORGED[:] = [name]
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    with pytest.raises(GuestError) as info:
        _get(guest, opts, out)
    assert "not a plain name" in info.value.line() and repr(name) in info.value.line()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "work" / "pwned").exists()
    assert not (out / "pwned").exists()


def test_an_absolute_name_is_refused(hostile: tuple[LoopbackGuest, SshOptions], tmp_path: Path) -> None:
    guest, opts = hostile
    target = tmp_path / "abs-pwned"
    FORGED[:] = [str(target)]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GuestError):
        _get(guest, opts, out)
    assert not target.exists()


def test_ordinary_names_still_copy(hostile: tuple[LoopbackGuest, SshOptions], tmp_path: Path) -> None:
    guest, opts = hostile
    FORGED[:] = ["..hidden", "a..b"]  # dots inside a name are fine
    out = tmp_path / "out"
    out.mkdir()
    got = _get(guest, opts, out)
    assert sorted(p.name for p in got) == ["..hidden", "a..b", "payload"]
    assert all(p.parent == out / "loot" for p in got)
