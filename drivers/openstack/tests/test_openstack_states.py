"""The OpenStack driver's one state map: Nova's server status (and task state) -> NodeState."""

from __future__ import annotations

import pytest

from skyctl.model import NodeState
from skyctl_openstack import states


@pytest.mark.parametrize("status,state", [
    ("ACTIVE", NodeState.RUNNING), ("BUILD", NodeState.PENDING), ("REBUILD", NodeState.PENDING),
    ("HARD_REBOOT", NodeState.PENDING), ("SHUTOFF", NodeState.STOPPED), ("SUSPENDED", NodeState.STOPPED),
    ("PAUSED", NodeState.STOPPED), ("SHELVED_OFFLOADED", NodeState.STOPPED), ("ERROR", NodeState.ERROR),
    ("DELETED", NodeState.DELETED), ("SOFT_DELETED", NodeState.DELETED), ("RESCUE", NodeState.UNKNOWN),
    ("WHATEVER", NodeState.UNKNOWN), (None, NodeState.UNKNOWN),
])
def test_nova_status_map(status, state) -> None:
    assert states.node_state(status) is state


def test_deleting_task_state_is_deleted() -> None:
    assert states.node_state("ACTIVE", "deleting") is NodeState.DELETED
