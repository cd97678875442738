"""Endpoint and ONE_AUTH lookup, as OpenNebula's own tools do it; errors never show the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.errors import AuthError
from skyctl_opennebula.auth import DEFAULT_ENDPOINT, public_endpoint, read_session, resolve_endpoint


def test_endpoint_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONE_XMLRPC", raising=False)
    assert resolve_endpoint(None) == DEFAULT_ENDPOINT == "http://localhost:2633/RPC2"
    monkeypatch.setenv("ONE_XMLRPC", "https://env:2633/RPC2")
    assert resolve_endpoint(None) == "https://env:2633/RPC2"
    assert resolve_endpoint("http://site/RPC2") == "http://site/RPC2"


def test_endpoint_shown_without_credentials() -> None:
    assert public_endpoint("https://me:pw@one.example:2633/RPC2") == "https://one.example:2633/RPC2"
    assert public_endpoint("http://localhost:2633/RPC2") == "http://localhost:2633/RPC2"


def test_one_auth_order_and_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".one").mkdir(parents=True)
    (home / ".one" / "one_auth").write_text("\n  alice:from-home  \n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ONE_AUTH", raising=False)
    assert read_session(None, site="s") == ("alice:from-home", "alice")
    env_file = tmp_path / "env_auth"
    env_file.write_text("bob:from-env\n")
    monkeypatch.setenv("ONE_AUTH", str(env_file))
    assert read_session(None, site="s")[1] == "bob"
    site_file = tmp_path / "site_auth"
    site_file.write_text("carol:from-site:with-colon\n")
    assert read_session(str(site_file), site="s") == ("carol:from-site:with-colon", "carol")


@pytest.mark.parametrize("content", ["", "no-colon-secret-x1", ":only-secret-x1", "user:"])
def test_bad_one_auth_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth"
    path.write_text(content)
    with pytest.raises(AuthError, match="must hold one line user:password") as info:
        read_session(str(path), site="s")
    assert info.value.site == "s"
    assert "secret-x1" not in info.value.line()


def test_missing_one_auth_file(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="no ONE_AUTH file") as info:
        read_session(str(tmp_path / "none"), site="s")
    assert info.value.hint
