"""The watch loop (skyctl.ops.watch) and its metrics (skyctl.ops.metrics), with fake ticks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from skyctl.errors import DriverError, SkyError
from skyctl.model import Node, NodeState, Tier
from skyctl.ops.burst import MoveOutcome, TickResult
from skyctl.ops.watch import TickReport, Watch, tick_event
from skyctl.policy.bursting import Move, RuleTick

TIERS = {"home": Tier.LOCAL, "cc": Tier.REMOTE}


class _Sky:
    federation = SimpleNamespace(sites={name: SimpleNamespace(tier=tier) for name, tier in TIERS.items()})

    def __enter__(self) -> _Sky:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_failed_tick_is_reported_and_the_loop_goes_on() -> None:
    outcomes = iter([DriverError("all sites down"), TickResult(), SkyError("bad rules"), TickResult()])

    def tick(_sky: Any) -> TickResult:
        got = next(outcomes)
        if isinstance(got, Exception):
            raise got
        return got

    reports: list[TickReport] = []
    w = Watch(_Sky, interval=0.01, ticks=4, on_tick=reports.append, tick=tick)
    assert w.run() == 4
    assert [r.ok for r in reports] == [False, True, False, True]
    assert reports[0].error == "all sites down" and tick_event(reports[0])["ok"] is False


def test_stop_during_a_tick_finishes_it_and_starts_no_other() -> None:
    reports: list[TickReport] = []
    w: Watch

    def tick(_sky: Any) -> TickResult:
        w.stop()  # as the SIGTERM handler would, mid-tick
        return TickResult()

    w = Watch(_Sky, interval=0.01, on_tick=reports.append, tick=tick)
    assert w.run() == 1 and len(reports) == 1 and reports[0].ok


def _node(name: str, site: str, group: str = "g", state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name=name, site=site, driver="memory", id=f"id-{name}", state=state, group=group,
                labels={"owner": "me", "group": group})


def test_metrics_follow_a_burst_and_a_move_home() -> None:
    pytest.importorskip("prometheus_client")
    from skyctl.ops.metrics import WatchMetrics

    m = WatchMetrics()

    def observe(nodes: list[Node], burst: int, outcomes: list[MoveOutcome] = (), errors: dict[str, str] = {}) -> str:  # noqa: B006
        moves = tuple(o.move for o in outcomes)
        result = TickResult([RuleTick("r", moves, burst, ())], list(outcomes), dict(errors), nodes)
        m.observe(TickReport(1, 0.0, 0.2, result, None, dict(TIERS)))
        return m.text()

    observe([_node("g-0", "home")], 0)  # the first tick is the baseline
    text = observe([_node("g-0", "home"), _node("g-1", "cc"), _node("g-2", "cc")], 2)
    assert 'skyctl_overflows_total{group="g",site="cc"} 2.0' in text
    assert 'skyctl_burst_nodes{rule="r"} 2.0' in text
    assert 'skyctl_nodes{group="g",owner="me",site="cc",state="running"} 2.0' in text
    move = MoveOutcome(Move("g-1", "g", "cc", "home", "room"), True, "g-3")
    text = observe([_node("g-0", "home"), _node("g-3", "home"), _node("g-2", "cc")], 1, [move], {"cc": "down"})
    assert 'skyctl_moves_home_total{from_site="cc",result="ok",rule="r",to_site="home"} 1.0' in text
    assert 'skyctl_site_up{site="cc"} 0.0' in text and 'skyctl_site_errors_total{site="cc"} 1.0' in text
    assert 'skyctl_overflows_total{group="g",site="cc"} 2.0' in text  # nothing new overflowed
    assert 'skyctl_nodes{group="g",owner="me",site="home",state="running"} 2.0' in text
