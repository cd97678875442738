"""The sandbox VMs' SSH side (skyctl.sandbox.guest) against a SiteWorld, in this process, on
loopback: host keys, CONTEXT written as oned writes it, the context's own scripts never run on
the host, exec and SFTP see the VM's directory as `/`, a login shell gets a terminal, stopped
VMs let nobody in. A real paramiko client does the talking. Who may log in (pure)
is tests/unit/test_sandbox_guest_access.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from skyctl.polling import iterate_timeout
from skyctl.sandbox.guest import jail
from skyctl.sandbox.spec import build_world, resolve
from skyctl.sandbox.guest.boot import ONE_CONTEXT_PATH, USER_DATA_PATH
from skyctl.sandbox.guest.server import VmSshFabric, fingerprint, new_host_key
from skyctl.sandbox.world import SVM, SiteWorld


def _key() -> paramiko.PKey:
    return new_host_key()


def _pub(key: paramiko.PKey, comment: str = "u@h") -> str:
    return f"ssh-ed25519 {key.get_base64()} {comment}"


# ---------------------------------------------------------------- live guests


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SiteWorld, VmSshFabric]]:
    spec = resolve(boot_delay=0.05)
    world = build_world("home", spec["sites"]["home"], spec)
    fabric = VmSshFabric(tmp_path / "vms")
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


def test_context_scripts_never_run_on_the_host(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    vm = world.create_vm(name="n", vcpus=1, ram_mib=512, image_id="0",
                         user_data="#cloud-config\nruncmd: ['touch ran']\n")
    _wait_ready(vm)
    assert not (fabric.guest("home", vm.id).root / "ran").exists()


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


@pytest.mark.skipif(not jail.available(), reason="confining commands needs root (mount namespaces)")
def test_exec_and_sftp_see_the_same_root(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, fabric = site
    key = _key()
    vm = world.create_vm(name="rooted", vcpus=1, ram_mib=512, image_id="0",
                         context={"SSH_PUBLIC_KEY": _pub(key), "SET_HOSTNAME": "mu-0"})
    _wait_ready(vm)
    root = fabric.guest("home", vm.id).root
    client = _connect(vm, key, user="root")
    try:
        assert _run(client, "cat /etc/hostname; hostname; pwd") == (0, "mu-0\nmu-0\n/\n")
        sftp = paramiko.SFTPClient.from_transport(client)
        assert sftp is not None
        with sftp.open("/etc/hostname") as f:
            assert f.read().decode() == "mu-0\n"
        # What exec writes under / is what SFTP reads, and it lands in the VM's directory.
        assert _run(client, "mkdir -p /srv && echo from-exec > /srv/made && echo tmp > /tmp/t")[0] == 0
        with sftp.open("/srv/made") as f:
            assert f.read().decode() == "from-exec\n"
        assert (root / "srv" / "made").read_text() == "from-exec\n" and not Path("/srv/made").exists()
        sftp.putfo(__import__("io").BytesIO(b"from-sftp\n"), "/srv/put")
        assert _run(client, "cat /srv/put") == (0, "from-sftp\n")
        # The host's programs are there, read-only; the host's /etc is not.
        assert _run(client, "test -x /usr/bin/env && ! test -e /etc/os-release && echo ok") == (0, "ok\n")
        rc, _ = _run(client, "touch /usr/bin/skyctl-must-not-exist 2>/dev/null")
        assert rc != 0 and not Path("/usr/bin/skyctl-must-not-exist").exists()
        sftp.close()
    finally:
        client.close()


def test_an_interactive_login_gets_a_terminal(site: tuple[SiteWorld, VmSshFabric]) -> None:
    world, _ = site
    key = _key()
    vm = world.create_vm(name="tty", vcpus=1, ram_mib=512, image_id="0", ssh_keys=[_pub(key)])
    _wait_ready(vm)
    client = _connect(vm, key)
    try:
        channel = client.open_session(timeout=10)
        channel.get_pty(term="xterm", width=100, height=30)
        channel.invoke_shell()
        seen = b""

        def read_until(*tokens: bytes) -> None:
            nonlocal seen
            for _ in iterate_timeout(30, f"{tokens!r} on the terminal", interval=0.01):
                if channel.recv_ready():
                    seen += channel.recv(4096)
                if any(t in seen for t in tokens):
                    return

        read_until(b"$ ", b"# ")                 # a prompt: the shell knows it is interactive
        channel.sendall(b"tty; stty size; echo $((6*7))\n")
        read_until(b"42\r\n")                   # the terminal echoes and maps newlines
        assert b"/dev/pts/" in seen and b"30 100" in seen
        channel.sendall(b"exit 3\n")
        assert channel.recv_exit_status() == 3
    finally:
        client.close()
