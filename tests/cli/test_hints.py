"""Hints that point the right way (issue 16, item 9): scale names the environment, not a --var
it does not take; a partial listing says 'did not answer'; a pinned launch on a full site shows
the site's quota line; `-i` is --identity (ssh), and launch's old `-i` still works, with a warning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import Runner, federation


def test_scale_asks_for_the_environment_variable_not_for_var(
        run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched = run("launch", "nb", "--context", "base", "--context", "jupyter", "--var", "token=s3cr3t-tok")
    assert launched.code == 0, launched.err
    res = run("scale", "nb", "2")
    assert res.code == 2, res.err
    assert "missing required variable 'token'" in res.err
    assert "set SKYCTL_VAR_token in the environment" in res.err and "--var" not in res.err, res.err
    monkeypatch.setenv("SKYCTL_VAR_token", "s3cr3t-tok")
    assert run("scale", "nb", "2").code == 0


def test_a_partial_listing_says_did_not_answer(run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    sky_file(federation(home={"driver": "memory", "tier": "local"}, cc={"driver": "memory", "tier": "remote",
                                                                       "down": True}))
    res = run("ps")
    assert res.code == 3 and "partial result: cc did not answer" in res.err, res.err
    assert "answered" not in res.err


def test_a_pinned_launch_on_a_full_site_shows_its_quota_line(run: Runner, two_sites: Path) -> None:
    assert run("launch", "fill", "--count", "2", "--site", "home").code == 0
    for args in (("launch", "pin", "--site", "home"), ("plan", "pin", "--site", "home")):
        res = run(*args)
        assert res.code == 4, res.err
        assert "home: quota: instances 2/2 used" in res.err, res.err
        assert "no site can host this request" not in res.err and "host pin: no site" not in res.err


def test_old_short_image_option_still_works_with_a_warning(run: Runner, two_sites: Path) -> None:
    res = run("launch", "im", "-i", "alma9", "-o", "json")
    assert res.code == 0 and res.json()["nodes"][0]["image"] == "alma9", res.err
    assert "-i for --image is going away" in res.err and "use --image" in res.err
    clash = run("launch", "im2", "-i", "alma9", "--image", "ubuntu-24.04")
    assert clash.code == 2 and "give --image only" in clash.err
    helped = run("launch", "--help").out
    assert "--image" in helped and "-i, --image" not in helped
