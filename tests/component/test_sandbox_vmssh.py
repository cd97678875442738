"""The sandbox VMs' SSH side (skyctl.sandbox.guest) against a SiteWorld, in this process:
what a context delivers decides who gets in, CONTEXT is written as oned writes it, and the
context's own scripts run only when asked. A real paramiko client does the talking."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import paramiko
import pytest

from skyctl.sandbox.spec import build_world, resolve
from skyctl.sandbox.guest.access import context_sh, guest_access, key_blob
from skyctl.sandbox.guest.boot import ONE_CONTEXT_PATH, USER_DATA_PATH
from skyctl.sandbox.guest.server import AddressPool, VmSshFabric, fingerprint, new_host_key
from skyctl.sandbox.world import SVM, SiteWorld


def _key() -> paramiko.PKey:
    return new_host_key()


def _pub(key: paramiko.PKey, comment: str = "u@h") -> str:
    return f"ssh-ed25519 {key.get_base64()} {comment}"


def _vm(**attrs: Any) -> SVM:
    return SVM(id="1", name="n", vcpus=1, ram_mib=512, image_id="0", flavor_id=None, created=0.0,
               boot_delay=0.0, **attrs)


# ---------------------------------------------------------------- what the context delivered (pure)


def test_cloud_config_keys_and_users_are_accepted() -> None:
    a, b, c = _key(), _key(), _key()
    user_data = ("#cloud-config\n"
                 f"ssh_authorized_keys: ['{_pub(a)}']\n"
                 "users:\n  - default\n"
                 f"  - name: alice\n    ssh_authorized_keys: ['{_pub(b)}']\n")
    access = guest_access(_vm(user_data=user_data, ssh_keys=[_pub(c)]), "openstack", "cloud-user")
    assert access.users == {"cloud-user", "alice"}
    assert {k.get_base64() for k in (a, b, c)} == set(access.key_blobs)
    assert not access.allows("root", a.get_base64())  # cloud images refuse root
    assert not access.allows("cloud-user", _key().get_base64())


def test_mime_multipart_user_data_is_read() -> None:
    key = _key()
    msg = MIMEMultipart()
    msg.attach(MIMEText("#!/bin/sh\necho hi\n", "x-shellscript"))
    msg.attach(MIMEText(f"ssh_authorized_keys: ['{_pub(key)}']\n", "cloud-config"))
    access = guest_access(_vm(user_data=msg.as_string()), "openstack", "cloud-user")
    assert access.key_blobs == {key.get_base64()}


def test_opennebula_context_keys_go_to_root_and_username() -> None:
    a, b = _key(), _key()
    ctx = {"SSH_PUBLIC_KEY": f"{_pub(a)}\n{_pub(b)}", "USERNAME": "sci",
           "USER_DATA": base64.b64encode(b"#cloud-config\nusers: [{name: bob}]\n").decode(),
           "USERDATA_ENCODING": "base64"}
    access = guest_access(_vm(context=ctx), "opennebula", "cloud-user")
    assert access.users == {"cloud-user", "root", "sci", "bob"}
    assert access.key_blobs == {a.get_base64(), b.get_base64()}


def test_key_blob_skips_options_and_refuses_garbage() -> None:
    key = _key()
    assert key_blob(f'no-pty,command="/bin/true" {_pub(key)}') == key.get_base64()
    assert key_blob("ssh-ed25519 not!base64 x") is None
    assert key_blob("just a comment") is None


def test_context_sh_round_trips_through_the_shell(tmp_path: Path) -> None:
    tricky = "it's $HOME `x` \"q\"\nline2"
    path = tmp_path / "context.sh"
    path.write_text(context_sh({"B": tricky, "A": "1"}))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and lines[1] == "A='1'"  # header, then sorted
    out = subprocess.run(["sh", "-c", f". {path} && printf %s \"$B\""], capture_output=True, text=True, check=True)
    assert out.stdout == tricky


def test_address_pool_stays_in_its_slash_16_and_skips_network_and_gateway() -> None:
    pool = AddressPool(11)
    addrs = [pool.take() for _ in range(300)]
    assert addrs[0] == "127.11.0.2" and addrs[252] == "127.11.0.254" and addrs[253] == "127.11.1.2"
    assert len(set(addrs)) == 300 and all(a.startswith("127.11.") for a in addrs)


# ---------------------------------------------------------------- live guests


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SiteWorld, VmSshFabric]]:
    run_scripts = getattr(request, "param", False)
    spec = resolve(boot_delay=0.05, run_scripts=run_scripts)
    world = build_world("home", spec["sites"]["home"], spec)
    fabric = VmSshFabric(tmp_path / "vms", run_scripts=run_scripts)
    fabric.start()
    fabric.attach(world, 0)
    try:
        yield world, fabric
    finally:
        fabric.stop()


def _connect(vm: SVM, key: paramiko.PKey, user: str = "cloud-user") -> paramiko.Transport:
    """Log in, checking that the host key shown is the one whose fingerprint the VM reports."""
    assert vm.address and vm.ssh_port
    transport = paramiko.Transport((vm.address, vm.ssh_port))
    try:
        transport.start_client(timeout=10)
        assert fingerprint(transport.get_remote_server_key()) == vm.host_key_fingerprint
        transport.auth_publickey(user, key)
    except BaseException:
        transport.close()
        raise
    return transport


def _run(transport: paramiko.Transport, command: str) -> tuple[int, str]:
    channel = transport.open_session(timeout=10)
    channel.exec_command(command)
    out = channel.makefile("rb").read().decode()
    return channel.recv_exit_status(), out


def _wait_ready(vm: SVM) -> None:
    deadline = time.monotonic() + 20
    while not vm.ready:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_host_key_fingerprint_matches_and_files_sit_at_guest_paths(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    key = _key()
    vm = world.create_vm(name="one-vm", vcpus=1, ram_mib=512, image_id="0",
                         context={"SSH_PUBLIC_KEY": _pub(key), "SET_HOSTNAME": "h1"})
    root = fabric.guest("home", vm.id).root
    assert "SSH_PUBLIC_KEY='ssh-ed25519 " in (root / ONE_CONTEXT_PATH).read_text()
    assert not (root / USER_DATA_PATH).exists()
    _wait_ready(vm)
    client = _connect(vm, key, user="root")
    try:
        assert _run(client, "hostname; cloud-init status") == (0, "h1\nstatus: done\n")
    finally:
        client.close()


def test_context_scripts_do_not_run_unless_asked(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    vm = world.create_vm(name="n", vcpus=1, ram_mib=512, image_id="0",
                         user_data="#cloud-config\nruncmd: ['touch ran']\n")
    _wait_ready(vm)
    assert not (fabric.guest("home", vm.id).root / "ran").exists()


@pytest.mark.parametrize("site", [True], indirect=True)
def test_context_scripts_run_when_asked_and_failures_show(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    key = _key()
    ok = world.create_vm(name="ok", vcpus=1, ram_mib=512, image_id="0", ssh_keys=[_pub(key)],
                         user_data="#cloud-config\nwrite_files:\n  - {path: /etc/motd, content: hello}\n"
                                   "runcmd:\n  - [sh, -c, 'cat etc/motd > ran']\n")
    bad = world.create_vm(name="bad", vcpus=1, ram_mib=512, image_id="0", ssh_keys=[_pub(key)],
                          context={"START_SCRIPT_BASE64": base64.b64encode(b"exit 3").decode()})
    _wait_ready(ok)
    _wait_ready(bad)
    assert (fabric.guest("home", ok.id).root / "ran").read_text() == "hello"
    client = _connect(bad, key)
    try:
        rc, out = _run(client, "cloud-init status")
        assert (rc, out) == (1, "status: error\n")
    finally:
        client.close()


def test_stopped_or_deleted_vm_lets_nobody_in(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    key = _key()
    vm = world.create_vm(name="n", vcpus=1, ram_mib=512, image_id="0", ssh_keys=[_pub(key)])
    _connect(vm, key).close()
    vm.stopped = True
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        _connect(vm, key).close()
    vm.stopped = False
    root = fabric.guest("home", vm.id).root
    world.delete_vm(vm.id)
    assert fabric.guest("home", vm.id) is None and not root.exists()


def test_a_guest_relays_like_a_jump_host_but_only_inside_the_loopback(tmp_path: Path) -> None:
    from skyctl.sandbox.guest.loopback import start_guest

    key = _key()
    target = start_guest(tmp_path / "target", [_pub(key)])
    bastion = start_guest(tmp_path / "bastion", [_pub(key)], user="ops")
    transport = paramiko.Transport((bastion.host, bastion.port))
    try:
        transport.start_client(timeout=10)
        transport.auth_publickey("ops", key)
        channel = transport.open_channel("direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=10)
        assert channel.makefile("rb").readline().startswith(b"SSH-2.0-")  # the target's greeting
        channel.close()
        with pytest.raises(paramiko.ChannelException):  # the sandbox's network is the loopback
            transport.open_channel("direct-tcpip", ("192.0.2.1", 22), ("127.0.0.1", 0), timeout=10)
        assert bastion.forwarded == [(target.host, target.port)]
    finally:
        transport.close()
        bastion.stop()
        target.stop()
    assert (tmp_path / "target").is_dir() and not (tmp_path / ".target.guest").exists()
