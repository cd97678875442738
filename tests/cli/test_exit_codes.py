"""Exit codes as the README table says, for every command that talks to the clouds, in the
situations a user meets: every site down, every site refusing the credentials, some down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.errors import EXIT_AUTH, EXIT_PARTIAL, EXIT_UNREACHABLE
from skyctl.testing.cli import Runner, federation

# (command, args): each is run after `web` (3 nodes) was launched on healthy sites
COMMANDS: list[tuple[str, ...]] = [
    ("ps",),
    ("ps", "web"),
    ("sites",),
    ("plan", "web2", "--count", "2"),
    ("launch", "web2", "--count", "2"),
    ("scale", "web", "5"),
    ("delete", "web", "--yes"),
    ("show", "web-0"),
    ("reconcile",),
]

ALL_DOWN = {"home": {"down": True}, "cc": {"down": True}}
ALL_AUTH = {"home": {"auth_ok": False}, "cc": {"auth_ok": False}}


def _ids(cases: list[tuple[str, ...]]) -> list[str]:
    return ["-".join(c[:2]) for c in cases]


@pytest.fixture
def broken(sky_file: Callable[[dict[str, Any]], Path], run: Runner) -> Callable[[dict[str, dict[str, Any]]], None]:
    """Launch `web` on two healthy sites, then rewrite the federation file with `faults`."""
    def sites(faults: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return federation(home={"driver": "memory", "tier": "local", "instances": 2, **faults.get("home", {})},
                          cc={"driver": "memory", "tier": "remote", "instances": 8, **faults.get("cc", {})})

    sky_file(sites({}))
    assert run("launch", "web", "--count", "3").code == 0

    def apply(faults: dict[str, dict[str, Any]]) -> None:
        sky_file(sites(faults))

    return apply


@pytest.mark.parametrize("args", COMMANDS, ids=_ids(COMMANDS))
def test_every_site_unreachable(run: Runner, broken, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    broken(ALL_DOWN)
    res = run(*args)
    assert res.code == EXIT_UNREACHABLE, (res.code, res.err)
    assert "Traceback" not in res.err and "no capacity" not in res.err
    assert "home" in res.err and "cc" in res.err


@pytest.mark.parametrize("args", COMMANDS, ids=_ids(COMMANDS))
def test_every_site_refusing_the_credentials(run: Runner, broken, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    broken(ALL_AUTH)
    res = run(*args)
    assert res.code == EXIT_AUTH, (res.code, res.err)
    assert "Traceback" not in res.err and "credentials" in res.err


READS: list[tuple[str, ...]] = [("ps",), ("ps", "web"), ("sites",)]


@pytest.mark.parametrize("args", READS, ids=_ids(READS))
def test_one_site_down_is_partial(run: Runner, broken, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    broken({"cc": {"down": True}})
    res = run(*args)
    assert res.code == EXIT_PARTIAL, (res.code, res.err)
    assert "cc" in res.err
