"""Identifiers are whole-string matches: a trailing newline (which `re.match` with `$` lets
through) is refused everywhere a name is checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def test_a_group_name_with_a_trailing_newline_is_refused(run: Runner, two_sites: Path) -> None:
    res = run("launch", "web\n")
    assert res.code == 2 and "group" in res.err
    assert not any(site.nodes for site in memdriver.CLOUDS.values())


@pytest.mark.parametrize("where", ["site", "image", "rule"])
def test_names_in_the_federation_file(run: Runner, sky_file: Callable[[dict[str, Any]], Path], where: str) -> None:
    data = federation(home={"driver": "memory", "tier": "local"}, cc={"driver": "memory", "tier": "remote"})
    if where == "site":
        data["sites"]["cc\n"] = data["sites"].pop("cc")
        data["images"]["alma9"] = {"home": "alma9"}
    elif where == "image":
        data["images"]["alma9\n"] = data["images"].pop("alma9")
    else:
        data["bursting"] = [{"name": "r\n", "from": ["home"], "to": ["cc"]}]
    sky_file(data)
    res = run("ps")
    assert res.code == 2, res.err
    assert "Traceback" not in res.err
