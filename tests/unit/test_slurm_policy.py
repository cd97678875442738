"""The pure side of skyctl as Slurm's provisioner: names to groups, slurm.conf lines, and what
reconcile does for each pair of Slurm state and VM."""

from __future__ import annotations

from skyctl.policy.slurm import NodeSet, Programs, conf_lines, map_nodes, reconcile_actions

SETS = [NodeSet("a", ("a-1", "a-2"), "cloud", ("burst",), 10, 2, 4096), NodeSet("b", ("b-1",), "gpu")]


def test_names_map_to_their_group_in_order_and_strangers_apart() -> None:
    m = map_nodes(["b-1", "a-2", "x-9", "a-1"], SETS)
    assert m.by_group == {"b": ["b-1"], "a": ["a-2", "a-1"]}
    assert m.unknown == ["x-9"]


def test_conf_lines_declare_cloud_nodes_with_features_weights_and_partitions() -> None:
    progs = Programs("/p/resume", "/p/suspend", "/p/resume-fail", 300, 120, 600)
    lines = conf_lines(SETS, progs)
    assert "ResumeProgram=/p/resume" in lines and "ResumeFailProgram=/p/resume-fail" in lines
    assert "SuspendTime=300" in lines and "ResumeTimeout=600" in lines
    assert "NodeName=a-1,a-2 CPUs=2 RealMemory=4096 State=CLOUD Feature=burst,skyctl-a Weight=10" in lines
    assert "NodeName=b-1 CPUs=1 RealMemory=1024 State=CLOUD Feature=skyctl-b" in lines
    assert "PartitionName=cloud Nodes=a-1,a-2 State=UP" in lines and "PartitionName=gpu Nodes=b-1 State=UP" in lines


def test_reconcile_deletes_vms_behind_powered_down_nodes_and_lifts_down_nodes() -> None:
    states = {
        "a-1": {"IDLE", "CLOUD", "POWERED_DOWN"},                 # VM left behind: delete it
        "a-2": {"IDLE", "CLOUD", "POWERED_DOWN", "POWERING_UP"},  # being resumed: leave it
        "b-1": {"DOWN", "CLOUD", "POWERED_DOWN"},                 # failed resume: power down
        "c-1": {"DOWN", "NOT_RESPONDING"},                        # its VM was killed
        "c-2": {"IDLE"},                                          # up and fine
        "x-1": {"IDLE", "CLOUD", "POWERED_DOWN"},                 # not ours
    }
    actions = reconcile_actions(states, {"a-1": "cc", "a-2": "home", "b-1": "home", "c-2": "cc", "x-1": "home"},
                                ["a-1", "a-2", "b-1", "c-1", "c-2"])
    assert [(a.node, a.action) for a in actions] == [("a-1", "delete-vm"), ("b-1", "delete-vm"),
                                                      ("b-1", "power-down"), ("c-1", "power-down")]


def test_a_node_slurm_shows_up_whose_vm_is_gone_or_in_error_goes_through_resume_fail() -> None:
    states = {
        "k-1": {"ALLOCATED"},                        # running a job, VM killed under it
        "k-2": {"MIXED"},                            # running a job, VM in error
        "k-3": {"IDLE", "POWERING_DOWN"},            # being suspended: its VM goes anyway
        "k-4": {"ALLOCATED"},                        # fine
        "k-5": {"IDLE", "CLOUD", "POWERED_DOWN"},    # powered down, no VM: fine
    }
    actions = reconcile_actions(states, {"k-2": "cc", "k-4": "home"}, ["k-1", "k-2", "k-3", "k-4", "k-5"],
                                dead=["k-2"])
    assert [(a.node, a.action, a.why) for a in actions] == [
        ("k-1", "resume-fail", "Slurm shows the node up but its VM is gone"),
        ("k-2", "resume-fail", "Slurm shows the node up but its VM on cc is in error")]
