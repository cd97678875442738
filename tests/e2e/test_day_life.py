"""A scientist's day on the sandbox (issue 16 items 3, 4 and 9): stop/start/reboot with the
clouds' real refusals, console and cloud-init logs, port forwarding, exec's argv, cp's parents
and gathering, delete --all and ps filters, all through `skyctl` in its own processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL


class Day:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        (self.home / "user").mkdir(parents=True)
        self.env = {"SKYCTL_HOME": str(self.home), "HOME": str(self.home / "user"), "NO_COLOR": "1",
                    "PATH": os.environ["PATH"]}

    def __call__(self, *args: str, ok: tuple[int, ...] | None = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=120,
                              cwd=self.tmp)
        if ok is not None:
            assert proc.returncode in ok, f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str, ok: tuple[int, ...] | None = (0,)) -> Any:
        return json.loads(self(*args, "-o", "json", ok=ok).stdout)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    d = Day(tmp_path_factory.mktemp("day"))
    d("sandbox", "up", "--boot-delay", "0.2")
    try:
        d.env["SKYCTL_CONFIG"] = d.json("sandbox", "status")["config"]
        d("launch", "os", "--count", "2", "--site", "home", "--wait")
        d("launch", "one", "--count", "1", "--site", "cc", "--wait")
        yield d
    finally:
        d("sandbox", "down", ok=None)


def states(day: Day, group: str) -> dict[str, str]:
    return {n["name"]: n["state"] for n in day.json("ps", group)}


def test_stop_start_reboot_on_both_clouds(day: Day) -> None:
    stopped = day.json("stop", "os-0", "one-0", "--wait")
    assert {n["name"]: n["state"] for n in stopped} == {"os-0": "stopped", "one-0": "stopped"}
    assert states(day, "os") == {"os-0": "stopped", "os-1": "running"}
    assert sorted(n["name"] for n in day.json("ps", "--state", "stopped")) == ["one-0", "os-0"]

    # a stopped VM's SSH is gone; the clouds refuse a soft reboot with their own words
    assert day("exec", "os-0", "--", "true", ok=None).returncode != 0
    nova = day("reboot", "os-0", ok=(1,))
    assert "Cannot 'reboot' instance" in nova.stderr and "while it is in vm_state stopped" in nova.stderr
    assert nova.stderr.count("\n") == 1
    oned = day("reboot", "one-0", ok=(1,))
    assert 'Error performing action "reboot": This action is not available for state POWEROFF' in oned.stderr

    started = day.json("start", "os", "one", "--wait")
    assert {n["state"] for n in started} == {"running"}
    day("wait", "os-0", "one-0")
    back = json.loads(day("exec", "os-0", "one-0", "-o", "json", "--", "echo", "back").stdout)
    assert [d["stdout"] for d in back] == ["back\n", "back\n"]
    # a reboot in progress and Nova's task_state refusals: drivers/openstack/tests


def test_console_and_cloud_init_logs(day: Day) -> None:
    console = day("logs", "os-1")
    assert "Cloud-init v." in console.stdout and "login:" in console.stdout
    none = day("logs", "one-0", ok=(1,))
    assert "OpenNebula serves no console log" in none.stderr and "--cloud-init" in none.stderr
    ci = day("logs", "one-0", "--cloud-init")
    assert ci.stdout.strip(), "the guest's cloud-init output is empty"
    assert day("logs", "os-0", "--cloud-init").stdout.strip()


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Echo:
    """A TCP service that answers each line with `name: line`, on `host`."""

    def __init__(self, host: str, name: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.name = name
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                conn.sendall(f"{self.name}: ".encode() + data)

    def close(self) -> None:
        self.sock.close()


def _ask(host: str, port: int, timeout: float = 30.0) -> str:
    """Connect (again until the forward is up) and send one line; the answer."""
    for _ in iterate_timeout(timeout, f"a forward on {host}:{port}", interval=0.1):
        try:
            with socket.create_connection((host, port), timeout=5) as c:
                c.sendall(b"ping\n")
                answer = c.recv(1024).decode()
            if answer:
                return answer
        except OSError:
            continue
    raise AssertionError("unreachable")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_port_forwards_to_and_from_a_sandbox_vm(day: Day) -> None:
    node = day.json("show", "os-1")
    address = node["addresses"][0]
    on_vm = Echo(address, "vm")          # a service on the VM (its address), e.g. a notebook
    here = Echo("127.0.0.1", "laptop")   # a service on this machine
    local_port, vm_port = _free_port(), _free_port(address)
    proc = subprocess.Popen([SKYCTL, "ssh", "os-1", "-N", "-L", f"{local_port}:localhost:{on_vm.port}",
                             "-R", f"{vm_port}:localhost:{here.port}", "--ssh-option", "ServerAliveInterval=30"],
                            env=day.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=day.tmp)
    try:
        assert _ask("127.0.0.1", local_port) == "vm: ping\n"     # -L: localhost on the VM is the VM
        assert _ask(address, vm_port) == "laptop: ping\n"        # -R: the VM's port reaches here
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
        on_vm.close()
        here.close()
    # with a command, forwards and options go through the system ssh too
    ran = day("ssh", "os-1", "--ssh-option", "ConnectTimeout=20", "--", "echo", "via system ssh")
    assert ran.stdout == "via system ssh\n"


def test_exec_argv_and_cp_gather_on_the_sandbox(day: Day) -> None:
    words = json.loads(day("exec", "os", "-o", "json", "--", "echo", "a  b", "$HOME").stdout)
    assert [d["stdout"] for d in words] == ["a  b $HOME\n"] * 2
    line = json.loads(day("exec", "os-0", "-o", "json", "--", "echo a  b | wc -w").stdout)
    assert line[0]["stdout"].strip() == "2"
    (day.tmp / "in.txt").write_text("data\n")
    day("cp", "in.txt", "os:inputs/today/in.txt")
    out = day.tmp / "gathered"
    day("cp", "os:inputs/today/in.txt", str(out))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == ["os-0/in.txt", "os-1/in.txt"]
