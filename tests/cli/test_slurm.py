"""skyctl slurm resume/suspend/resume-fail/reconcile/config in-process, on the memory driver,
with a stand-in scontrol that records its calls."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import Runner, federation


def _slurm_federation(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    doc = federation(
        home={"driver": "memory", "tier": "local", "instances": 2},
        cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
    )
    doc["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc"]}]
    doc["slurm"] = {"groups": {"skyb": {"nodes": "sky-[1-12]", "partition": "sky", "features": ["burst"],
                                        "contexts": ["base"]}},
                    "log": str(tmp_path / "slurm.log"), "programs_dir": str(tmp_path / "progs"), **extra}
    return doc


@pytest.fixture
def scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """A stand-in scontrol: `show nodes` prints tmp/nodes.txt, every call is recorded."""
    calls = tmp_path / "scontrol.calls"
    script = tmp_path / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n'
                      f'case "$*" in *show*) cat {tmp_path}/nodes.txt 2>/dev/null;; esac\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SKYCTL_SCONTROL", str(script))
    return lambda: calls.read_text().splitlines() if calls.exists() else []


@pytest.fixture
def slurm_sky(tmp_path: Path, sky_file: Callable[[dict[str, Any]], Path]) -> Path:
    return sky_file(_slurm_federation(tmp_path))


def _log(tmp_path: Path) -> list[str]:
    return (tmp_path / "slurm.log").read_text().splitlines()


def test_resume_launches_exactly_the_named_nodes_home_first_then_bursting(
        run: Runner, slurm_sky: Path, tmp_path: Path, scontrol: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    resume_file = tmp_path / "resume.json"
    resume_file.write_text(json.dumps({"jobs": [{"job_id": 7, "nodes": "sky-[1-3]"}], "all_nodes": "sky-[1-3]"}))
    monkeypatch.setenv("SLURM_RESUME_FILE", str(resume_file))
    r = run("slurm", "resume", "--wait", "sky-[1-3]")
    assert r.code == 0, r.err
    nodes = {n["name"]: n["site"] for n in run("ps", "skyb", "-o", "json").json()}
    assert nodes == {"sky-1": "home", "sky-2": "home", "sky-3": "cc"}
    log = _log(tmp_path)
    created = [ln for ln in log if " resume sky-" in ln]
    assert len(created) == 3 and any("sky-3 site=cc" in ln for ln in created), log
    assert any("job 7" in ln for ln in log)
    # Again: nothing new, each node kept.
    assert run("slurm", "resume", "--wait", "sky-[1-3]").code == 0
    assert len(run("ps", "skyb", "-o", "json").json()) == 3


def test_suspend_deletes_and_is_safe_to_repeat(run: Runner, slurm_sky: Path, tmp_path: Path, scontrol: Any) -> None:
    assert run("slurm", "resume", "--wait", "sky-[1-2]").code == 0
    assert run("slurm", "suspend", "sky-[1-2]").code == 0
    assert run("ps", "skyb", "-o", "json").json() == []
    again = run("slurm", "suspend", "sky-[1-2]")
    assert again.code == 0
    assert sum("no VM (already gone)" in ln for ln in _log(tmp_path)) == 2


def test_resume_fail_deletes_and_powers_down(run: Runner, slurm_sky: Path, scontrol: Any) -> None:
    assert run("slurm", "resume", "--wait", "sky-1").code == 0
    r = run("slurm", "resume-fail", "sky-1")
    assert r.code == 0, r.err
    assert run("ps", "skyb", "-o", "json").json() == []
    assert any("State=POWER_DOWN_FORCE" in c and "NodeName=sky-1" in c for c in scontrol())


def test_nodes_nowhere_placeable_go_back_to_power_down_at_once(run: Runner, slurm_sky: Path, tmp_path: Path,
                                                                scontrol: Any) -> None:
    r = run("slurm", "resume", "--wait", "sky-[1-12]")   # room for 2 at home + 8 on cc
    assert r.code == 2 and "2 node(s) not created" in r.err
    assert len(run("ps", "skyb", "-o", "json").json()) == 10
    failed = [ln for ln in _log(tmp_path) if "resume-failed" in ln]
    assert len(failed) == 2, _log(tmp_path)
    assert [c for c in scontrol() if "update" in c and "POWER_DOWN_FORCE" in c]


def test_unknown_names_and_bad_input_give_one_line_and_exit_2(run: Runner, slurm_sky: Path, tmp_path: Path,
                                                              scontrol: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("slurm", "suspend", "gpu-1")
    assert r.code == 2 and "not a skyctl node: gpu-1" in r.err
    r = run("slurm", "resume", "--wait", "sky-[1")
    assert r.code == 2 and "bad hostlist" in r.err
    monkeypatch.setenv("SLURM_RESUME_FILE", str(tmp_path / "gone.json"))
    r = run("slurm", "resume", "--wait", "sky-1,gpu-1")
    assert r.code == 2
    assert "does not exist" in r.err and "not a skyctl node: gpu-1" in r.err
    assert [n["name"] for n in run("ps", "skyb", "-o", "json").json()] == ["sky-1"]  # still launched


def test_slurmctld_unreachable_is_one_clear_line(run: Runner, slurm_sky: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("SKYCTL_SCONTROL", str(tmp_path / "no-such-scontrol"))
    r = run("slurm", "reconcile")
    assert r.code == 1 and "scontrol not found" in r.err


def test_reconcile_deletes_vms_behind_powered_down_nodes_and_clears_down_nodes(
        run: Runner, slurm_sky: Path, tmp_path: Path, scontrol: Any) -> None:
    assert run("slurm", "resume", "--wait", "sky-[1-2]").code == 0
    (tmp_path / "nodes.txt").write_text(
        "NodeName=sky-1 Arch=x86_64 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n"
        "NodeName=sky-2 State=IDLE Partitions=sky\n"
        "NodeName=sky-3 State=DOWN+CLOUD+POWERED_DOWN Partitions=sky\n"
        "NodeName=sky-4 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n")
    dry = run("slurm", "reconcile", "--dry-run", "-o", "json").json()
    assert {(a["node"], a["action"]) for a in dry} == {("sky-1", "delete-vm"), ("sky-3", "power-down")}
    assert len(run("ps", "skyb", "-o", "json").json()) == 2
    done = run("slurm", "reconcile", "-o", "json").json()
    assert all(a["done"] for a in done)
    assert [n["name"] for n in run("ps", "skyb", "-o", "json").json()] == ["sky-2"]
    assert any("NodeName=sky-3" in c and "POWER_DOWN_FORCE" in c for c in scontrol())


def test_reconcile_sends_a_running_node_whose_vm_is_gone_through_resume_fail(
        run: Runner, slurm_sky: Path, tmp_path: Path, scontrol: Any) -> None:
    assert run("slurm", "resume", "--wait", "sky-[1-2]").code == 0
    assert run("delete", "sky-1", "--yes").code == 0         # the VM dies under its running job
    (tmp_path / "nodes.txt").write_text("NodeName=sky-1 State=ALLOCATED Partitions=sky\n"
                                        "NodeName=sky-2 State=MIXED Partitions=sky\n")
    done = run("slurm", "reconcile", "-o", "json")
    assert done.code == 0, done.err
    assert [(a["node"], a["action"]) for a in done.json()] == [("sky-1", "resume-fail")]
    calls = scontrol()
    down = next(i for i, c in enumerate(calls) if "NodeName=sky-1" in c and "State=DOWN " in c + " ")
    power = next(i for i, c in enumerate(calls) if "NodeName=sky-1" in c and "POWER_DOWN_FORCE" in c)
    assert down < power     # DOWN first: Slurm ends the job at once, then the node powers down
    log = _log(tmp_path)
    assert any("reconcile resume-fail sky-1 site=-: Slurm shows the node up but its VM is gone" in ln for ln in log)
    assert any("resume-fail sky-1 site=-: no VM (already gone)" in ln for ln in log)
    assert [n["name"] for n in run("ps", "skyb", "-o", "json").json()] == ["sky-2"]


def test_config_prints_the_slurm_conf_lines_and_writes_the_programs(run: Runner, slurm_sky: Path,
                                                                     tmp_path: Path) -> None:
    r = run("slurm", "config", "--write-programs")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    progs = tmp_path / "progs"
    assert f"ResumeProgram={progs}/resume" in lines
    assert f"ResumeFailProgram={progs}/resume-fail" in lines
    assert "NodeName=sky-[1-12] CPUs=1 RealMemory=2048 State=CLOUD Feature=burst,skyctl-skyb" in lines
    assert "PartitionName=sky Nodes=sky-[1-12] State=UP" in lines
    resume = (progs / "resume").read_text()
    assert f"SKYCTL_CONFIG={slurm_sky}" in resume and 'slurm resume "$@" </dev/null' in resume
    assert (progs / "suspend").stat().st_mode & 0o111


@pytest.mark.parametrize(("slurm", "path"), [
    ({"groups": {"a": {"nodes": "x-[1-2]", "partition": "p"}, "b": {"nodes": "x-2", "partition": "p"}}},
     "slurm.groups"),
    ({"groups": {"a": {"nodes": "x-[1-", "partition": "p"}}}, "slurm.groups.a.nodes"),
    ({"groups": {"a": {"nodes": "x-1", "partition": "p", "size": "huge"}}}, "slurm.groups.a.size"),
])
def test_bad_slurm_sections_name_their_field(run: Runner, sky_file: Callable[[dict[str, Any]], Path],
                                             slurm: dict[str, Any], path: str) -> None:
    doc = federation(home={"driver": "memory", "tier": "local"})
    doc["slurm"] = slurm
    sky_file(doc)
    r = run("slurm", "config")
    assert r.code == 2 and path in r.err, r.err


def test_a_slurm_node_moving_home_is_drained_in_slurm_first_and_keeps_its_name(
        run: Runner, tmp_path: Path, sky_file: Callable[[dict[str, Any]], Path], scontrol: Any) -> None:
    doc = _slurm_federation(tmp_path)
    doc["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc"], "home": {"cooldown": "0s"}}]
    sky_file(doc)
    assert run("slurm", "resume", "--wait", "sky-[1-3]").code == 0     # home 2, cc 1
    assert run("slurm", "suspend", "sky-1").code == 0                  # room at home again
    (tmp_path / "nodes.txt").write_text("NodeName=sky-3 State=ALLOCATED+DRAIN Partitions=sky\n")
    # Still running a job: the drain waits, and gives up after drain_timeout (the move is undone).
    doc["bursting"][0]["drain_command"] = ["true"]
    doc["bursting"][0]["drain_timeout"] = "1s"
    sky_file(doc)
    busy = run("burst", "run", "-o", "json")
    assert busy.code == 3
    assert "jobs still running after 1s" in busy.json()["actions"][0]["error"]
    assert {n["name"]: n["site"] for n in run("ps", "skyb", "-o", "json").json()} == {"sky-2": "home", "sky-3": "cc"}
    # Drained: the move goes through under the same name, and Slurm gets the name back.
    (tmp_path / "nodes.txt").write_text("NodeName=sky-3 State=IDLE+DRAIN Partitions=sky\n")
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    assert {n["name"]: n["site"] for n in run("ps", "skyb", "-o", "json").json()} == {"sky-2": "home", "sky-3": "home"}
    calls = scontrol()
    drain = [i for i, c in enumerate(calls) if c.startswith("update NodeName=sky-3 State=DRAIN")]
    resumed = [i for i, c in enumerate(calls) if c == "update NodeName=sky-3 State=RESUME"]
    assert len(drain) == 2 and len(resumed) == 1 and drain[-1] < resumed[0], calls


# ---------------------------------------------------------------- one writer per group (issue 15)
# `hold_lock` is another command changing the group (a scale, a launch); it lets go only when
# the test says so, after the waiter said it waits: no sleep decides anything here.


def _up_to(line: str) -> float:
    """The bound a "waiting for it (up to N s)" line gives."""
    import re

    found = re.search(r"waiting for it \(up to ([0-9.]+) s\)", line)
    assert found, line
    return float(found.group(1))

def test_suspend_waits_for_a_command_changing_its_group(
        slurm_sky: Path, tmp_path: Path, scontrol: Any, monkeypatch: pytest.MonkeyPatch,
        hold_lock: Callable[..., Any], skyctl_process: Any) -> None:
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "600")
    assert skyctl_process.run("slurm", "resume", "--wait", "sky-[1-2]").vms == 2
    holder = hold_lock("skyb")
    skyctl_process.start("slurm", "suspend", "sky-1")
    line = skyctl_process.wait_for("waiting for it")
    assert f"lock-wait sky-1 site=-: skyb is being changed by pid {holder.pid}" in line, line
    assert 0 < _up_to(line) <= 60  # half of SuspendTimeout (120 s), not SKYCTL_LOCK_WAIT (600 s)
    assert skyctl_process.running()
    holder.release()
    done = skyctl_process.finish()
    assert done.code == 0, done.err
    assert done.vms == 1
    assert any(" suspend sky-1 site=home: VM deleted" in ln for ln in _log(tmp_path))


RESUMED = """
open({nodes!r}, "w").write("NodeName=sky-1 State=IDLE Partitions=sky\\n")
"""


def test_reconcile_waits_and_looks_again_under_the_lock(
        slurm_sky: Path, tmp_path: Path, scontrol: Any, monkeypatch: pytest.MonkeyPatch,
        hold_lock: Callable[..., Any], skyctl_process: Any) -> None:
    """Slurm shows sky-1 powered down while a command changing skyb runs; by the time that
    command lets go, Slurm has resumed sky-1: reconcile, which waited, keeps its VM."""
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "600")
    assert skyctl_process.run("slurm", "resume", "--wait", "sky-[1-2]").vms == 2
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("NodeName=sky-1 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n")
    holder = hold_lock("skyb", under=RESUMED.format(nodes=str(nodes)))
    skyctl_process.start("slurm", "reconcile", "-o", "json")
    line = skyctl_process.wait_for("waiting for it")  # said on stderr by reconcile too
    assert f"pid {holder.pid}" in line, line
    assert skyctl_process.running()
    holder.release()
    done = skyctl_process.finish()
    assert done.code == 0, done.err
    assert done.json() == []   # planned again under the lock: nothing to do any more
    assert done.vms == 2
    # The control: Slurm still shows it powered down, and no one holds skyb: deleted at once.
    nodes.write_text("NodeName=sky-1 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n")
    done = skyctl_process.run("slurm", "reconcile", "-o", "json")
    assert [(a["node"], a["action"]) for a in done.json()] == [("sky-1", "delete-vm")]
    assert done.vms == 1 and "waiting" not in done.err


@pytest.fixture
def short_slurm_timeouts(tmp_path: Path, sky_file: Callable[[dict[str, Any]], Path],
                         monkeypatch: pytest.MonkeyPatch) -> Path:
    """ResumeTimeout and SuspendTimeout 1 s, SKYCTL_LOCK_WAIT 60 s: the programs' half-timeout
    bound (0.5 s), not SKYCTL_LOCK_WAIT, must end their wait."""
    monkeypatch.setenv("SKYCTL_LOCK_WAIT", "60")
    return sky_file(_slurm_federation(tmp_path, resume_timeout=1, suspend_timeout=1))


def test_resume_of_a_busy_group_gives_up_within_half_resume_timeout_and_powers_down(
        run: Runner, short_slurm_timeouts: Path, tmp_path: Path, scontrol: Any,
        hold_lock: Callable[..., Any]) -> None:
    holder = hold_lock("skyb")
    r = run("slurm", "resume", "--wait", "sky-[1-2]")
    assert r.code == 2 and "2 node(s) not created: sky-[1-2]" in r.err, r.err
    assert run("ps", "skyb", "-o", "json").json() == []
    log = _log(tmp_path)
    waits = [ln for ln in log if "lock-wait sky-[1-2]" in ln]
    assert len(waits) == 1 and _up_to(waits[0]) <= 0.5, log  # half of ResumeTimeout, not SKYCTL_LOCK_WAIT
    failed = [ln for ln in log if " resume-failed " in ln]
    assert len(failed) == 2 and all(f"skyb is being changed by pid {holder.pid}" in ln for ln in failed), log
    # Slurm's view: back to POWER_DOWN at once, ready for the next resume (never left DOWN).
    assert any("NodeName=sky-[1-2]" in c and "State=POWER_DOWN_FORCE" in c for c in scontrol())
    holder.release()
    assert run("slurm", "resume", "--wait", "sky-[1-2]").code == 0
    assert len(run("ps", "skyb", "-o", "json").json()) == 2


def test_suspend_and_resume_fail_of_a_busy_group_fail_in_one_line_and_reconcile_cleans_up(
        run: Runner, short_slurm_timeouts: Path, tmp_path: Path, scontrol: Any,
        hold_lock: Callable[..., Any]) -> None:
    assert run("slurm", "resume", "--wait", "sky-[1-2]").code == 0
    holder = hold_lock("skyb")
    r = run("slurm", "suspend", "sky-1")
    assert r.code == 1, r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and f"group skyb is being changed by pid {holder.pid}" in errors[0], r.err
    assert "Traceback" not in r.err
    assert len(run("ps", "skyb", "-o", "json").json()) == 2  # nothing deleted under someone else
    assert any("suspend-failed sky-1" in ln and "skyctl slurm reconcile" in ln for ln in _log(tmp_path))
    r = run("slurm", "resume-fail", "sky-2")
    assert r.code == 1 and f"pid {holder.pid}" in r.err, r.err
    assert len(run("ps", "skyb", "-o", "json").json()) == 2
    # ...but the node goes back to POWER_DOWN all the same: never left DOWN.
    assert any("NodeName=sky-2" in c and "State=POWER_DOWN_FORCE" in c for c in scontrol())
    holder.kill()
    (tmp_path / "nodes.txt").write_text("NodeName=sky-1 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n"
                                        "NodeName=sky-2 State=IDLE+CLOUD+POWERED_DOWN Partitions=sky\n")
    done = run("slurm", "reconcile", "-o", "json")
    assert done.code == 0, done.err
    assert sorted(a["node"] for a in done.json() if a["action"] == "delete-vm") == ["sky-1", "sky-2"]
    assert run("ps", "skyb", "-o", "json").json() == []
