"""Real guests' pure parts: the image's inputs and cache key, the host's mirror, missing tools
named with their package, what a config drive and a CONTEXT CD-ROM hold, the console parsing
and the spec. Booting them is the `guests` tier (tests/integration/guests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skyctl.errors import ConfigError
from skyctl.sandbox import spec as specmod
from skyctl.sandbox.guest import image as imagemod
from skyctl.sandbox.guest import qemu as qemumod
from skyctl.sandbox.world import SVM, Quota, SiteWorld


def test_the_image_key_changes_with_every_input_and_only_then() -> None:
    base = imagemod.ImageInputs(mirror="http://m/debian")
    assert base.key() == imagemod.ImageInputs(mirror="http://m/debian").key()
    changed = [imagemod.ImageInputs(mirror="http://other/debian"),
               imagemod.ImageInputs(mirror="http://m/debian", packages=(*imagemod.PACKAGES, "tree")),
               imagemod.ImageInputs(mirror="http://m/debian", cloud_cfg=imagemod.CLOUD_CFG + "# x\n"),
               imagemod.ImageInputs(mirror="http://m/debian", version=imagemod.IMAGE_VERSION + 1)]
    assert len({base.key(), *(c.key() for c in changed)}) == 5


def test_the_host_mirror_comes_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    (tmp_path / "sources.list.d" / "other.list").write_text("deb [arch=amd64] https://packages.example/apt stable main\n")
    assert imagemod.host_mirrors(tmp_path) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    inputs = imagemod.ImageInputs(mirror="http://mirror.example/debian", security_mirror="http://mirror.example/debian-security")
    assert inputs.sources()[-1] == "deb http://mirror.example/debian-security bookworm-security main"
    empty = tmp_path / "none"
    empty.mkdir()
    assert imagemod.host_mirrors(empty) == (imagemod.DEFAULT_MIRROR, None)


def test_a_missing_tool_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("mmdebstrap", "qemu-system-x86_64") else "/x")
    with pytest.raises(imagemod.ToolMissing) as info:
        imagemod.require("mmdebstrap", "mkfs.ext4", "qemu-system-x86_64")
    assert "mmdebstrap, qemu-system-x86_64 not found" in info.value.line()
    assert info.value.hint == "apt-get install mmdebstrap qemu-system-x86"


def test_finding_an_image_needs_every_file(tmp_path: Path) -> None:
    inputs = imagemod.ImageInputs(mirror="http://m/debian")
    folder = imagemod.images_dir(tmp_path) / inputs.key()
    folder.mkdir(parents=True)
    for name in ("disk.raw", "vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"x")
    assert imagemod.find(tmp_path, inputs) is None   # no manifest: a build that did not finish
    (folder / "manifest.json").write_text("{}")
    found = imagemod.find(tmp_path, inputs)
    assert found is not None and found.disk == folder / "disk.raw"


def _world(kind: str) -> SiteWorld:
    return SiteWorld("s", kind, quota=Quota(), flavors=[], images=[])


def test_the_config_drive_holds_what_nova_writes(tmp_path: Path) -> None:
    vm = SVM(id="a1b2", name="Web_0", vcpus=1, ram_mib=512, image_id="i", flavor_id="1", created=0, boot_delay=0,
             metadata={"skyctl-group": "web"}, user_data="#cloud-config\nruncmd: [true]\n", key_name="k",
             ssh_keys=["ssh-ed25519 AAAA k@h"])
    folder, label = qemumod.config_drive(vm, _world("openstack"), tmp_path / "drive")
    assert label == "config-2"
    latest = folder / "openstack" / "latest"
    meta = json.loads((latest / "meta_data.json").read_text())
    assert meta["uuid"] == "a1b2" and meta["hostname"] == "web-0" and meta["public_keys"] == {"k": "ssh-ed25519 AAAA k@h"}
    assert meta["meta"] == {"skyctl-group": "web"}
    assert (latest / "user_data").read_text() == vm.user_data
    net = json.loads((latest / "network_data.json").read_text())
    assert net["networks"][0]["ip_address"] == qemumod.GUEST_IP
    assert net["networks"][0]["gateway"] == "10.0.2.2"   # rendered as `gateway` by ifupdown, no net-tools needed
    assert net["links"][0]["ethernet_mac_address"] == qemumod.GUEST_MAC


def test_the_context_cdrom_holds_context_sh_with_the_guests_network(tmp_path: Path) -> None:
    vm = SVM(id="7", name="n", vcpus=1, ram_mib=512, image_id="0", flavor_id=None, created=0, boot_delay=0,
             context={"NETWORK": "YES", "SET_HOSTNAME": "n-0", "SSH_PUBLIC_KEY": "ssh-ed25519 AAAA x",
                      "ETH0_IP": "127.11.0.2"})
    folder, label = qemumod.context_cdrom(vm, tmp_path / "ctx")
    text = (folder / "context.sh").read_text()
    assert label == "CONTEXT" and text.startswith("# Context variables generated by OpenNebula\n")
    assert "ETH0_IP='10.0.2.15'" in text and "ETH0_MAC='02:00:0a:00:02:0f'" in text
    assert "SET_HOSTNAME='n-0'" in text and "TARGET='hda'" in text


def test_the_console_gives_the_host_key_and_the_end_of_cloud_init() -> None:
    console = ("[  379.3] cloud-init[300]: Generating public/private ed25519 key pair.\n"
               "<14>Dec  7 03:40:01 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
               "<14>Dec  7 03:40:01 cloud-init: 256 SHA256:VV/yqaODJxqkG/fh5UtBtf5TPT+ixKqn5e75gK+ZYmc root@g1 (ED25519)\n"
               "<14>Dec  7 03:40:01 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n"
               "[  157.2] cloud-init[355]: Cloud-init v. 22.4.2 finished at Mon, 07 Dec 2026 03:30:29 +0000. "
               "Datasource DataSourceConfigDrive [net,ver=2][source=/dev/sr0].  Up 157.17 seconds\n")
    assert qemumod._FINGERPRINT.findall(console) == [("256", "SHA256:VV/yqaODJxqkG/fh5UtBtf5TPT+ixKqn5e75gK+ZYmc",
                                                      "ED25519")]
    m = qemumod._FINISHED.search(console)
    assert m is not None and m.group(1) == "157.17"
    assert not qemumod._SSHD_STARTED.search("         Starting \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server...")
    assert qemumod._SSHD_STARTED.search("[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m - OpenBSD")


def test_the_spec_takes_qemu_guests_and_nothing_else() -> None:
    assert specmod.resolve(guests="qemu")["guests"] == "qemu"
    assert specmod.resolve()["guests"] is None
    with pytest.raises(ConfigError) as info:
        specmod.resolve({"guests": "docker"})
    assert info.value.path == "guests" and "must be qemu" in info.value.message
    with pytest.raises(ConfigError) as gone:
        specmod.resolve({"run_scripts": True})   # removed: context scripts never run on the host
    assert gone.value.path == "run_scripts"
    doc = specmod.federation_document({**specmod.resolve(guests="qemu")},
                                      {n: {"ssh_port": 22, "cloud": n, "clouds_yaml": "c", "endpoint": "e",
                                           "one_auth": "a"} for n in specmod.DEFAULT_SPEC["sites"]})
    assert all(s["ready_timeout"] >= 1800 for s in doc["sites"].values())
    assert all(s["ssh"]["connect_timeout"] >= 120 for s in doc["sites"].values())


def test_a_sites_connect_timeout_is_what_its_ssh_connections_get() -> None:
    from skyctl.site import SiteConfig
    from skyctl.ssh.session import CONNECT_TIMEOUT, SshOptions

    opts = SshOptions(key=None)  # type: ignore[arg-type]  # no connection is opened here
    slow = SiteConfig(name="slow", driver="memory", ssh={"connect_timeout": 180})
    plain = SiteConfig(name="plain", driver="memory")
    assert (opts.timeout_for(slow), opts.timeout_for(plain)) == (180, CONNECT_TIMEOUT)


def test_the_guests_own_error_leads_the_failed_context_message() -> None:
    from skyctl.ops.ready import cloud_init_detail

    out = ("status: error\nboot_status_code: enabled-by-generator\ndetail:\n"
           "('package-update-upgrade-install', ProcessExecutionError(\"Unexpected error while running command.\\n"
           "Command: ['apt-get', 'install', 'htcondor']\\nExit code: 100\\nReason: -\\nStdout: -\\n"
           "Stderr: E: Package 'htcondor' has no installation candidate\"))\n")
    assert cloud_init_detail(out).startswith(
        "package-update-upgrade-install: E: Package 'htcondor' has no installation candidate | ")
    assert cloud_init_detail("status: error\ndetail:\ncontext failed\n") == "context failed"


def test_a_real_guests_console_output_is_its_serial_console() -> None:
    from skyctl.sandbox.openstack.console import console_text

    vm = SVM(id="v", name="n", vcpus=1, ram_mib=1, image_id="i", flavor_id="1", created=0, boot_delay=0)
    vm.extra["console"] = lambda: "[    0.0] Linux version 6.1.0-57-cloud-amd64\n"
    assert console_text(vm) == "[    0.0] Linux version 6.1.0-57-cloud-amd64\n"


def test_the_guest_log_s_own_error_lines_are_what_a_failed_context_reports() -> None:
    from skyctl.ops.ready import log_errors

    log = ("Reading package lists...\nBuilding dependency tree...\n"
           "E: Unable to locate package htcondor\n"
           "2026-12-07 05:20:01,000 - cc_package_update_upgrade_install.py[WARNING]: 1 failed with exceptions\n"
           "Cloud-init v. 22.4.2 finished at Mon, 07 Dec 2026 05:20:02 +0000. Up 210.0 seconds\n")
    assert log_errors(log) == ["E: Unable to locate package htcondor"]
    assert log_errors("all fine\n") == []
