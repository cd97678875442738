"""Real guests: contexts applied by real cloud-init in Debian 12 under QEMU, checked from inside
through the guests' own sshd (marker `guests`; its own step in .ci/run)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from skyctl.polling import iterate_timeout

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


def _secret_stays_hidden(fleet, group: str, secret: str) -> None:  # type: ignore[no-untyped-def]
    """Not in what skyctl printed for the launch or shows of the node, its state or the sandbox's log."""
    launch = fleet.launches[group]
    assert secret not in launch.out and secret not in launch.err
    shown = fleet.run("--debug", "show", f"{group}-0", "-o", "json")
    assert secret not in shown.stdout and secret not in shown.stderr
    assert secret.encode() not in (fleet.home / "state" / "state.db").read_bytes()
    log = fleet.home / "state" / "sandbox" / "sandbox.log"
    assert not log.exists() or secret not in log.read_text(errors="replace")


def test_jupyter_profile_serves_jupyterlab_behind_its_token(fleet) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "osg")   # base + guesttest + jupyter: JupyterLab pip-installed from PyPI in the guest
    node, token = "osg-0", fleet.jupyter_token
    assert fleet.sh(node, "systemctl is-active jupyter").strip() == "active"
    # Run by the login user, from the profile's virtualenv.
    pid = fleet.sh(node, "systemctl show -p MainPID --value jupyter").strip()
    assert fleet.sh(node, f"ps -o user= -p {pid}").strip() == "skyctl"
    assert fleet.sh(node, f"tr '\\0' ' ' < /proc/{pid}/cmdline").startswith("/opt/jupyter/bin/python")

    def status(query: str) -> str:
        return fleet.sh(node, f"curl -s -o /dev/null -w '%{{http_code}}' 'http://127.0.0.1:8888/api/status{query}'",
                        check=False).strip()

    last = ""
    for _ in iterate_timeout(300, "JupyterLab to answer on port 8888", interval=3.0):
        last = status(f"?token={token}")
        if last == "200":
            break
    assert last == "200"
    assert status("") in ("401", "403")              # no token: refused
    assert status("?token=not-the-token") in ("401", "403")
    _secret_stays_hidden(fleet, "osg", token)


def test_slurm_worker_joins_a_real_slurmctld_and_runs_a_job(fleet) -> None:  # type: ignore[no-untyped-def]
    _ok(fleet, "oneg")   # base + guesttest + slurm-worker, slurm.conf naming this host's slurmctld
    ctl, node = fleet.slurm, fleet.slurm.node
    assert fleet.sh(node, "systemctl is-active munge slurmd").split() == ["active", "active"]
    # The key the secret delivered is the cluster's, in munge's hands only; its base64 copy is gone.
    key = fleet.sh(node, "sudo -n sha256sum /etc/munge/munge.key").split()[0]
    assert key == hashlib.sha256(ctl.munge.key).hexdigest()
    assert fleet.sh(node, "sudo -n stat -c '%U %a' /etc/munge/munge.key").strip() == "munge 400"
    assert fleet.sh(node, "sudo -n sh -c 'test -e /etc/munge/munge.key.b64 && echo left || echo gone'").strip() == "gone"

    # slurmctld on this host sees the guest's slurmd: registered, idle (responding).
    ctl.wait_for(f"{node} idle in sinfo", lambda: ctl.run("sinfo", "-h", "-n", node, "-o", "%T").strip() == "idle")
    shown = ctl.run("scontrol", "show", "node", node)
    kernel = fleet.sh(node, "uname -r").strip()
    assert "State=IDLE " in shown and f"OS=Linux {kernel} " in shown, shown   # the guest's kernel, not this host's

    # A batch job runs in the guest: slurmctld -> the guest's slurmd -> slurmstepd -> back to slurmctld.
    job = ctl.run("sbatch", "--parsable", "-w", node, "-D", "/tmp", "-o", "/tmp/skyjob-%j.out",
                  "--wrap", "hostname; uname -r").strip().split(";")[0]
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY")

    def job_state() -> str:
        m = re.search(r"JobState=(\S+)", ctl.run("scontrol", "show", "job", job))
        return m.group(1) if m and m.group(1) in ended else ""

    assert ctl.wait_for(f"job {job} to end", job_state, timeout=180) == "COMPLETED", ctl.diagnostics()
    assert fleet.sh(node, f"sudo -n cat /tmp/skyjob-{job}.out").split() == [node, kernel]
    _secret_stays_hidden(fleet, "oneg", ctl.munge_key_b64)


def test_cvmfs_client_says_where_it_cannot_work(fleet) -> None:  # type: ignore[no-untyped-def]
    # Not booted (this machine cannot reach CERN's repository): its caveat is what validate prints.
    validate = fleet.run("context", "validate", str(Path(__file__).parents[3] / "contexts" / "cvmfs-client.yaml"))
    assert "cannot work everywhere" in validate.stderr and "cvmrepo.s3.cern.ch" in validate.stderr
