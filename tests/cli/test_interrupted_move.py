"""A move home that skyctl did not finish (killed with the replacement up and the remote node
not yet deleted) is in the intent log, and `reconcile` finishes or undoes it: the group ends
at its size, never with a permanent extra node."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from skyctl.model import NodeState
from skyctl.ops import burst
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _burst_fed(sky_file) -> None:  # type: ignore[no-untyped-def]
    data = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                      cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8})
    data["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc"], "home": {"cooldown": "0s"}}]
    sky_file(data)


def _sites(group: str) -> Counter[str]:
    return Counter(n.site for site in memdriver.CLOUDS.values() for n, _ in site.nodes.values() if n.group == group)


def _killed_after_the_replacement(monkeypatch: pytest.MonkeyPatch, *, replacement: NodeState) -> None:
    """skyctl dies (kill -9) right after creating the replacement, before deleting the old node."""
    def die(sky: Any, nodes: list[Any], launch_id: str, **_: Any) -> Any:
        if replacement is not NodeState.RUNNING:
            cloud = memdriver.cloud(nodes[0].site)
            node, ctx = cloud.nodes[nodes[0].id]
            from dataclasses import replace
            cloud.nodes[nodes[0].id] = (replace(node, state=replacement), ctx)
        raise SystemExit(137)

    monkeypatch.setattr(burst, "wait_running", die)


def _half_done_move(run: Runner, sky_file, monkeypatch: pytest.MonkeyPatch, replacement: NodeState) -> None:  # type: ignore[no-untyped-def]
    _burst_fed(sky_file)
    assert run("launch", "pin", "--count", "2", "--site", "home").code == 0
    assert run("launch", "g", "--count", "2").code == 0
    assert _sites("g") == {"cc": 2}
    assert run("delete", "pin", "--yes").code == 0
    original = burst.wait_running
    _killed_after_the_replacement(monkeypatch, replacement=replacement)
    assert run("burst", "run").code == 137
    monkeypatch.setattr(burst, "wait_running", original)
    assert _sites("g") == {"cc": 2, "home": 1}  # one node too many


def test_reconcile_finishes_a_move_whose_replacement_runs(run: Runner, sky_file,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _half_done_move(run, sky_file, monkeypatch, NodeState.RUNNING)
    res = run("reconcile", "-o", "json")
    assert res.code == 0, res.err
    assert len(res.json()["moves_finished"]) == 1 and "finished the interrupted move" in res.err
    assert _sites("g") == {"cc": 1, "home": 1}
    assert run("reconcile", "-o", "json").json()["moves_finished"] == []  # closed for good


def test_reconcile_undoes_a_move_whose_replacement_failed(run: Runner, sky_file,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _half_done_move(run, sky_file, monkeypatch, NodeState.ERROR)
    res = run("reconcile", "-o", "json")
    assert res.code == 0, res.err
    assert len(res.json()["moves_undone"]) == 1
    assert _sites("g") == {"cc": 2}
