"""`launch GROUP --count N` makes the group N nodes (a re-run creates nothing), `--add` adds on
purpose, a group's bounds (`bursting[].groups.NAME.min/max`) hold on every path that adds nodes,
and `--min-count` makes a launch all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _bounded(sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path, **groups: dict[str, int]) -> None:
    doc = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                     cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8})
    doc["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc"], "groups": groups}]
    doc["slurm"] = {"groups": {"skyb": {"nodes": "sky-[1-9]", "partition": "sky", "contexts": ["base"]}},
                    "log": str(tmp_path / "slurm.log"), "programs_dir": str(tmp_path / "progs")}
    sky_file(doc)


def _names(run: Runner, group: str) -> list[str]:
    return sorted(n["name"] for n in run("ps", group, "-o", "json").json())


def test_a_rerun_launch_creates_only_what_is_missing(run: Runner, two_sites: Path) -> None:
    first = run("launch", "batch", "--count", "3", "-o", "json")
    assert first.code == 0, first.err
    again = run("launch", "batch", "--count", "3", "-o", "json")
    assert again.code == 0, again.err
    assert again.json()["created"] == 0 and again.json()["existing"] == ["batch-0", "batch-1", "batch-2"]
    assert "batch has 3 node(s) already" in again.err and "--add" in again.err
    assert _names(run, "batch") == ["batch-0", "batch-1", "batch-2"]
    grown = run("launch", "batch", "--count", "5", "-o", "json")
    assert grown.code == 0 and grown.json()["created"] == 2, grown.err
    assert _names(run, "batch") == [f"batch-{i}" for i in range(5)]
    # asking for fewer never deletes
    assert run("launch", "batch", "--count", "2").code == 0
    assert len(_names(run, "batch")) == 5
    # plan and --dry-run agree: nothing to place
    plan = run("plan", "batch", "--count", "5", "-o", "json")
    assert plan.code == 0 and plan.json()["requested"] == 0, plan.err
    dry = run("launch", "batch", "--count", "6", "--dry-run", "-o", "json")
    assert dry.code == 0 and dry.json()["requested"] == 1 and len(dry.json()["existing"]) == 5


def test_add_adds_on_purpose(run: Runner, two_sites: Path) -> None:
    assert run("launch", "web", "--count", "2").code == 0
    added = run("launch", "web", "--count", "2", "--add", "-o", "json")
    assert added.code == 0 and added.json()["created"] == 2, added.err
    assert _names(run, "web") == ["web-0", "web-1", "web-2", "web-3"]
    assert run("plan", "web", "--count", "1", "--add", "-o", "json").json()["requested"] == 1


def test_group_max_holds_for_launch_plan_scale_and_add(
        run: Runner, sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path) -> None:
    _bounded(sky_file, tmp_path, batch={"min": 0, "max": 6})
    assert run("launch", "batch", "--count", "5").code == 0
    for args in (("launch", "batch", "--count", "3", "--add"), ("launch", "batch", "--count", "8"),
                 ("plan", "batch", "--count", "8"), ("launch", "batch", "--count", "8", "--dry-run"),
                 ("scale", "batch", "7")):
        res = run(*args)
        assert res.code == 2, (args, res.err)
        assert "group batch may have at most 6 node(s) (bursting[0].groups.batch.max)" in res.err, res.err
        assert "it has 5" in res.err
    assert len(_names(run, "batch")) == 5
    plan = run("plan", "batch", "--count", "6", "-o", "json")
    assert plan.code == 0 and plan.json()["placed"] == 1 and plan.json()["requested"] == 1, plan.err
    assert run("launch", "batch", "--count", "6").code == 0
    assert len(_names(run, "batch")) == 6


def test_group_min_holds_for_launch_and_scale(
        run: Runner, sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path) -> None:
    _bounded(sky_file, tmp_path, pool={"min": 2, "max": 4})
    low = run("launch", "pool", "--count", "1")
    assert low.code == 2 and "at least 2 node(s) (bursting[0].groups.pool.min)" in low.err, low.err
    assert run("launch", "pool", "--count", "3").code == 0
    shrink = run("scale", "pool", "1")
    assert shrink.code == 2 and "at least 2" in shrink.err and "{group}" not in shrink.err, shrink.err
    assert len(_names(run, "pool")) == 3


def test_slurm_resume_creates_no_node_beyond_the_group_max(
        run: Runner, sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_SCONTROL", "/bin/true")
    _bounded(sky_file, tmp_path, skyb={"max": 2})
    r = run("slurm", "resume", "--wait", "sky-[1-3]")
    assert r.code == 2, r.err  # one node not created
    assert _names(run, "skyb") == ["sky-1", "sky-2"]
    log = (tmp_path / "slurm.log").read_text()
    assert "resume-failed sky-3" in log and "maximum of 2" in log, log


def test_min_count_refuses_before_creating_when_the_plan_falls_short(run: Runner, two_sites: Path) -> None:
    res = run("launch", "big", "--count", "12", "--min-count", "11")
    assert res.code == 4, res.err
    assert "only 10 of the 11 node(s) required (--min-count 11)" in res.err and "nothing was created" in res.err
    assert not any(c.nodes for c in memdriver.CLOUDS.values())
    partial = run("launch", "big", "--count", "12", "--min-count", "10", "-o", "json")
    assert partial.code == 3 and partial.json()["created"] == 10


def test_min_count_deletes_what_it_created_when_creates_fall_short(
        run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 4}))
    memdriver.cloud("home").hidden_instance_limit = 2  # someone else takes the room mid-launch
    res = run("launch", "job", "--count", "4", "--min-count", "3")
    assert res.code == 4, res.err
    assert "only 2 of the 3 node(s) required" in res.err and "deleted the 2 this launch created" in res.err
    assert memdriver.cloud("home").nodes == {}
    assert run("ps", "job", "-o", "json").json() == []
    assert run("launch", "job", "--count", "2", "--min-count", "3").code == 2  # more than --count


def test_a_site_that_does_not_answer_makes_no_room(run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    sites = {"home": {"driver": "memory", "tier": "local", "instances": 2},
             "cc": {"driver": "memory", "tier": "remote", "cost": 1, "instances": 8}}
    sky_file(federation(**sites))
    assert run("launch", "web", "--count", "4").code == 0  # web-2, web-3 on cc
    sky_file(federation(home=sites["home"], cc={**sites["cc"], "down": True}))
    again = run("launch", "web", "--count", "4", "-o", "json")
    assert again.code == 0 and again.json()["created"] == 0, again.err
    assert "cc did not answer: web's nodes there are counted from local state (2)" in again.err
    assert sorted(again.json()["existing"]) == ["web-0", "web-1", "web-2", "web-3"]
