"""A node that goes to ERROR for a reason other than capacity (issue 13): deleted, reported
with its fault, and the launch goes on and lists every node it made."""

from __future__ import annotations

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner

FAULT = "Build of instance aborted: Failed to allocate the network(s), not rescheduling."


def test_a_node_in_error_is_deleted_reported_and_the_launch_goes_on(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    memdriver.cloud("home").build_fault = FAULT
    res = run("launch", "bf", "--count", "3", "-o", "json")
    assert res.code == 0, res.err
    data = res.json()
    # home's nodes broke; their names were placed again on cc and every node made is listed.
    assert sorted(n["site"] for n in data["nodes"]) == ["cc", "cc", "cc"]
    assert data["created"] == 3 and data["missing"] == 0
    failed = {f["name"]: f for f in data["failures"]}
    assert failed and all(f["site"] == "home" and FAULT in f["message"] for f in failed.values())
    assert FAULT in data["full_sites"]["home"]
    # The broken servers were deleted: nothing is left on home.
    assert memdriver.cloud("home").nodes == {}


def test_with_nowhere_else_to_go_the_nodes_made_are_still_listed(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    memdriver.cloud("cc").build_fault = FAULT
    res = run("launch", "bg", "--count", "4", "-o", "json")
    data = res.json()
    assert res.code == 3, res.err   # partial: home's 2 are made, cc broke the rest
    assert sorted(n["site"] for n in data["nodes"]) == ["home", "home"]
    assert data["missing"] == 2 and all(FAULT in f["message"] for f in data["failures"])
    assert memdriver.cloud("cc").nodes == {}
