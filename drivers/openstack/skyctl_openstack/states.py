"""Nova server status -> skyctl NodeState: the one explicit map. Pure.

A status not in the map is UNKNOWN, never an exception; a server whose task is `deleting` is
already DELETED whatever its status still says.
"""

from __future__ import annotations

from collections.abc import Mapping

from skyctl.model import NodeState

# One explicit map from Nova's server status to NodeState; anything else is UNKNOWN.
NOVA_STATES: Mapping[str, NodeState] = {
    "ACTIVE": NodeState.RUNNING,
    "BUILD": NodeState.PENDING,
    "REBUILD": NodeState.PENDING,
    "REBOOT": NodeState.PENDING,
    "HARD_REBOOT": NodeState.PENDING,
    "PASSWORD": NodeState.PENDING,
    "RESIZE": NodeState.PENDING,
    "VERIFY_RESIZE": NodeState.PENDING,
    "REVERT_RESIZE": NodeState.PENDING,
    "MIGRATING": NodeState.PENDING,
    "SHUTOFF": NodeState.STOPPED,
    "SUSPENDED": NodeState.STOPPED,
    "PAUSED": NodeState.STOPPED,
    "SHELVED": NodeState.STOPPED,
    "SHELVED_OFFLOADED": NodeState.STOPPED,
    "ERROR": NodeState.ERROR,
    "DELETED": NodeState.DELETED,
    "SOFT_DELETED": NodeState.DELETED,
}


# Power transitions Nova shows only in task_state (the status still says where it was), mapped
# as OpenNebula's map does the same moves: powering off is already STOPPED (ONE
# SHUTDOWN_POWEROFF), powering on is PENDING like a boot (ONE BOOT_POWEROFF).
TASK_STATES: Mapping[str, NodeState] = {
    "deleting": NodeState.DELETED,
    "powering-off": NodeState.STOPPED,
    "powering-on": NodeState.PENDING,
}


def node_state(status: str | None, task_state: str | None = None) -> NodeState:
    if task_state in TASK_STATES:
        return TASK_STATES[task_state]
    return NOVA_STATES.get((status or "").upper(), NodeState.UNKNOWN)

