"""Before money is spent: a launch (or a scale) that places nodes on a site with a cost shows
the expected cost per hour, asks on a terminal (--yes does not), and never blocks a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skyctl.cli.terminal import Terminal
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner


@dataclass
class User:
    """Who sits at the terminal: answers `replies` in order; `asked` records the questions."""

    replies: list[bool] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def at_terminal(monkeypatch: pytest.MonkeyPatch) -> User:
    user = User()

    def confirm(self: Terminal, question: str) -> bool:
        user.asked.append(question)
        return user.replies.pop(0)

    monkeypatch.setattr(Terminal, "interactive", property(lambda self: True))
    monkeypatch.setattr(Terminal, "confirm", confirm)
    return user


def _nodes() -> int:
    return sum(len(c.nodes) for c in memdriver.CLOUDS.values())


COST_LINE = "b: expected cost 2 per hour (2 on cc 2/h"  # 2 one-core nodes on cc at cost 1 per core-hour


def test_a_launch_onto_a_paid_site_shows_the_cost_and_asks(run: Runner, two_sites: Path, at_terminal: User) -> None:
    at_terminal.replies = [False]
    no = run("launch", "b", "--count", "4")
    assert no.code == 1 and COST_LINE in no.err and "cancelled: nothing was created" in no.err, no.err
    assert at_terminal.asked == ["Go ahead?"] and _nodes() == 0
    at_terminal.replies = [True]
    yes = run("launch", "b", "--count", "4", "-o", "json")
    assert yes.code == 0 and yes.json()["created"] == 4, yes.err
    assert len(at_terminal.asked) == 2
    assert [n["name"] for n in yes.json()["nodes"]] == [f"b-{i}" for i in range(4)]  # the refusal took no name


def test_yes_skips_the_question_and_free_sites_ask_nothing(run: Runner, two_sites: Path, at_terminal: User) -> None:
    free = run("launch", "f", "--count", "2")  # fits at home, which costs nothing
    assert free.code == 0 and "expected cost" not in free.err
    res = run("launch", "b", "--count", "2", "--yes")  # home is full now: both go to cc
    assert res.code == 0 and COST_LINE in res.err, res.err
    assert at_terminal.asked == []


def test_scale_onto_a_paid_site_asks_too(run: Runner, two_sites: Path, at_terminal: User) -> None:
    assert run("launch", "s", "--count", "2").code == 0  # home
    at_terminal.replies = [False]
    res = run("scale", "s", "4")
    assert res.code == 1 and "expected cost 2 per hour" in res.err, res.err
    assert _nodes() == 2 and at_terminal.asked == ["Go ahead?"]


def test_a_pipeline_is_never_asked_and_goes_ahead(run: Runner, two_sites: Path) -> None:
    res = run("launch", "b", "--count", "4")  # stdin is not a terminal here
    assert res.code == 0 and COST_LINE in res.err, res.err
    assert _nodes() == 4
