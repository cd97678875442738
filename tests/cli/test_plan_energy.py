"""`skyctl plan --at`: prices and carbon read at a fixed clock, figures per site in table and JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import Runner, federation

NIGHT = [0.01] * 6 + [0.1] * 18


@pytest.fixture
def night_and_day(sky_file: Callable[[dict[str, Any]], Path]) -> Path:
    data = federation(
        home={"driver": "memory", "tier": "local", "instances": 1},
        night={"driver": "memory", "tier": "remote", "instances": 8, "timezone": "Europe/Paris",
               "price": {"per_core_hour": NIGHT}},
        day={"driver": "memory", "tier": "remote", "instances": 8, "price": {"per_core_hour": 0.05}},
    )
    data["bursting"] = [{"name": "r", "from": ["home"], "to": ["night", "day"], "order": "cost"}]
    return sky_file(data)


def test_a_cheaper_night_profile_wins_at_night_and_loses_by_day(run: Runner, night_and_day: Path) -> None:
    night = run("plan", "web", "-n", "5", "--at", "2026-01-05T02:00+01:00", "-o", "json")
    assert night.code == 0, night.err
    sites = {d["site"]: d for d in night.json()["sites"]}
    assert [d["site"] for d in night.json()["sites"] if d["count"]] == ["home", "night"]
    assert sites["night"]["cost"] == pytest.approx(0.05) and sites["day"]["cost"] == pytest.approx(0.25)
    assert sites["night"]["reasons"][0] == {"code": "cost_order",
                                            "text": "rank 2: remote, cost 0.05 for 5 node(s) for 1h; room for 8"}
    assert set(sites["night"]["scaled"]) == {"cost", "carbon", "free_room", "score"}

    day = run("plan", "web", "-n", "5", "--at", "2026-01-05T14:00+01:00")
    assert day.code == 0, day.err
    rows = {line.split()[0]: line for line in day.out.splitlines() if line.strip()[:4] in ("nigh", "day ")}
    assert "rank 2: remote, cost 0.25 for 5 node(s) for 1h" in rows["day"]
    assert "rank 3: remote, cost 0.5 for 5 node(s) for 1h; not needed" in rows["night"]


def test_bad_at_is_a_usage_error(run: Runner, night_and_day: Path) -> None:
    res = run("plan", "web", "--at", "tomorrow")
    assert res.code == 2 and "--at 'tomorrow': expected an ISO 8601 time" in res.err
