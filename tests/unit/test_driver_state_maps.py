"""The two drivers' state maps agree where the clouds do the same thing: a node being switched
off, switched on, or off (issue 16: `ps --state stopped` means the same on every site)."""

from __future__ import annotations

from skyctl.model import NodeState
from skyctl_opennebula import states as one
from skyctl_openstack import states as nova

ACTIVE, POWEROFF = 3, 8
SHUTDOWN_POWEROFF, BOOT_POWEROFF, RUNNING = 18, 20, 3


def test_powering_off_is_stopped_on_both() -> None:
    assert nova.node_state("ACTIVE", "powering-off") is one.node_state(ACTIVE, SHUTDOWN_POWEROFF) is NodeState.STOPPED


def test_powering_on_is_pending_on_both() -> None:
    assert nova.node_state("SHUTOFF", "powering-on") is one.node_state(ACTIVE, BOOT_POWEROFF) is NodeState.PENDING


def test_off_and_running_are_the_same_on_both() -> None:
    assert nova.node_state("SHUTOFF") is one.node_state(POWEROFF, 0) is NodeState.STOPPED
    assert nova.node_state("ACTIVE") is one.node_state(ACTIVE, RUNNING) is NodeState.RUNNING
    assert nova.node_state("REBOOT", "reboot_started") is NodeState.PENDING
