"""Real guests: contexts applied by real cloud-init in Debian 12 under QEMU, checked from inside
through the guests' own sshd (marker `guests`; its own step in .ci/run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.guests

TEST_NODES = ["osg-0", "oneg-0"]   # base + guesttest.yaml: on OpenStack-style home, OpenNebula-style cc


def _ok(fleet, group: str) -> None:  # type: ignore[no-untyped-def]
    launch = fleet.launches[group]
    assert launch.code == 0, f"launch {group} --wait exited {launch.code}:\n{launch.err[-3000:]}"


def test_launch_wait_returns_ready_nodes_on_both_kinds_of_site(fleet) -> None:  # type: ignore[no-untyped-def]
    for group, site in (("osg", "home"), ("oneg", "cc")):
        _ok(fleet, group)
        ps = json.loads(fleet.run("ps", group, "-o", "json").stdout)
        assert [(n["name"], n["site"], n["state"]) for n in ps] == [(f"{group}-0", site, "running")]
    guests = fleet.status["guests"]
    assert guests["kind"] == "qemu" and guests["accel"] in ("kvm", "tcg")
    finished = {v["name"]: v["finished_after"] for v in guests["vms"]}
    assert finished["osg-0"] and finished["oneg-0"], finished   # their consoles said cloud-init finished


@pytest.mark.parametrize("node", TEST_NODES)
def test_the_context_was_applied_inside_the_guest(fleet, node: str) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, node.split("-")[0])
    greeting = "hello from " + node.split("-")[0]
    assert 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in fleet.sh(node, "cat /etc/os-release")
    # The login user base created, reached with the key skyctl delivered; passwordless sudo.
    assert fleet.sh(node, "id -un").strip() == "skyctl"
    assert "ssh-ed25519 " in fleet.sh(node, "cat ~/.ssh/authorized_keys")
    assert fleet.sh(node, "sudo -n id -u").strip() == "0"
    assert fleet.sh(node, "hostname").strip() == node
    # The test profile: its user, file, commands and package.
    assert fleet.sh(node, "getent passwd tester").startswith("tester:")
    assert fleet.sh(node, "sudo -n cat /etc/skyctl-guesttest/greeting.txt") == greeting + "\n"
    assert fleet.sh(node, "stat -c %a /etc/skyctl-guesttest/greeting.txt").strip() == "640"
    assert fleet.sh(node, "cat /var/tmp/guesttest-command.out").strip() == f"ran on {node} as root"
    assert fleet.sh(node, "cat /var/tmp/guesttest-tree.out").startswith("tree v")
    assert fleet.sh(node, "dpkg-query -W -f='${Status}' tree").strip() == "install ok installed"
    # cloud-init itself: done, no error anywhere.
    assert fleet.sh(node, "cloud-init status --long").startswith("status: done")
    result = json.loads(fleet.sh(node, "sudo -n cat /run/cloud-init/result.json"))
    assert result["v1"]["errors"] == []


def test_the_datasources_are_the_ones_each_cloud_offers(fleet) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "osg")
    _ok(fleet, "oneg")
    assert "DataSourceConfigDrive" in fleet.sh("osg-0", "cloud-init status --long")
    assert "DataSourceOpenNebula" in fleet.sh("oneg-0", "cloud-init status --long")
    # oned's CONTEXT CD-ROM carried the key and the host name.
    context = fleet.sh("oneg-0", "sudo -n sh -c 'mount -o ro /dev/sr0 /mnt && cat /mnt/context.sh; umount /mnt'")
    assert "SSH_PUBLIC_KEY=" in context and "SET_HOSTNAME='oneg-0'" in context


def test_exec_cp_and_ssh_go_through_the_real_sshd(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "osg")
    local = tmp_path / "payload.txt"
    local.write_text("payload for a real guest\n")
    fleet.run("cp", str(local), "osg-0:/tmp/payload.txt")
    assert fleet.sh("osg-0", "cat /tmp/payload.txt") == "payload for a real guest\n"
    fleet.run("cp", "osg-0:/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_text().strip() == "osg-0"   # the same root as exec's
    out = fleet.run("ssh", "osg-0", "--", "cat", "/proc/1/comm").stdout
    assert out.strip() == "systemd"   # the guest's init, not this host's
    sshd = fleet.sh("osg-0", "echo $SSH_CONNECTION")
    assert sshd.split()[2] == "10.0.2.15"   # the guest's own sshd, on its own address
    assert fleet.run("exec", "osg-0", "--", "hostname").stdout == "osg-0 | osg-0\n"


def test_a_wrong_host_key_is_refused(fleet) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "oneg")
    fleet.sh("oneg-0", "true")   # its key is recorded now
    known = fleet.home / "state" / "known_hosts"
    lines = known.read_text().splitlines()
    target = [ln for ln in lines if ".cc.skyctl " in ln]
    assert target, lines
    from skyctl.sandbox.guest.server import new_host_key

    fake = new_host_key().get_base64()   # a well-formed key that is not the guest's
    forged = [re.sub(r"ssh-ed25519 \S+", f"ssh-ed25519 {fake}", ln) if ln in target else ln for ln in lines]
    known.write_text("\n".join(forged) + "\n")
    try:
        refused = fleet.run("exec", "oneg-0", "--", "true", check=False)
        assert refused.returncode != 0
        assert "host key" in refused.stderr and "changed" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        known.write_text("\n".join(lines) + "\n")
    assert fleet.sh("oneg-0", "echo back").strip() == "back"


def test_docker_host_profile_applies_in_a_real_guest(fleet) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "dock")
    assert fleet.sh("dock-0", "systemctl is-active docker").strip() == "active"
    assert "docker" in fleet.sh("dock-0", "id -nG skyctl").split()
    assert json.loads(fleet.sh("dock-0", "cat /etc/docker/daemon.json"))["log-driver"] == "journald"


def test_a_profile_that_fails_in_the_guest_fails_the_launch_with_the_guests_error(fleet) -> None:  # type: ignore[no-untyped-def]
    launch = fleet.launches["condor"]
    assert launch.code != 0
    assert "condor-0" in launch.err and "cloud-init status: error" in launch.err
    assert "htcondor" in launch.err and ("no installation candidate" in launch.err or "Unable to locate" in launch.err)
    # ^ apt's own words from inside the guest
    assert "Traceback" not in launch.err
    # ...and the profile says so before anyone boots it.
    validate = fleet.run("context", "validate", str(Path(__file__).parents[3] / "contexts" / "htcondor-worker.yaml"))
    assert "Debian 12" in validate.stderr


def test_deleting_a_vm_stops_its_qemu_and_removes_its_overlay(fleet) -> None:  # type: ignore[no-untyped-def]
    before = fleet.sandbox_status()["guests"]["running"]
    vms = fleet.home / "state" / "sandbox" / "vms" / "cc"
    overlays_before = sorted(vms.glob("*/overlay.qcow2"))
    fleet.run("delete", "--yes", "condor")
    after = fleet.sandbox_status()["guests"]
    assert after["running"] == before - 1
    assert len(sorted(vms.glob("*/overlay.qcow2"))) == len(overlays_before) - 1
