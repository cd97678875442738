"""`launch --wait` on a terminal shows each stage a node goes through (creating, booting, ssh,
context) with its own timer, for a single node too; `wait --timeout` names the option that ran
out. The node is one of the in-memory cloud, reached at a loopback guest (its SSH server and
`cloud-init status`), as in test_ssh_cli.py."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyctl.sandbox.guest.loopback import LoopbackGuest, start_guest
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation

LOGIN_USER = "skyctl"  # the user the base context creates


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[LoopbackGuest]:
    from skyctl.keys import default_ssh_key

    g = start_guest(tmp_path / "vm", [default_ssh_key()[1]], user=LOGIN_USER)
    yield g
    g.stop()


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a terminal: what skyctl draws there is kept in the returned buffer."""
    from rich.console import Console

    from skyctl.cli.terminal import term

    buf = io.StringIO()
    monkeypatch.setattr(term(), "_err", Console(file=buf, force_terminal=True, width=100, color_system=None))
    return buf


def test_launch_wait_shows_every_stage_with_its_timer_for_one_node(
        run: Runner, sky_file, guest: LoopbackGuest, tty: io.StringIO) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 4, "ssh": {"port": guest.port}}))
    memdriver.cloud("home").boot_lists = 2  # the node boots for two polls
    res = run("launch", "one", "--count", "1", "--wait", "-o", "json")
    assert res.code == 0, tty.getvalue()
    screen = tty.getvalue()
    for stage in ("creating", "booting", "ssh", "context"):
        assert re.search(rf"{stage}\s.*1/1\s+\d+:\d\d:\d\d", screen), (stage, screen)


def test_wait_timeout_names_the_option_not_the_site_setting(
        run: Runner, sky_file, guest: LoopbackGuest) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 4, "ssh": {"port": guest.port}}))
    assert run("launch", "w", "--count", "1").code == 0
    guest.set_context("running")
    stuck = run("wait", "w", "--timeout", "0.3")
    assert stuck.code == 1
    assert "not ready after 0.3s (--timeout)" in stuck.err and "ready_timeout" not in stuck.err, stuck.err
