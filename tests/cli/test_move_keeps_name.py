"""A move home keeps the node's name and its work: the replacement at home takes the same name,
the rule's drain_command runs (and must succeed) before the remote node is deleted, and while
both exist the replacement is the move's target for ps, ssh-by-name and reconcile."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from skyctl.ops import burst
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _fed(sky_file, drain: list[str] | None = None) -> None:  # type: ignore[no-untyped-def]
    data = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                      cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8})
    rule: dict[str, Any] = {"name": "overflow", "from": ["home"], "to": ["cc"], "home": {"cooldown": "0s", "max_moves": 2}}
    if drain:
        rule["drain_command"] = drain
        rule["drain_timeout"] = "30s"
    data["bursting"] = [rule]
    sky_file(data)


def _burst_out(run: Runner) -> None:
    assert run("launch", "pin", "--count", "2", "--site", "home").code == 0
    assert run("launch", "g", "--count", "2").code == 0
    assert run("delete", "pin", "--yes").code == 0


def _where(run: Runner) -> list[tuple[str, str]]:
    return sorted((n["name"], n["site"]) for n in run("ps", "g", "-o", "json").json())


def _drain_script(tmp_path: Path, *, refuse: str = "") -> list[str]:
    log = tmp_path / "drained.log"
    script = tmp_path / "drain.py"
    script.write_text(
        "import os, sys\n"
        f"open({str(log)!r}, 'a').write(f\"{{sys.argv[1]}} {{sys.argv[2]}} {{os.environ['SKYCTL_GROUP']}}\\n\")\n"
        f"sys.exit(3 if sys.argv[1] == {refuse!r} else 0)\n")
    return [sys.executable, str(script), "{node}", "{site}"]


def test_a_move_home_keeps_the_name_and_drains_before_the_delete(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _fed(sky_file, _drain_script(tmp_path))
    _burst_out(run)
    assert _where(run) == [("g-0", "cc"), ("g-1", "cc")]
    memdriver.EVENTS.clear()
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    assert [(a["node"], a["new_node"], a["ok"]) for a in tick.json()["actions"]] == [("g-1", "g-1", True),
                                                                                       ("g-0", "g-0", True)]
    assert _where(run) == [("g-0", "home"), ("g-1", "home")]          # same names, now at home
    # The drain ran on the remote node after the replacement existed and before the delete.
    assert (tmp_path / "drained.log").read_text().splitlines() == ["g-1 cc g", "g-0 cc g"]
    assert memdriver.EVENTS == [("create", "home", "g-1"), ("delete", "cc", "g-1"),
                                ("create", "home", "g-0"), ("delete", "cc", "g-0")]
    assert "moved g-1 from cc to home (same name)" in tick.err
    # State agrees with the clouds: nothing to adopt, forget or call a duplicate.
    rec = run("reconcile", "-o", "json").json()
    assert (rec["adopted"], rec["forgotten"], rec["duplicates"]) == ([], [], [])
    assert run("ssh", "g-0", "--", "true").code != 2   # the name names one node again


def test_a_node_that_does_not_drain_stays_and_its_replacement_goes(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _fed(sky_file, _drain_script(tmp_path, refuse="g-1"))
    _burst_out(run)
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 3
    by_node = {a["node"]: a for a in tick.json()["actions"]}
    assert by_node["g-0"]["ok"] and not by_node["g-1"]["ok"]
    assert "g-1 was not drained (drain_command" in by_node["g-1"]["error"]
    assert "exited 3" in by_node["g-1"]["error"] and "its replacement was removed" in by_node["g-1"]["error"]
    assert _where(run) == [("g-0", "home"), ("g-1", "cc")]
    assert run("reconcile", "-o", "json").json()["adopted"] == []   # the record points at cc again


def test_during_a_move_the_replacement_is_its_target(run: Runner, sky_file, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _fed(sky_file)
    _burst_out(run)

    def die(sky: Any, nodes: list[Any], launch_id: str, **_: Any) -> Any:
        raise SystemExit(137)   # kill -9 with the replacement made and the remote node not deleted

    original = burst.wait_running
    monkeypatch.setattr(burst, "wait_running", die)
    assert run("burst", "run").code == 137
    monkeypatch.setattr(burst, "wait_running", original)
    nodes = run("ps", "g", "-o", "json").json()
    assert Counter(n["name"] for n in nodes) == {"g-1": 2, "g-0": 1}
    moves = {n["site"]: n.get("move") for n in nodes if n["name"] == "g-1"}
    assert moves == {"home": "moving in (replaces g-1 on cc)", "cc": "moving out (to home)"}
    assert "moving in (replaces g-1 on cc)" in run("ps", "g").out
    # By name, g-1 is still the node that runs the work (no "names 2 nodes" refusal).
    shown = run("show", "g-1", "-o", "json")
    assert shown.code == 0, shown.err
    assert shown.json()["site"] == "cc"
    rec = run("reconcile", "-o", "json").json()
    assert rec["duplicates"] == [] and rec["moves_finished"] == ["g-1"]
    assert _where(run) == [("g-0", "cc"), ("g-1", "home")]
    assert run("reconcile", "-o", "json").json()["adopted"] == []
