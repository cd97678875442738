"""`skyctl ssh | exec | cp | wait` through the real CLI, in process, against nodes of the in-memory
cloud, each given its own loopback address where the sandbox's guest SSH server listens on the
site's SSH port, as sandbox VMs do (skyctl in its own processes on sandbox VMs:
tests/e2e/test_ssh_cli.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.sandbox.guest.loopback import LoopbackGuest, start_guest
from skyctl.testing.cli import Runner, federation

REMOTE_COMMANDS = ("ssh", "exec", "cp", "wait")


@pytest.fixture
def user_key() -> tuple[Path, str]:
    """The key skyctl logs in with: the one contexts deliver (here skyctl's own, made on first use)."""
    from skyctl.keys import default_ssh_key

    return default_ssh_key()


@pytest.fixture
def guest(tmp_path: Path, user_key: tuple[Path, str]) -> Iterator[LoopbackGuest]:
    g = start_guest(tmp_path / "vm", [user_key[1]], user=LOGIN_USER)
    yield g
    g.stop()


Writer = Callable[[dict[str, Any]], Path]
LOGIN_USER = "skyctl"  # the user the base context creates; nodes carry it as their `user` label


def one_site(sky_file: Writer, port: int, **extra: Any) -> Path:
    return sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 8,
                                     "ssh": {"port": port}, **extra}))


class Fleet:
    """One guest per node, each on its own loopback address and the site's common SSH port,
    as the sandbox gives its VMs."""

    def __init__(self, guests: dict[str, LoopbackGuest]) -> None:
        self.guests = guests

    def __getitem__(self, name: str) -> LoopbackGuest:
        return self.guests[name]

    @property
    def port(self) -> int:
        return next(iter(self.guests.values())).port

    def set_status(self, status: str) -> None:
        for g in self.guests.values():
            g.set_context(status)

    def revoke_keys(self) -> None:
        for g in self.guests.values():
            g.authorized_keys.clear()


def give_addresses(site: str, addresses: dict[str, str]) -> None:
    """The in-memory cloud assigns 127.0.0.1 to every node; hand each its own address instead."""
    from dataclasses import replace

    from skyctl.testing import memory as memdriver

    c = memdriver.cloud(site)
    with c.lock:
        for node_id, (n, ctx) in list(c.nodes.items()):
            if n.name in addresses:
                c.nodes[node_id] = (replace(n, addresses=(addresses[n.name],)), ctx)


@pytest.fixture
def sx(run: Runner, sky_file: Writer, tmp_path: Path, user_key: tuple[Path, str]) -> Iterator[Fleet]:
    """Three nodes of group sx, each with its own SSH endpoint."""
    names = ["sx-0", "sx-1", "sx-2"]
    first = start_guest(tmp_path / "sx-0", [user_key[1]], user=LOGIN_USER, host="127.0.0.2")
    guests = {"sx-0": first}
    try:
        for i, name in enumerate(names[1:], start=3):
            guests[name] = start_guest(tmp_path / name, first.authorized_keys, user=LOGIN_USER, host=f"127.0.0.{i}",
                                       port=first.port)
        one_site(sky_file, first.port)
        res = run("launch", "sx", "--count", "3", "-o", "json")
        assert res.code == 0, res.err
        give_addresses("home", {name: g.host for name, g in guests.items()})
        yield Fleet(guests)
    finally:
        for g in guests.values():
            g.stop()


def test_the_commands_are_listed_in_help(run: Runner) -> None:
    out = run("--help").out
    for cmd in REMOTE_COMMANDS:
        assert f"  {cmd} " in out
    assert "[-- COMMAND...]" in run("exec", "--help").out


def test_exec_json_gives_one_result_per_node(run: Runner, sx: Fleet) -> None:
    res = run("exec", "sx", "-o", "json", "--", "echo", "hello")
    assert res.code == 0, res.err
    data = res.json()
    assert [d["node"] for d in data] == ["sx-0", "sx-1", "sx-2"]
    assert all(d["exit_code"] == 0 and d["stdout"] == "hello\n" and d["stderr"] == "" for d in data)


def test_exec_streams_prefixed_lines_and_fails_when_a_node_fails(run: Runner, sx: Fleet) -> None:
    res = run("exec", "sx", "--", "echo hi; echo oops >&2")
    assert res.code == 0, res.err
    assert sorted(res.out.splitlines()) == ["sx-0 | hi", "sx-1 | hi", "sx-2 | hi"]
    assert "sx-1 | oops" in res.err

    bad = run("exec", "sx", "sx-0", "--", "exit 3")
    assert bad.code == 1
    assert "sx-2: exit 3" in bad.err and "Traceback" not in bad.err
    assert [d["exit_code"] for d in run("exec", "sx-1", "-o", "json", "--", "exit 4").json()] == [4]


def test_words_after_the_dashes_are_not_skyctl_options(run: Runner, sx: Fleet) -> None:
    res = run("exec", "sx-0", "-o", "json", "--", "echo", "-o", "--help")
    assert res.code == 0, res.err
    assert res.json()[0]["stdout"] == "-o --help\n"
    assert run("exec", "sx").code == 2  # no command given


def test_cp_to_a_group_then_back_from_one_node(run: Runner, sx: Fleet, tmp_path: Path) -> None:
    payload = tmp_path / "f"
    payload.write_text("the payload\n")
    res = run("cp", str(payload), "sx:payload.txt")
    assert res.code == 0, res.err
    assert "copied 3 file(s) to 3 node(s)" in res.err
    shown = run("exec", "sx", "-o", "json", "--", "cat", "payload.txt").json()
    assert [d["stdout"] for d in shown] == ["the payload\n"] * 3

    back = tmp_path / "back.txt"
    res = run("cp", "sx-1:payload.txt", str(back))
    assert res.code == 0, res.err
    assert back.read_text() == "the payload\n"
    many = tmp_path / "many"   # from a group: each node's copy in DIR/<node>/
    res = run("cp", "sx:payload.txt", str(many))
    assert res.code == 0, res.err
    assert "copied 3 file(s) from 3 node(s)" in res.err
    assert {p.relative_to(many).as_posix(): p.read_text() for p in many.rglob("*.txt")} == {
        f"sx-{i}/payload.txt": "the payload\n" for i in range(3)}
    not_a_dir = tmp_path / "flat.txt"
    not_a_dir.write_text("")
    assert run("cp", "sx:payload.txt", str(not_a_dir)).code == 2


def test_cp_makes_missing_directories_on_the_node(run: Runner, sx: Fleet, tmp_path: Path) -> None:
    payload = tmp_path / "in.dat"
    payload.write_text("x\n")
    res = run("cp", str(payload), "sx-0:deep/er/file.dat")
    assert res.code == 0, res.err
    assert (sx["sx-0"].root / "deep" / "er" / "file.dat").read_text() == "x\n"
    assert run("cp", str(payload), "sx-1:new/dir/").code == 0
    assert (sx["sx-1"].root / "new" / "dir" / "in.dat").read_text() == "x\n"
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "b.txt").write_text("b\n")
    assert run("cp", "-r", str(tree), "sx-2:jobs/today/").code == 0
    assert (sx["sx-2"].root / "jobs" / "today" / "tree" / "a" / "b.txt").read_text() == "b\n"


def test_exec_words_keep_their_argv_one_word_is_a_shell_line(run: Runner, sx: Fleet) -> None:
    # several words: each quoted, as docker exec (one file with a space, $HOME not expanded)
    res = run("exec", "sx-0", "-o", "json", "--", "touch", "my file")
    assert res.code == 0, res.err
    assert (sx["sx-0"].root / "my file").exists() and not (sx["sx-0"].root / "my").exists()
    literal = run("exec", "sx-0", "-o", "json", "--", "echo", "$HOME", "a;b").json()[0]["stdout"]
    assert literal == "$HOME a;b\n"
    # one word: a shell command line, as ssh host 'cmd'
    piped = run("exec", "sx-0", "-o", "json", "--", "echo one two | wc -w").json()[0]["stdout"]
    assert piped.strip() == "2"
    assert "argv" in run("exec", "--help").out and "shell command line" in run("exec", "--help").out


def test_ctrl_c_stops_the_remote_commands(sx: Fleet, run: Runner, tmp_path: Path) -> None:
    """What exec does on Ctrl-C (SshOptions.cancel from fan_out): the commands get SIGINT
    through the SSH "signal" request, and their connections close."""
    import threading

    from skyctl.config import load
    from skyctl.ops.inventory import resolve_targets
    from skyctl.ops.sky import Sky
    from skyctl.polling import iterate_timeout
    from skyctl.ssh.transfer import run_many

    with Sky(load(None)) as sky:
        nodes, _ = resolve_targets(sky, ["sx"])
        from skyctl.keys import default_ssh_key
        from skyctl.ssh.session import SshOptions

        opts = SshOptions(key=default_ssh_key())
        results: list[object] = []
        worker = threading.Thread(target=lambda: results.extend(run_many(
            nodes, sky.federation.sites, "echo $$ > pid; exec sleep 600", opts)), daemon=True)
        worker.start()
        pids = {}
        for _ in iterate_timeout(30, "the commands to start", interval=0.05):
            pids = {n: (sx[n].root / "pid") for n in ("sx-0", "sx-1", "sx-2")}
            if all(p.exists() and p.read_text().strip() for p in pids.values()):
                break
        alive = [int(p.read_text()) for p in pids.values()]
        opts.cancel()
        worker.join(30)
        assert not worker.is_alive()
        for _ in iterate_timeout(30, "the remote commands to end", interval=0.05):
            if not any(_running(pid) for pid in alive):
                break


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) has stopped too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_cp_directories_need_r(run: Runner, sx: Fleet, tmp_path: Path) -> None:
    tree = tmp_path / "job"
    (tree / "in").mkdir(parents=True)
    (tree / "in" / "data.csv").write_text("1,2\n")
    assert run("cp", str(tree), "sx-0:").code == 2
    res = run("cp", "-r", str(tree), "sx-0:", "-o", "json")
    assert res.code == 0, res.err
    assert res.json() == [{"node": "sx-0", "files": ["job/in/data.csv"], "error": None}]
    assert (sx["sx-0"].root / "job" / "in" / "data.csv").read_text() == "1,2\n"
    assert not (sx["sx-1"].root / "job").exists()
    out = tmp_path / "fetched"
    assert run("cp", "-r", "sx-0:job", str(out)).code == 0
    assert (out / "in" / "data.csv").read_text() == "1,2\n"


def test_ssh_with_a_command_returns_its_exit_code(run: Runner, sx: Fleet) -> None:
    res = run("ssh", "sx-0", "--", "echo", "hi")
    assert (res.code, res.out) == (0, "hi\n")
    assert run("ssh", "sx-0", "--", "exit 7").code == 7
    group = run("ssh", "sx", "--", "true")
    assert group.code == 2 and "group of 3 nodes" in group.err


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_interactive_ssh_hands_over_to_the_system_ssh(run: Runner, sx: Fleet, monkeypatch: pytest.MonkeyPatch,
                                                      user_key: tuple[Path, str], skyctl_home: Path) -> None:
    handed: list[list[str]] = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: handed.append([file, *argv]) or None)
    res = run("ssh", "sx-2")
    assert res.code == 0, res.err
    (file, *argv), = handed
    assert file == "ssh" and argv[argv.index("-i") + 1] == str(user_key[0])
    assert argv[argv.index("-p") + 1] == str(sx.port) and argv[-1] == sx["sx-2"].host
    known = skyctl_home / "state" / "known_hosts"
    assert f"UserKnownHostsFile={known}" in argv and "StrictHostKeyChecking=yes" in argv
    # what was handed over really logs in, trusting the key skyctl recorded first
    proc = subprocess.run([argv[0], "-o", "BatchMode=yes", *argv[1:], "--", "echo", "interactive-ok"],
                          capture_output=True, text=True, timeout=30,
                          env={"HOME": os.environ["HOME"], "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "interactive-ok\n"


def test_a_changed_host_key_is_refused_until_accepted(run: Runner, sx: Fleet, tmp_path: Path) -> None:
    assert run("exec", "sx", "--", "true").code == 0  # first use records the keys
    real = sx["sx-0"]
    real.stop()
    impostor = start_guest(tmp_path / "impostor", real.authorized_keys, user=LOGIN_USER, host=real.host, port=real.port)
    try:  # same node, same address, another host key
        res = run("exec", "sx", "-o", "json", "--", "touch owned")
        assert res.code == 3  # one node could not be trusted, the other two ran
        assert [d["exit_code"] for d in res.json()] == [None, 0, 0]
        line, = [ln for ln in res.err.splitlines() if "host key" in ln]
        assert "sx-0" in line and "changed" in line and real.fingerprint in line and impostor.fingerprint in line
        assert "--accept-new-host-key" in line
        assert "Traceback" not in res.err and not (impostor.root / "owned").exists()
        only = run("ssh", "sx-0", "--", "true")
        assert only.code == 1 and only.err.count("\n") == 1

        ok = run("exec", "sx-0", "--accept-new-host-key", "--", "echo replaced")
        assert ok.code == 0 and "replaced" in ok.out
        assert run("ssh", "sx-0", "--", "true").code == 0
    finally:
        impostor.stop()


def test_a_key_the_node_does_not_accept_fails_with_one_line(run: Runner, sx: Fleet) -> None:
    sx.revoke_keys()
    res = run("ssh", "sx-0", "--", "true")
    assert res.code == 5
    assert res.err.count("\n") == 1 and "sx-0" in res.err and "refused the key" in res.err
    every = run("exec", "sx", "-o", "json", "--", "true")
    assert every.code == 5 and all(d["exit_code"] is None and "refused" in d["error"] for d in every.json())


def test_exec_exits_3_when_some_nodes_cannot_be_reached(run: Runner, sky_file: Writer, guest: LoopbackGuest) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 2, "ssh": {"port": guest.port}},
                        cc={"driver": "memory", "tier": "remote", "instances": 8, "ssh": {"port": dead_port}}))
    assert run("launch", "mix", "--count", "3").code == 0
    res = run("exec", "mix", "-o", "json", "--", "echo", "up")
    assert res.code == 3
    by_site = {d["node"]: d for d in res.json()}
    assert sorted(d["exit_code"] for d in by_site.values() if d["exit_code"] is not None) == [0, 0]
    unreachable = [d for d in by_site.values() if d["exit_code"] is None]
    assert len(unreachable) == 1 and "connection refused" in unreachable[0]["error"]


def test_wait_returns_when_ready_and_times_out_naming_the_stage(run: Runner, sx: Fleet) -> None:
    res = run("wait", "sx", "-o", "json")
    assert res.code == 0, res.err
    assert [n["name"] for n in res.json()] == ["sx-0", "sx-1", "sx-2"]

    sx.set_status("running")
    stuck = run("wait", "sx-1", "--timeout", "0.3")
    assert stuck.code == 1
    assert "sx-1 stuck at stage 'context' (cloud-init status: running)" in stuck.err
    assert "Traceback" not in stuck.err

    sx.set_status("error")
    failed = run("wait", "sx")
    assert failed.code == 1 and "cloud-init status: error" in failed.err
