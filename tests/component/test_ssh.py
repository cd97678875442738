"""skyctl.ssh against a real SSH server on loopback (the sandbox's guest): exec, host keys, SFTP,
readiness (skyctl.ops.ready), jump hosts, and the system ssh reading skyctl's known-hosts file."""

from __future__ import annotations

import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from skyctl.errors import (ContextFailed, HostKeyChanged, HostKeyNotInConsole, NotFound, NotReady, SkyError,
                           SshAuthError, Unreachable, UsageError)
from skyctl.keys import fingerprint, generate_ed25519, read_public_key
from skyctl.model import Node, NodeState
from skyctl.ops.ready import CONTEXT_PROBE, cloud_init_state, context_probe, poll_ready
from skyctl.site import SiteConfig
from skyctl.ssh import hostkeys, transfer
from skyctl.ssh.session import Session, SshOptions
from skyctl.ssh.target import Jump, parse_jump, split_location, ssh_command, target_for
from skyctl.sandbox.guest import server as guest_server
from skyctl.sandbox.guest.loopback import LoopbackGuest, start_guest
from skyctl.sandbox.guest.server import new_host_key as new_key


def new_key_pair(path: Path) -> tuple[Path, str]:
    """A client key pair as ssh-keygen leaves it: private 0600, public beside it."""
    generate_ed25519(path, "test@skyctl")
    public = read_public_key(path.with_name(path.name + ".pub"))
    assert public is not None
    return path, public


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[Path, str]:
    return new_key_pair(tmp_path / "id_ed25519")


@pytest.fixture
def guest(tmp_path: Path, client_key: tuple[Path, str]) -> Iterator[LoopbackGuest]:
    g = start_guest(tmp_path / "vm1", [client_key[1]])
    yield g
    g.stop()


def site_for(port: int, **ssh_cfg: Any) -> SiteConfig:
    return SiteConfig(name="s1", driver="memory", ssh={"port": port, **ssh_cfg})


def node(name: str = "n-0", node_id: str = "vm-1", address: str = "127.0.0.1") -> Node:
    return Node(name, "n", "s1", "memory", node_id, NodeState.RUNNING, (address,) if address else ())


@pytest.fixture
def opts(client_key: tuple[Path, str]) -> SshOptions:
    return SshOptions(key=client_key)


def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cloud_init_console(*fingerprints: str, keys: tuple[paramiko.PKey, ...] = ()) -> str:
    """The tail of a serial console as cloud-init prints it (syslog-prefixed lines)."""
    pre = "<14>Nov 27 06:01:02 cloud-init: "
    lines = ["[    3.1] cloud-init[798]: Cloud-init v. 23.4 running 'modules:final'",
             f"{pre}#############################################################",
             f"{pre}-----BEGIN SSH HOST KEY FINGERPRINTS-----"]
    lines += [f"{pre}256 {fp} root@n-0 (ED25519)" for fp in fingerprints]
    lines += [f"{pre}-----END SSH HOST KEY FINGERPRINTS-----",
              f"{pre}#############################################################"]
    if keys:
        lines += ["-----BEGIN SSH HOST KEY KEYS-----"]
        lines += [f"{k.get_name()} {k.get_base64()} root@n-0" for k in keys]
        lines += ["-----END SSH HOST KEY KEYS-----"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- exec


def test_exec_returns_exit_code_stdout_and_stderr(guest: LoopbackGuest, opts: SshOptions) -> None:
    res = transfer.run(node(), site_for(guest.port), "echo out; echo err >&2; exit 3", opts)
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert res.to_json() == {"node": "n-0", "exit_code": 3, "stdout": "out\n", "stderr": "err\n", "error": None}


def test_a_command_the_guest_cannot_start_ends_with_255_and_its_reason(
        guest: LoopbackGuest, opts: SshOptions, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the sandbox sets a command up (two commands racing to prepare a new VM's
    directory was one) still ends the channel: before, the client waited for an exit status
    forever. The timeout only turns that old hang into a failure; it is never reached here."""
    def broken(channel: paramiko.Channel) -> str:
        raise RuntimeError("no room left")

    monkeypatch.setattr(guest_server, "_ssh_connection", broken)
    res = transfer.run(node(), site_for(guest.port), "echo never", opts, timeout=120)
    assert res.exit_code == 255 and res.stdout == ""
    assert res.stderr == "sandbox: cannot run the command: no room left\n"


def test_exec_runs_in_the_guest_dir_and_streams_lines(guest: LoopbackGuest, opts: SshOptions) -> None:
    (guest.root / "here.txt").write_text("x")
    lines: list[tuple[str, str, str]] = []
    res = transfer.run(node(), site_for(guest.port), "ls; printf 'a\\nb'; echo c >&2", opts,
                  on_output=lambda n, stream, line: lines.append((n.name, stream, line)))
    assert res.exit_code == 0
    assert ("n-0", "stdout", "here.txt") in lines and ("n-0", "stdout", "b") in lines
    assert ("n-0", "stderr", "c") in lines


def test_run_many_keeps_node_order_and_reports_unreachable_nodes(guest: LoopbackGuest, opts: SshOptions) -> None:
    sites = {"s1": site_for(guest.port)}
    nodes = [node("n-0", "vm-1"), node("n-1", "vm-2"), node("n-2", "vm-3", address="")]
    seen: list[str] = []
    lock = threading.Lock()

    def collect(n: Node, stream: str, line: str) -> None:
        with lock:
            seen.append(f"{n.name} {line}")

    results = transfer.run_many(nodes, sites, "echo hello", opts, parallel=2, on_output=collect)
    assert [r.node.name for r in results] == ["n-0", "n-1", "n-2"]
    assert [r.exit_code for r in results] == [0, 0, None]
    assert sorted(seen) == ["n-0 hello", "n-1 hello"]
    assert isinstance(results[2].error, Unreachable) and "no address" in results[2].error.line()
    # both first contacts were recorded, each under its own node's name
    names = sorted(line.split()[0] for line in opts.known_hosts.path.read_text().splitlines())
    assert names == [hostkeys.host_key_alias(nodes[0]), hostkeys.host_key_alias(nodes[1])]


def test_known_hosts_keeps_lines_a_user_wrote(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    other = new_key()
    path.write_text(f"bastion {other.get_name()} {other.get_base64()}")  # no final newline
    store = hostkeys.KnownHosts(path)
    mine = new_key()
    store.record("vm-1.s1.skyctl", mine)
    fresh = hostkeys.KnownHosts(path)
    assert [k.asbytes() for k in fresh.known("bastion")] == [other.asbytes()]
    assert [k.asbytes() for k in fresh.known("vm-1.s1.skyctl")] == [mine.asbytes()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cancel_cuts_running_commands(guest: LoopbackGuest, opts: SshOptions) -> None:
    """What Ctrl-C does: every open session closes and the workers return at once."""
    sites = {"s1": site_for(guest.port)}
    started = threading.Event()
    results: list[transfer.ExecResult] = []

    def on_output(n: Node, stream: str, line: str) -> None:
        started.set()

    worker = threading.Thread(target=lambda: results.extend(
        transfer.run_many([node("n-0", "vm-1"), node("n-1", "vm-2")], sites, "echo go; exec sleep 60", opts,
                     on_output=on_output)))
    worker.start()
    assert started.wait(30)
    opts.cancel()
    worker.join(30)
    assert not worker.is_alive()
    assert all(r.exit_code is None and isinstance(r.error, SkyError) for r in results) and len(results) == 2
    with pytest.raises(SkyError):  # and no new session opens afterwards
        opts.open(node(), sites["s1"])


def test_a_closed_port_is_unreachable_with_one_line(opts: SshOptions) -> None:
    with pytest.raises(Unreachable) as info:
        transfer.run(node(), site_for(closed_port()), "true", opts)
    line = info.value.line()
    assert "n-0" in line and "connection refused" in line and "\n" not in line
    assert info.value.site == "s1"


def test_a_wrong_key_is_refused_with_one_clear_line(guest: LoopbackGuest, tmp_path: Path) -> None:
    other = new_key_pair(tmp_path / "other")
    with pytest.raises(SshAuthError) as info:
        transfer.run(node(), site_for(guest.port), "true", SshOptions(key=other))
    line = info.value.line()
    assert "n-0" in line and "refused the key" in line and str(other[0]) in line
    assert "\n" not in line and info.value.exit_code == 5


def test_guest_errors_are_a_family_beside_the_driver_errors_with_the_same_exit_codes() -> None:
    from skyctl.errors import CommandTimeout, DriverError, GuestError

    codes = {SshAuthError: 5, Unreachable: 1, CommandTimeout: 1, HostKeyChanged: 1, HostKeyNotInConsole: 1,
             ContextFailed: 1, NotReady: 1}
    for cls, code in codes.items():
        assert issubclass(cls, GuestError) and not issubclass(cls, DriverError), cls
        assert cls("x").exit_code == code, cls
    assert Unreachable("x").retryable and not SshAuthError("x").retryable


# ---------------------------------------------------------------- host keys


def test_first_host_key_is_recorded_in_a_private_known_hosts_file(guest: LoopbackGuest, opts: SshOptions) -> None:
    transfer.run(node(), site_for(guest.port), "true", opts)
    path = opts.known_hosts.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = paramiko.HostKeys(str(path))
    recorded = keys.lookup(hostkeys.host_key_alias(node()))
    assert recorded is not None and recorded["ssh-ed25519"].asbytes() == guest.host_key.asbytes()
    # a second connection trusts the recorded key without touching the file
    before = path.read_bytes()
    assert transfer.run(node(), site_for(guest.port), "true", opts).exit_code == 0
    assert path.read_bytes() == before


def test_a_changed_host_key_is_refused_and_replaced_only_when_asked(
        guest: LoopbackGuest, client_key: tuple[Path, str], tmp_path: Path) -> None:
    opts = SshOptions(key=client_key)
    transfer.run(node(), site_for(guest.port), "true", opts)
    rebuilt = start_guest(tmp_path / "vm1-rebuilt", guest.authorized_keys)  # same VM id, new host key
    try:
        with pytest.raises(HostKeyChanged) as info:
            transfer.run(node(), site_for(rebuilt.port), "touch pwned", opts)
        line = info.value.line()
        assert "n-0" in line and f"127.0.0.1:{rebuilt.port}" in line
        assert guest.fingerprint in line and rebuilt.fingerprint in line
        assert "--accept-new-host-key" in line and "\n" not in line
        assert info.value.exit_code == 1
        assert not (rebuilt.root / "pwned").exists()  # refused before anything ran

        accept = SshOptions(key=client_key, accept_new_host_key=True)
        assert transfer.run(node(), site_for(rebuilt.port), "true", accept).exit_code == 0
        # from now on the new key is the known one, and the old one is refused
        assert transfer.run(node(), site_for(rebuilt.port), "true", opts).exit_code == 0
        with pytest.raises(HostKeyChanged):
            transfer.run(node(), site_for(guest.port), "true", opts)
    finally:
        rebuilt.stop()


def test_another_vm_at_a_reused_address_is_not_a_changed_key(
        guest: LoopbackGuest, client_key: tuple[Path, str], tmp_path: Path) -> None:
    opts = SshOptions(key=client_key)
    transfer.run(node("a-0", "vm-1"), site_for(guest.port), "true", opts)
    newcomer = start_guest(tmp_path / "vm2", guest.authorized_keys)
    try:
        assert transfer.run(node("b-0", "vm-2"), site_for(newcomer.port), "true", opts).exit_code == 0
    finally:
        newcomer.stop()


def test_console_fingerprints_are_checked_before_trusting_a_new_key(
        guest: LoopbackGuest, client_key: tuple[Path, str]) -> None:
    wrong = fingerprint(new_key())
    lying = SshOptions(key=client_key, console=lambda n: cloud_init_console(wrong))
    with pytest.raises(HostKeyNotInConsole) as info:
        transfer.run(node(), site_for(guest.port), "true", lying)
    line = info.value.line()
    assert "n-0" in line and guest.fingerprint in line and wrong in line and "\n" not in line
    assert not lying.known_hosts.path.exists() or hostkeys.host_key_alias(node()) not in lying.known_hosts.path.read_text()

    honest = SshOptions(key=client_key, console=lambda n: cloud_init_console(wrong, guest.fingerprint))
    assert transfer.run(node(), site_for(guest.port), "true", honest).exit_code == 0
    assert hostkeys.host_key_alias(node()) in honest.known_hosts.path.read_text()


def test_console_without_fingerprints_falls_back_to_first_use(guest: LoopbackGuest, client_key: tuple[Path, str]) -> None:
    quiet = SshOptions(key=client_key, console=lambda n: "booting...\nlogin: ")
    assert transfer.run(node(), site_for(guest.port), "true", quiet).exit_code == 0


def test_console_fingerprint_parsing() -> None:
    k1, k2 = new_key(), new_key()
    text = "old boot\n" + cloud_init_console(fingerprint(k2)) + cloud_init_console(fingerprint(k1))
    listed = hostkeys.console_fingerprints(text)
    assert listed is not None and hostkeys.key_matches_console(k1, listed)
    assert not hostkeys.key_matches_console(k2, listed)  # only the latest boot counts
    assert hostkeys.console_fingerprints("no block here") is None and hostkeys.console_fingerprints(None) is None
    # the public-key block alone is enough, and old cloud-init printed MD5 hex fingerprints
    only_keys = hostkeys.console_fingerprints("-----BEGIN SSH HOST KEY KEYS-----\n"
                                         f"{k1.get_name()} {k1.get_base64()} root@x\n-----END SSH HOST KEY KEYS-----\n")
    assert only_keys is not None and hostkeys.key_matches_console(k1, only_keys)
    import hashlib

    md5 = hashlib.md5(k2.asbytes(), usedforsecurity=False).hexdigest()
    old = ("ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
           f"ec2: 256 {':'.join(md5[i:i + 2] for i in range(0, 32, 2))} root@x (ED25519)\n"
           "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n")
    listed_old = hostkeys.console_fingerprints(old)
    assert listed_old is not None and hostkeys.key_matches_console(k2, listed_old)
    assert not hostkeys.key_matches_console(k1, listed_old)


# ---------------------------------------------------------------- readiness


class Events:
    def __init__(self, on_stage: Any = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.on_stage = on_stage

    def node_stage(self, n: Node, stage: str) -> None:
        self.seen.append((n.name, stage))
        if self.on_stage:
            self.on_stage(n, stage)

    def node_ready(self, n: Node) -> None:
        self.seen.append((n.name, "ready"))


def test_wait_ready_goes_through_every_stage(guest: LoopbackGuest, opts: SshOptions) -> None:
    guest.set_context("running")
    pending = node("n-0", address="")
    events = Events(on_stage=lambda n, stage: guest.set_context("done") if stage == "context" else None)
    refreshed: list[str] = []

    def refresh(ns: list[Node]) -> list[Node]:
        refreshed.extend(n.name for n in ns)
        return [node("n-0")]  # the cloud has given it an address by now

    ready = poll_ready([pending], {"s1": site_for(guest.port)}, opts, reporter=events, refresh=refresh,
                           poll=0.01)
    assert [n.name for n in ready] == ["n-0"] and ready[0].addresses == ("127.0.0.1",)
    assert events.seen == [("n-0", "address"), ("n-0", "ssh"), ("n-0", "context"), ("n-0", "ready")]
    assert refreshed == ["n-0"]


def test_the_sky_wait_retries_a_flaky_cloud_for_addresses(guest: LoopbackGuest, opts: SshOptions) -> None:
    """launch --wait and `skyctl wait` share ops.ready.wait_ready: a Transient answer while
    asking the cloud for a node's address is retried, not taken as the node's state."""
    from types import SimpleNamespace

    from skyctl.errors import Transient
    from skyctl.ops.ready import wait_ready

    answers: list[str] = []

    class Flaky:   # every other answer is a 503: the silent-site probe and the address refresh both meet one
        def get(self, node_id: str) -> Node:
            answers.append(node_id)
            if len(answers) % 2 == 1:
                raise Transient("HTTP 503: service unavailable", site="s1")
            return node("n-0")

    guest.set_context("done")
    events = Events()
    sky = SimpleNamespace(federation=SimpleNamespace(sites={"s1": site_for(guest.port)}), reporter=events,
                          driver=lambda site: Flaky())
    ready = wait_ready(sky, [node("n-0", address="")], opts, timeout=30)  # type: ignore[arg-type]
    assert [n.addresses for n in ready] == [("127.0.0.1",)]
    assert len(answers) >= 4   # the probe's 503 and its retry, then the refresh's 503 and its retry
    assert events.seen[0] == ("n-0", "address") and events.seen[-1] == ("n-0", "ready")


def test_wait_ready_without_held_connections_reconnects_at_the_context_stage(
        guest: LoopbackGuest, opts: SshOptions) -> None:
    guest.set_context("running")
    polls: list[str] = []

    events = Events()
    real_exec = Session.exec

    def counting_exec(self: Session, command: str, **kw: Any) -> Any:  # a spy: the real exec runs
        polls.append(command)
        if len(polls) == 3:
            guest.set_context("done")
        return real_exec(self, command, **kw)

    import unittest.mock

    with unittest.mock.patch.object(Session, "exec", counting_exec):
        ready = poll_ready([node()], {"s1": site_for(guest.port)}, opts, reporter=events, poll=0.01,
                               hold_connections=0)
    assert [n.name for n in ready] == ["n-0"]
    assert polls == [CONTEXT_PROBE] * 3
    assert guest.connections == 3  # one connection per poll
    assert events.seen == [("n-0", "address"), ("n-0", "ssh"), ("n-0", "context"), ("n-0", "ready")]


def test_wait_ready_times_out_naming_the_node_and_its_stage(
        guest: LoopbackGuest, opts: SshOptions) -> None:
    guest.set_context("running")
    sites = {"s1": site_for(guest.port, ), "s2": SiteConfig(name="s2", driver="memory", ssh={"port": closed_port()})}
    nodes = [node("n-0"), Node("far-0", "n", "s2", "memory", "vm-9", NodeState.RUNNING, ("127.0.0.1",))]
    with pytest.raises(NotReady) as info:
        poll_ready(nodes, sites, opts, timeout_for=lambda s: 0.3, poll=0.05)
    line = info.value.line()
    assert "n-0 stuck at stage 'context' (cloud-init status: running)" in line
    assert "far-0 stuck at stage 'ssh'" in line and "connection refused" in line
    assert "ready_timeout" in line and "\n" not in line
    assert info.value.site in ("s1", "s2")
    assert info.value.ready == [] and set(info.value.failures) == {"n-0", "far-0"}


def test_wait_ready_stops_at_a_failed_context(guest: LoopbackGuest, opts: SshOptions) -> None:
    guest.set_context("error")
    with pytest.raises(ContextFailed) as info:
        poll_ready([node()], {"s1": site_for(guest.port)}, opts, timeout_for=lambda s: 60, poll=0.01)
    assert "n-0" in info.value.line() and "cloud-init status: error" in info.value.line()
    assert "context failed" in info.value.line().split("status: error)", 1)[1]  # the guest's own words


def test_wait_ready_refuses_a_changed_host_key_at_once(guest: LoopbackGuest, opts: SshOptions, tmp_path: Path) -> None:
    transfer.run(node(), site_for(guest.port), "true", opts)
    rebuilt = start_guest(tmp_path / "vm1b", guest.authorized_keys)
    try:
        with pytest.raises(HostKeyChanged):
            poll_ready([node()], {"s1": site_for(rebuilt.port)}, opts, timeout_for=lambda s: 60, poll=0.01)
    finally:
        rebuilt.stop()


def test_cloud_init_states() -> None:
    assert cloud_init_state(0, "status: done\n", "") == "done"
    assert cloud_init_state(2, "\nstatus: done\nextended_status: degraded done\n", "") == "done"
    assert cloud_init_state(1, "status: error\n", "") == "error"
    assert cloud_init_state(0, "status: running\n", "") == "running"
    assert cloud_init_state(0, "status: not started\n", "") == "not started"
    assert cloud_init_state(127, "", "sh: cloud-init: not found\n") == "absent"


# ---------------------------------------------------------------- SFTP


def test_put_and_get_a_file(guest: LoopbackGuest, opts: SshOptions, tmp_path: Path) -> None:
    src = tmp_path / "payload.txt"
    src.write_text("hello\n")
    site = site_for(guest.port)
    assert transfer.put(node(), site, src, "payload.txt", opts) == ["payload.txt"]
    assert (guest.root / "payload.txt").read_text() == "hello\n"
    (guest.root / "inbox").mkdir()
    assert transfer.put(node(), site, src, "inbox", opts) == ["inbox/payload.txt"]  # into an existing dir
    back = tmp_path / "back.txt"
    assert transfer.get(node(), site, "payload.txt", back, opts) == [back]
    assert back.read_text() == "hello\n"
    with pytest.raises(NotFound) as info:
        transfer.get(node(), site, "missing.txt", tmp_path / "x", opts)
    assert "n-0:missing.txt" in info.value.line()


def test_put_and_get_directories_recursively(guest: LoopbackGuest, opts: SshOptions, tmp_path: Path) -> None:
    tree = tmp_path / "conf"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    (tree / "sub" / "deeper" / "c.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "deeper" / "c.sh").chmod(0o755)
    site = site_for(guest.port)
    with pytest.raises(UsageError):
        transfer.put(node(), site, tree, "app", opts)
    written = transfer.put(node(), site, tree, "app", opts, recursive=True)
    assert sorted(written) == ["app/a.txt", "app/sub/b.txt", "app/sub/deeper/c.sh"]
    assert (guest.root / "app" / "sub" / "b.txt").read_text() == "b"
    assert stat.S_IMODE((guest.root / "app" / "sub" / "deeper" / "c.sh").stat().st_mode) == 0o755

    out = tmp_path / "out"
    out.mkdir()
    got = transfer.get(node(), site, "app", out, opts, recursive=True)  # into an existing dir: out/app
    assert sorted(p.relative_to(out).as_posix() for p in got) == ["app/a.txt", "app/sub/b.txt", "app/sub/deeper/c.sh"]
    assert (out / "app" / "sub" / "deeper" / "c.sh").read_text() == "#!/bin/sh\n"
    with pytest.raises(UsageError):
        transfer.get(node(), site, "app", tmp_path / "nope", opts)


def test_put_many_copies_to_every_node(guest: LoopbackGuest, opts: SshOptions, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    nodes = [node("n-0", "vm-1"), node("n-1", "vm-2"), node("n-2", "vm-3", address="")]
    res = transfer.put_many(nodes, {"s1": site_for(guest.port)}, src, "f.txt", opts)
    assert res[0] == ["f.txt"] and res[1] == ["f.txt"] and isinstance(res[2], SkyError)


# ---------------------------------------------------------------- jump host and the system ssh


def test_a_jump_host_carries_the_connection(guest: LoopbackGuest, client_key: tuple[Path, str], tmp_path: Path) -> None:
    bastion = start_guest(tmp_path / "bastion", guest.authorized_keys, user="ops")
    try:
        site = site_for(guest.port, jump_host=f"ops@127.0.0.1:{bastion.port}")
        opts = SshOptions(key=client_key)
        res = transfer.run(node(), site, "echo via", opts)
        assert res.exit_code == 0 and res.stdout == "via\n"
        assert bastion.forwarded == [("127.0.0.1", guest.port)]
        assert f"[127.0.0.1]:{bastion.port}" in opts.known_hosts.path.read_text()  # its key is pinned too
    finally:
        bastion.stop()


def test_parse_jump_and_locations() -> None:
    assert parse_jump("ops@bastion.example:2222") == Jump("ops", "bastion.example", 2222)
    assert parse_jump("bastion") == Jump(None, "bastion", 22)
    assert str(parse_jump("ops@[2001:db8::1]:2200")) == "ops@[2001:db8::1]:2200"
    from skyctl.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_jump("ops@host:notaport")
    assert split_location("web-0:data/x") == ("web-0", "data/x")
    assert split_location("web:") == ("web", "")
    assert split_location("./a:b") == (None, "./a:b")
    assert split_location("/tmp/a:b") == (None, "/tmp/a:b")
    assert split_location("plain.txt") == (None, "plain.txt")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_the_system_ssh_trusts_what_skyctl_recorded(guest: LoopbackGuest, opts: SshOptions, tmp_path: Path) -> None:
    target = target_for(node(), site_for(guest.port))
    transfer.run(node(), site_for(guest.port), "true", opts)  # records the key, as `skyctl ssh` does first
    argv = ssh_command(target, opts.key[0], opts.known_hosts.path, ["echo", "from-openssh"])
    assert argv[:3] == ["ssh", "-i", str(opts.key[0])] and f"HostKeyAlias={target.alias}" in argv
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    batch = [argv[0], "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *argv[1:]]
    proc = subprocess.run(batch, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from-openssh\n"

    rebuilt = start_guest(tmp_path / "vm1c", guest.authorized_keys)
    try:  # the system ssh refuses a changed key just as skyctl does
        argv2 = ssh_command(target_for(node(), site_for(rebuilt.port)), opts.key[0],
                                opts.known_hosts.path, ["touch", "pwned"])
        proc = subprocess.run([argv2[0], "-o", "BatchMode=yes", *argv2[1:]], capture_output=True, text=True,
                              timeout=30, env=env)
        assert proc.returncode != 0 and not (rebuilt.root / "pwned").exists()
        assert "HOST IDENTIFICATION HAS CHANGED" in proc.stderr or "verification failed" in proc.stderr
    finally:
        rebuilt.stop()


def test_jump_host_goes_to_the_system_ssh_as_dash_j() -> None:
    target = target_for(node(), site_for(2222, jump_host="ops@bastion:2200", user="alma"))
    argv = ssh_command(target, Path("/k"), Path("/kh"))
    assert argv[argv.index("-J") + 1] == "ops@bastion:2200"
    assert argv[argv.index("-l") + 1] == "alma" and argv[argv.index("-p") + 1] == "2222"
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/kh" in argv and argv[-1] == "127.0.0.1"


NO_ERRORS = '{\n "v1": {\n  "datasource": "DataSourceConfigDrive",\n  "errors": []\n }\n}'
ERRORS = '{\n "v1": {\n  "datasource": "DataSourceConfigDrive",\n  "errors": [\n   "(\'scripts-user\', ...)"\n  ]\n }\n}'


@pytest.mark.parametrize(("files", "has_cloud_init", "state", "called"), [
    ({"enabled": ""}, True, "running", False),                        # booting: the shell answers
    ({"enabled": "", "result.json": NO_ERRORS}, True, "done", False),  # finished cleanly: the shell reads it
    ({"enabled": "", "result.json": ERRORS}, True, "error", True),     # failed: cloud-init gives the detail
    ({"enabled": "", "result.json": "not json"}, True, "error", True), # unreadable: cloud-init decides
    ({}, True, "error", True),                                        # not enabled here: ask it
    ({}, False, "absent", False),                                     # no cloud-init on the image: exit 127
])
def test_the_context_probe_starts_cloud_init_only_when_the_shell_cannot_tell(
        tmp_path: Path, files: dict[str, str], has_cloud_init: bool, state: str, called: bool) -> None:
    run_dir = tmp_path / "run" / "cloud-init"
    run_dir.mkdir(parents=True)
    for name, content in files.items():
        (run_dir / name).write_text(content)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    calls = tmp_path / "calls"
    if has_cloud_init:   # a stand-in that says "error", so a probe that wrongly skips it shows
        fake = bin_dir / "cloud-init"
        fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\necho 'status: error'\nexit 1\n")
        fake.chmod(0o755)
    proc = subprocess.run(["/bin/sh", "-c", context_probe(str(run_dir))], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, check=False)
    assert cloud_init_state(proc.returncode, proc.stdout, proc.stderr) == state
    assert (calls.read_text() if calls.exists() else "") == ("status --long\n" if called else "")
    assert CONTEXT_PROBE == context_probe("/run/cloud-init")
