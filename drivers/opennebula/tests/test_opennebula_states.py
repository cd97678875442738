"""The one explicit OpenNebula STATE/LCM_STATE -> NodeState map."""

from __future__ import annotations

import pytest

from skyctl.model import NodeState
from skyctl_opennebula.states import LCM_STATES, VM_STATES, node_state, state_names


@pytest.mark.parametrize(("state", "lcm", "want"), [
    (0, 0, NodeState.PENDING),      # INIT
    (1, 0, NodeState.PENDING),      # PENDING
    (2, 0, NodeState.PENDING),      # HOLD
    (3, 1, NodeState.PENDING),      # PROLOG
    (3, 2, NodeState.PENDING),      # BOOT
    (3, 3, NodeState.RUNNING),
    (3, 4, NodeState.RUNNING),      # MIGRATE
    (3, 17, NodeState.RUNNING),     # HOTPLUG
    (3, 25, NodeState.RUNNING),     # HOTPLUG_NIC
    (3, 18, NodeState.STOPPED),     # SHUTDOWN_POWEROFF
    (3, 20, NodeState.PENDING),     # BOOT_POWEROFF (resuming)
    (3, 14, NodeState.ERROR),       # FAILURE
    (3, 36, NodeState.ERROR),       # BOOT_FAILURE
    (3, 39, NodeState.ERROR),       # PROLOG_FAILURE
    (3, 16, NodeState.UNKNOWN),     # UNKNOWN (host lost)
    (3, 12, NodeState.DELETED),     # SHUTDOWN (terminating)
    (3, 11, NodeState.DELETED),     # EPILOG
    (4, 0, NodeState.STOPPED),      # STOPPED
    (5, 0, NodeState.STOPPED),      # SUSPENDED
    (6, 0, NodeState.DELETED),      # DONE
    (7, 0, NodeState.ERROR),        # FAILED (old servers)
    (8, 0, NodeState.STOPPED),      # POWEROFF
    (8, 3, NodeState.STOPPED),      # POWEROFF with a stale LCM_STATE (recorded from a real server)
    (9, 0, NodeState.STOPPED),      # UNDEPLOYED
    (11, 0, NodeState.ERROR),       # CLONING_FAILURE
])
def test_known_pairs(state: int, lcm: int, want: NodeState) -> None:
    assert node_state(state, lcm) is want


@pytest.mark.parametrize(("state", "lcm"), [(3, 999), (42, 0), (None, None), (3, None)])
def test_unknown_pairs_map_to_unknown(state: int | None, lcm: int | None) -> None:
    assert node_state(state, lcm) is NodeState.UNKNOWN


def test_every_lcm_state_pyone_knows_is_mapped() -> None:
    import pyone

    assert {s.value for s in pyone.LCM_STATE} <= set(LCM_STATES)
    assert {s.value for s in pyone.VM_STATE} <= set(VM_STATES) | {3}
    for s in pyone.LCM_STATE:
        assert LCM_STATES[s.value][0] == s.name


def test_names() -> None:
    assert state_names(3, 3) == ("ACTIVE", "RUNNING")
    assert state_names(8, 3) == ("POWEROFF", "LCM_INIT")
    assert state_names(3, 999) == ("ACTIVE", "999")
