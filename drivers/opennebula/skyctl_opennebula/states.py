"""OpenNebula STATE / LCM_STATE -> skyctl NodeState: the one explicit map.

LCM_STATE only means something while STATE is ACTIVE (3); some older servers leave a stale
LCM_STATE on other states (a powered-off VM recorded as 8/3), so those map on STATE alone.
An unknown pair maps to UNKNOWN, never to an exception.
"""

from __future__ import annotations

from skyctl.model import NodeState

P, R, S, E, D, U = (NodeState.PENDING, NodeState.RUNNING, NodeState.STOPPED, NodeState.ERROR,
                    NodeState.DELETED, NodeState.UNKNOWN)

ACTIVE = 3

# STATE (when not ACTIVE): name, NodeState
VM_STATES: dict[int, tuple[str, NodeState]] = {
    0: ("INIT", P),
    1: ("PENDING", P),
    2: ("HOLD", P),
    4: ("STOPPED", S),
    5: ("SUSPENDED", S),
    6: ("DONE", D),
    7: ("FAILED", E),          # gone since 4.x, still seen on old servers
    8: ("POWEROFF", S),
    9: ("UNDEPLOYED", S),
    10: ("CLONING", P),
    11: ("CLONING_FAILURE", E),
}

# LCM_STATE while ACTIVE: name, NodeState. Transitions map to where they lead.
LCM_STATES: dict[int, tuple[str, NodeState]] = {
    0: ("LCM_INIT", P),
    1: ("PROLOG", P),
    2: ("BOOT", P),
    3: ("RUNNING", R),
    4: ("MIGRATE", R),
    5: ("SAVE_STOP", S),
    6: ("SAVE_SUSPEND", S),
    7: ("SAVE_MIGRATE", R),
    8: ("PROLOG_MIGRATE", R),
    9: ("PROLOG_RESUME", P),
    10: ("EPILOG_STOP", S),
    11: ("EPILOG", D),
    12: ("SHUTDOWN", D),
    13: ("CANCEL", D),
    14: ("FAILURE", E),
    15: ("CLEANUP_RESUBMIT", P),
    16: ("UNKNOWN", U),
    17: ("HOTPLUG", R),
    18: ("SHUTDOWN_POWEROFF", S),
    19: ("BOOT_UNKNOWN", P),
    20: ("BOOT_POWEROFF", P),
    21: ("BOOT_SUSPENDED", P),
    22: ("BOOT_STOPPED", P),
    23: ("CLEANUP_DELETE", D),
    24: ("HOTPLUG_SNAPSHOT", R),
    25: ("HOTPLUG_NIC", R),
    26: ("HOTPLUG_SAVEAS", R),
    27: ("HOTPLUG_SAVEAS_POWEROFF", S),
    28: ("HOTPLUG_SAVEAS_SUSPENDED", S),
    29: ("SHUTDOWN_UNDEPLOY", S),
    30: ("EPILOG_UNDEPLOY", S),
    31: ("PROLOG_UNDEPLOY", P),
    32: ("BOOT_UNDEPLOY", P),
    33: ("HOTPLUG_PROLOG_POWEROFF", S),
    34: ("HOTPLUG_EPILOG_POWEROFF", S),
    35: ("BOOT_MIGRATE", P),
    36: ("BOOT_FAILURE", E),
    37: ("BOOT_MIGRATE_FAILURE", E),
    38: ("PROLOG_MIGRATE_FAILURE", E),
    39: ("PROLOG_FAILURE", E),
    40: ("EPILOG_FAILURE", E),
    41: ("EPILOG_STOP_FAILURE", E),
    42: ("EPILOG_UNDEPLOY_FAILURE", E),
    43: ("PROLOG_MIGRATE_POWEROFF", S),
    44: ("PROLOG_MIGRATE_POWEROFF_FAILURE", E),
    45: ("PROLOG_MIGRATE_SUSPEND", S),
    46: ("PROLOG_MIGRATE_SUSPEND_FAILURE", E),
    47: ("BOOT_UNDEPLOY_FAILURE", E),
    48: ("BOOT_STOPPED_FAILURE", E),
    49: ("PROLOG_RESUME_FAILURE", E),
    50: ("PROLOG_UNDEPLOY_FAILURE", E),
    51: ("DISK_SNAPSHOT_POWEROFF", S),
    52: ("DISK_SNAPSHOT_REVERT_POWEROFF", S),
    53: ("DISK_SNAPSHOT_DELETE_POWEROFF", S),
    54: ("DISK_SNAPSHOT_SUSPENDED", S),
    55: ("DISK_SNAPSHOT_REVERT_SUSPENDED", S),
    56: ("DISK_SNAPSHOT_DELETE_SUSPENDED", S),
    57: ("DISK_SNAPSHOT", R),
    58: ("DISK_SNAPSHOT_REVERT", R),
    59: ("DISK_SNAPSHOT_DELETE", R),
    60: ("PROLOG_MIGRATE_UNKNOWN", U),
    61: ("PROLOG_MIGRATE_UNKNOWN_FAILURE", E),
    62: ("DISK_RESIZE", R),
    63: ("DISK_RESIZE_POWEROFF", S),
    64: ("DISK_RESIZE_UNDEPLOYED", S),
    65: ("HOTPLUG_NIC_POWEROFF", S),
    66: ("HOTPLUG_RESIZE", R),
    67: ("HOTPLUG_SAVEAS_UNDEPLOYED", S),
    68: ("HOTPLUG_SAVEAS_STOPPED", S),
    69: ("BACKUP", R),
    70: ("BACKUP_POWEROFF", S),
    71: ("RESTORE", S),
}


def node_state(state: int | None, lcm_state: int | None) -> NodeState:
    if state is None:
        return U
    if state != ACTIVE:
        return VM_STATES.get(state, ("", U))[1]
    if lcm_state is None:
        return U
    return LCM_STATES.get(lcm_state, ("", U))[1]


def state_names(state: int | None, lcm_state: int | None) -> tuple[str, str]:
    """('ACTIVE', 'RUNNING'), ('POWEROFF', 'LCM_INIT')... unknown numbers as their digits."""
    if state == ACTIVE:
        lcm = LCM_STATES.get(lcm_state, (str(lcm_state),))[0] if lcm_state is not None else "?"
        return "ACTIVE", lcm
    name = VM_STATES.get(state, (str(state),))[0] if state is not None else "?"
    return name, "LCM_INIT"
