"""Demand-driven groups through the CLI on the in-memory clouds: `burst status` shows the
demand command's reading, the target and why; `burst run` grows through placement, drains and
deletes idle nodes above the ceiling, backs off a site whose nodes die early, and a command
that misbehaves is one clear line; `burst watch` runs the command every `every`."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from skyctl.config import load
from skyctl.ops.grouplock import group_lock
from skyctl.ops.sky import Sky
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


class Demand:
    """A demand command whose answer the test sets: it prints demand.json."""

    def __init__(self, tmp_path: Path) -> None:
        self.file = tmp_path / "demand.json"
        self.script = tmp_path / "pending.py"
        self.script.write_text(f"import sys\nsys.stdout.write(open({str(self.file)!r}).read())\n")
        self.drained = tmp_path / "drained.log"
        self.drain = tmp_path / "drain.py"
        self.drain.write_text("import sys\n"
                              f"open({str(self.drained)!r}, 'a').write(sys.argv[1] + '\\n')\n"
                              "sys.exit(1 if 'busy' in open(sys.argv[2]).read() else 0)\n")
        self.set(pending_cores=0)

    def set(self, text: str | None = None, **reading: Any) -> None:
        self.file.write_text(text if text is not None else json.dumps(reading))

    def rule(self, **demand: Any) -> dict[str, Any]:
        return {"name": "batch", "from": ["home"], "to": ["cc", "sara"], "groups": {"w": {"max": 10}},
                "demand": {"command": [sys.executable, str(self.script)], **demand},
                "drain_command": [sys.executable, str(self.drain), "{node}", str(self.file)]}


def _fed(sky_file, demand: Demand, **rule: Any) -> None:  # type: ignore[no-untyped-def]
    data = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                      cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
                      sara={"driver": "memory", "tier": "remote", "cost": 2, "instances": 8})
    data["bursting"] = [demand.rule(**rule)]
    sky_file(data)


def _sites(run: Runner) -> Counter[str]:
    return Counter(n["site"] for n in run("ps", "w", "-o", "json").json())


def test_status_shows_demand_target_and_why_and_run_grows(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d)
    assert run("launch", "w", "--count", "1").code == 0
    d.set(pending_cores=3)
    status = run("burst", "status", "-o", "json")
    assert status.code == 0, status.err
    [dec] = status.json()["demand"]
    assert dec["reading"] == {"pending_cores": 3, "idle_nodes": []}
    assert dec["decision"]["target"] == 4 and dec["decision"]["grow"] == {"home": 1, "cc": 2}
    assert "3 pending core(s) / 1 per node = 3 node(s)" in dec["decision"]["reasons"]
    assert _sites(run) == {"home": 1}                        # status changes nothing
    table = run("burst", "status").out
    assert "3 cores pending" in table and "4 (now 1" in table and "+1 home" in table

    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    assert sorted(tick.json()["demand"][0]["created"]) == ["w-1", "w-2", "w-3"]
    assert _sites(run) == {"home": 2, "cc": 2}
    assert "+3 -0 node(s) for demand (3 cores pending; target 4)" in tick.err


def test_idle_nodes_above_the_ceiling_are_drained_then_deleted(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d, max_idle=1)
    assert run("launch", "w", "--count", "4").code == 0         # home 2, cc 2
    d.set(pending_cores=0, idle_nodes=["w-0", "w-2", "w-3"])
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    res = tick.json()["demand"][0]
    assert res["deleted"] == ["w-3", "w-2"]                      # the burst nodes, newest first
    assert d.drained.read_text().split() == ["w-3", "w-2"]       # each drained before its delete
    assert _sites(run) == {"home": 2}

    # A drain that fails keeps the node (and says why); exit 3.
    d.set(json.dumps({"pending_cores": 0, "idle_nodes": ["w-0", "w-1"], "busy": 1}))
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 3
    kept = tick.json()["demand"][0]["kept"]
    assert list(kept) == ["w-1"] and "drain_command" in kept["w-1"] and "exited 1" in kept["w-1"]
    assert "kept w-1: drain_command" in tick.err
    assert _sites(run) == {"home": 2}


def test_a_scale_in_waits_for_the_groups_lease_held_by_another_installation(  # type: ignore[no-untyped-def]
        run: Runner, sky_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One writer per group across machines: while another installation (its own SKYCTL_HOME,
    so its own state and lock files, on the same clouds with the same owner) holds w's lease
    on the lock site, a demand scale-in drains and deletes nothing and stops naming the holder;
    once the lease is given back, the same tick deletes. The other installation runs in this
    process because the memory clouds live here; it holds the lease until the test lets go."""
    d = Demand(tmp_path)
    _fed(sky_file, d, max_idle=1)
    assert run("launch", "w", "--count", "4").code == 0         # home 2, cc 2
    d.set(pending_cores=0, idle_nodes=["w-0", "w-2", "w-3"])
    home = os.environ["SKYCTL_HOME"]
    with ExitStack() as other:
        monkeypatch.setenv("SKYCTL_HOME", str(tmp_path / "other-installation"))
        sky = other.enter_context(Sky(load()))
        other.enter_context(group_lock("w", sky=sky))           # e.g. its `scale w 6`, still running
        monkeypatch.setenv("SKYCTL_HOME", home)
        assert len(memdriver.cloud("cc").leases) == 1           # the lease is on the lock site (cc)
        monkeypatch.setenv("SKYCTL_LOCK_WAIT", "0.5")           # this machine's lock is free: only the lease holds it
        tick = run("burst", "run")
        assert tick.code == 1, tick.err
        assert f"group w is being changed by pid {os.getpid()}" in tick.err, tick.err
        assert "(lock kept on cc)" in tick.err, tick.err
        assert not d.drained.exists()                           # nothing drained ...
        assert _sites(run) == {"home": 2, "cc": 2}              # ... nothing deleted
    assert memdriver.cloud("cc").leases == {}                   # given back
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    assert tick.json()["demand"][0]["deleted"] == ["w-3", "w-2"]
    assert _sites(run) == {"home": 2}


def test_a_site_whose_node_died_early_is_paused(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d)
    assert run("launch", "w", "--count", "2", "--site", "home").code == 0
    d.set(pending_cores=1)
    assert run("burst", "run").code == 0
    assert _sites(run) == {"home": 2, "cc": 1}
    # The cc node dies (the cloud lost it; skyctl did not delete it), minutes after it started.
    cloud = memdriver.cloud("cc")
    cloud.nodes.clear()
    tick = run("burst", "run", "-o", "json").json()
    res = tick["demand"][0]
    assert res["died"] == ["w-2"]
    assert list(res["decision"]["paused"]) == ["cc"] and res["decision"]["grow"] == {"sara": 1}
    assert _sites(run) == {"home": 2, "sara": 1}
    # The back-off is in the burst log: a later run (a new process) still avoids cc.
    d.set(pending_cores=2)
    again = run("burst", "status", "-o", "json").json()["demand"][0]["decision"]
    assert list(again["paused"]) == ["cc"] and again["grow"] == {"sara": 2}


def test_a_misbehaving_demand_command_is_one_clear_line(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d)
    assert run("launch", "w", "--count", "1").code == 0
    d.set("pending: 48\n")
    res = run("burst", "status")
    assert res.code == 1
    assert "bursting rule batch: demand command " in res.err and "printed no JSON (Expecting value at line 1 column 1): 'pending: 48'" in res.err
    assert "Traceback" not in res.err
    assert run("burst", "run").code == 3
    assert _sites(run) == {"home": 1}                          # nothing changed

    d.script.write_text("import sys\nsys.stderr.write('squeue: error: cannot reach slurmctld\\n')\nsys.exit(1)\n")
    res = run("burst", "run", "-o", "json")
    assert res.code == 3
    assert res.json()["demand"][0]["error"].endswith("exited 1: squeue: error: cannot reach slurmctld")


def test_an_unknown_group_says_to_launch_it_once(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d)
    res = run("burst", "status")
    assert res.code == 1 and "group 'w' is not known here; launch it once" in res.err


def test_watch_runs_the_demand_command_every_every(run: Runner, sky_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Demand(tmp_path)
    _fed(sky_file, d, every="1h")
    assert run("launch", "w", "--count", "1").code == 0
    res = run("burst", "watch", "--ticks", "2", "--interval", "1", "--log-format", "json")
    assert res.code == 0, res.err
    events = [json.loads(line) for line in res.err.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("tick") == 2
    assert [e["event"] for e in events].count("demand") == 1    # due once in an hour
