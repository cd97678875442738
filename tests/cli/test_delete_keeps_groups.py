"""A group is forgotten only when every site answered that its nodes are gone: deleting while
a site is down (or only on one site) keeps it, so the next launch does not reuse names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _sites(**faults: dict[str, Any]) -> dict[str, Any]:
    return federation(home={"driver": "memory", "tier": "local", "instances": 2, **faults.get("home", {})},
                      cc={"driver": "memory", "tier": "remote", "instances": 8, **faults.get("cc", {})})


def _names_on_clouds() -> list[str]:
    return sorted(n.name for site in memdriver.CLOUDS.values() for n, _ in site.nodes.values())


def test_delete_while_a_site_is_down_keeps_the_group(run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    sky_file(_sites())
    assert run("launch", "web", "--count", "4").code == 0  # web-0, web-1 on home; web-2, web-3 on cc
    sky_file(_sites(cc={"down": True}))
    res = run("delete", "web", "--yes")
    assert res.code == 3 and "cc" in res.err
    sky_file(_sites())
    assert _names_on_clouds() == ["web-2", "web-3"]
    assert run("scale", "web", "4").code == 0  # the group is still known: its spec and its names
    names = _names_on_clouds()
    assert len(names) == len(set(names)) == 4, names  # no name came twice
    assert run("delete", "web", "--yes").code == 0
    assert _names_on_clouds() == []
    assert run("scale", "web", "1").code == 1  # now it is forgotten


def test_delete_on_one_site_keeps_the_group(run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    sky_file(_sites())
    assert run("launch", "web", "--count", "4").code == 0
    assert run("delete", "web", "--site", "home", "--yes").code == 0
    assert _names_on_clouds() == ["web-2", "web-3"]
    assert run("launch", "web", "--count", "1", "--add").code == 0
    assert "web-4" in _names_on_clouds()  # not web-0 again
