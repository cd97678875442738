"""Real slurmctld and slurmd (Debian's slurm-wlm) with skyctl as its cloud provisioner over the
sandbox federation: jobs make nodes appear at home first, then burst; idle nodes disappear;
failures end with no VM left and no node left DOWN.

Run by `.ci/run` (marker slurm); see tests/integration/slurm/cluster.py for how a sandbox VM's
slurmd runs.
"""

from __future__ import annotations

from typing import Any

import json
from collections import Counter

import pytest


pytestmark = pytest.mark.slurm


def _queue_empty(c: Any) -> bool:
    return not c.run("squeue", "-h").stdout.strip()


def _all_powered_down(c: Any) -> bool:
    states = c.node_states()
    return all("POWERED_DOWN" in s and "POWERING" not in s and "DOWN+" not in s.split("IDLE")[0]
               for s in states.values())


def _no_vms(c: Any) -> bool:
    return c.vms() == []


def test_six_jobs_four_nodes_at_home_two_burst_all_complete_then_every_vm_goes(cluster: Any) -> None:
    c = cluster
    outs = [c.root / f"six-{i}.out" for i in range(6)]
    for out in outs:
        c.run("sbatch", "-N1", "-o", str(out), "--wrap", "echo ran on $SLURMD_NODENAME; sleep 8")
    vms = c.wait_for("6 VMs", lambda: v if len(v := c.vms()) == 6 else None, timeout=90)
    assert Counter(v["site"] for v in vms) == {"home": 4, "cc": 2}, vms
    c.wait_for("every job to finish", lambda: _queue_empty(c), timeout=180, interval=2)
    ran = sorted(out.read_text().split()[-1] for out in outs)
    assert ran == sorted(v["name"] for v in vms), ran   # each job on its own cloud node
    # After SuspendTime idle, slurmctld calls SuspendProgram: nothing left on the clouds.
    c.wait_for("every VM to be deleted", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)
    c.wait_for("every node powered down", lambda: _all_powered_down(c), timeout=60, interval=2)
    log = (c.root / "skyctl-slurm.log").read_text()
    assert log.count(" site=home: created") == 4 and log.count(" site=cc: created") == 2, log


def test_a_site_refusing_creates_makes_resume_fail_over(cluster: Any) -> None:
    c = cluster
    c.sky("sandbox", "fault", "home", "--down")
    try:
        c.run("sbatch", "-N1", "-o", str(c.root / "failover.out"), "--wrap", "sleep 2")
        vms = c.wait_for("a VM", lambda: c.vms(), timeout=90)
        assert [v["site"] for v in vms] == ["cc"], vms
    finally:
        c.sky("sandbox", "fault", "home", "--up")
    c.wait_for("the job to finish", lambda: _queue_empty(c), timeout=120, interval=2)
    assert f"resume {vms[0]['name']} site=cc: created" in (c.root / "skyctl-slurm.log").read_text()
    c.wait_for("every VM to be deleted", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)


def test_a_node_that_never_comes_up_goes_through_resume_fail_and_leaves_no_vm(cluster: Any) -> None:
    c = cluster
    c.wait_for("every node powered down", lambda: _all_powered_down(c), timeout=60, interval=2)
    c.hold_slurmd = True    # the VMs boot, but no slurmd ever registers (a guest stuck in boot)
    try:
        job = c.run("sbatch", "--parsable", "-N1", "-o", "/dev/null", "--wrap", "true").stdout.strip()
        vm = c.wait_for("a VM", lambda: c.vms(), timeout=90)[0]
        # ResumeTimeout: slurmctld calls ResumeFailProgram, which deletes the VM and powers the node down.
        c.wait_for("the VM to be deleted", lambda: _no_vms(c), timeout=c.resume_timeout + 60, interval=2)
        log = (c.root / "skyctl-slurm.log").read_text()
        assert f"resume-fail {vm['name']} site={vm['site']}: VM deleted" in log, log[-2000:]
        c.wait_for("the node back to POWER_DOWN, not DOWN",
                   lambda: "DOWN+" not in c.node_states()[vm["name"]].split("IDLE")[0]
                   and "POWERED_DOWN" in c.node_states()[vm["name"]], timeout=60, interval=2)
    finally:
        c.hold_slurmd = False
        c.run("scancel", job, ok=(0, 1))
    c.wait_for("every VM to be deleted", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)


def _running_on(c: Any, job: str) -> str | None:
    out = c.run("squeue", "-h", "-j", job, "-o", "%T %N", ok=(0, 1)).stdout.split()
    return out[1] if len(out) == 2 and out[0] == "RUNNING" else None


def test_a_node_whose_vm_is_killed_mid_job_goes_through_resume_fail_and_leaves_no_vm(cluster: Any) -> None:
    c = cluster
    c.wait_for("no VM", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)
    c.wait_for("every node powered down", lambda: _all_powered_down(c), timeout=60, interval=2)
    job = c.run("sbatch", "--parsable", "-N1", "-o", "/dev/null", "--wrap", "sleep 600").stdout.strip()
    try:
        name = c.wait_for("the job to run", lambda: _running_on(c, job), timeout=c.resume_timeout * 3, interval=1)
        c.wait_for(f"{name}'s slurmd, the job's slurmstepd and the job", lambda: len(c.node_processes(name)) >= 3,
                   timeout=30, interval=0.5)
        # The VM dies under the running job (a hypervisor lost, an admin's delete): the node
        # agent takes everything of the node with it, slurmstepd and the job included.
        c.sky("delete", name, "--yes")
        c.wait_for(f"every process of {name} to end", lambda: not c.node_processes(name), timeout=30, interval=0.5)
        # What the reconcile timer does next: Slurm still shows the node running the job and its
        # VM is gone, so it goes through resume-fail at once (not after SlurmdTimeout): what is
        # left is deleted and the node goes back to POWER_DOWN, never DOWN.
        actions = json.loads(c.sky("slurm", "reconcile", "-o", "json").stdout)
        assert {(a["node"], a["action"]) for a in actions} == {(name, "resume-fail")}, actions
        log = (c.root / "skyctl-slurm.log").read_text()
        assert f"reconcile resume-fail {name} site=-: Slurm shows the node up but its VM is gone" in log, log[-2000:]
        assert f"resume-fail {name} site=-: no VM (already gone)" in log, log[-2000:]
    finally:
        c.run("scancel", job, ok=(0, 1))   # Slurm requeues it; this test is about the node, not the job
    c.wait_for("every node powered down, none DOWN", lambda: _all_powered_down(c),
               timeout=c.resume_timeout + c.suspend_time + 90, interval=2)
    c.wait_for("every VM to be deleted", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)
    assert json.loads(c.sky("slurm", "reconcile", "-o", "json").stdout) == []


def test_reconcile_removes_a_vm_planted_behind_a_powered_down_node(cluster: Any) -> None:
    c = cluster
    c.wait_for("no VM", lambda: _no_vms(c), timeout=c.suspend_time + 60, interval=2)
    c.hold_slurmd = True     # the planted VM is not one Slurm asked for: no slurmd either
    try:
        # As if a SuspendProgram had failed to delete it (the program has the munge key's env file).
        c.run(str(c.root / "programs" / "resume"), "--wait", "sky-8")
        assert [v["name"] for v in c.vms()] == ["sky-8"]
        assert "POWERED_DOWN" in c.node_states()["sky-8"]
        actions = json.loads(c.sky("slurm", "reconcile", "-o", "json").stdout)
        assert {(a["node"], a["action"]) for a in actions} == {("sky-8", "delete-vm")}, actions
        assert _no_vms(c)
        assert json.loads(c.sky("slurm", "reconcile", "-o", "json").stdout) == []
    finally:
        c.hold_slurmd = False
