"""`skyctl ssh | exec | cp | wait` run by skyctl in its own processes against the sandbox's VMs,
as a user would (the in-process cases against loopback guests are in
tests/component/test_ssh_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from skyctl.testing.cli import SKYCTL


def test_into_the_sandbox_vms(tmp_path: Path) -> None:
    """Issue 8's 'done when' on the sandbox: real drivers, real per-VM SSH endpoints, skyctl in
    its own processes."""
    home = tmp_path / "home"
    env = {"SKYCTL_HOME": str(home), "HOME": str(home / "user"), "NO_COLOR": "1", "PATH": os.environ["PATH"]}
    (home / "user").mkdir(parents=True)

    def sky(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SKYCTL, *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    up = sky("sandbox", "up", "--boot-delay", "0.2")
    assert up.returncode == 0, up.stderr
    try:
        env["SKYCTL_CONFIG"] = json.loads(sky("sandbox", "status", "-o", "json").stdout)["config"]
        launched = sky("launch", "sx", "--count", "3", "--site", "home")
        assert launched.returncode == 0, launched.stderr
        ready = sky("wait", "sx", "-o", "json")
        assert ready.returncode == 0, ready.stderr
        assert sorted(n["name"] for n in json.loads(ready.stdout)) == ["sx-0", "sx-1", "sx-2"]

        hello = sky("exec", "sx", "-o", "json", "--", "echo", "hello")
        assert hello.returncode == 0, hello.stderr
        assert [(d["exit_code"], d["stdout"]) for d in json.loads(hello.stdout)] == [(0, "hello\n")] * 3
        assert sky("exec", "sx", "--", "false").returncode == 1

        (tmp_path / "f").write_text("payload\n")
        assert sky("cp", "f", "sx:payload.txt").returncode == 0
        shown = sky("exec", "sx", "--", "cat", "payload.txt")
        assert sorted(shown.stdout.splitlines()) == ["sx-0 | payload", "sx-1 | payload", "sx-2 | payload"]
        hi = sky("ssh", "sx-0", "--", "echo", "hi")
        assert (hi.returncode, hi.stdout) == (0, "hi\n")
        assert sky("cp", "sx-0:payload.txt", "back.txt").returncode == 0
        assert (tmp_path / "back.txt").read_text() == "payload\n"

        # each VM's key was recorded under its own name; swap one for another VM's key
        known = home / "state" / "known_hosts"
        lines = known.read_text().splitlines()
        assert len(lines) == 3 and all(ln.split()[0].endswith(".home.skyctl") for ln in lines)
        forged = [f"{lines[0].split()[0]} {' '.join(lines[1].split()[1:])}", *lines[1:]]
        known.write_text("\n".join(forged) + "\n")
        refused = sky("exec", "sx", "-o", "json", "--", "true")
        assert refused.returncode == 3  # one node not trusted, the others ran
        bad = [d for d in json.loads(refused.stdout) if d["exit_code"] is None]
        assert len(bad) == 1 and "host key of" in bad[0]["error"] and "changed" in bad[0]["error"]
    finally:
        sky("sandbox", "down")


def test_interactive_ssh_gets_a_terminal_and_every_path_sees_the_same_root(tmp_path: Path) -> None:
    """Issue 16: `skyctl ssh NODE` on a terminal prompts and runs what is typed; exec, cp and
    ssh agree on absolute paths of a sandbox VM (`/etc/hostname` is the VM's for all three)."""
    import pty

    from skyctl.polling import iterate_timeout

    home = tmp_path / "home"
    env = {"SKYCTL_HOME": str(home), "HOME": str(home / "user"), "NO_COLOR": "1", "PATH": os.environ["PATH"],
           "TERM": "xterm"}
    (home / "user").mkdir(parents=True)

    def sky(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SKYCTL, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    assert sky("sandbox", "up", "--boot-delay", "0.1").returncode == 0
    try:
        env["SKYCTL_CONFIG"] = json.loads(sky("sandbox", "status", "-o", "json").stdout)["config"]
        assert sky("launch", "mu", "--site", "home", "--wait").returncode == 0
        assert sky("exec", "mu-0", "--", "cat /etc/hostname").stdout == "mu-0 | mu-0\n"
        on_ssh = sky("ssh", "mu-0", "--", "cat", "/etc/hostname").stdout
        assert sky("cp", "mu-0:/etc/hostname", "hostname").returncode == 0
        assert on_ssh == (tmp_path / "hostname").read_text() == "mu-0\n"

        master, slave = pty.openpty()
        proc = subprocess.Popen([SKYCTL, "ssh", "mu-0"], env=env, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True, cwd=tmp_path)
        os.close(slave)
        seen = b""
        try:
            os.write(master, b"echo $((6*7)); cat /etc/hostname\n")
            for _ in iterate_timeout(60, "the remote shell's answer", interval=0.01):
                seen += os.read(master, 4096)
                if b"42\r\nmu-0" in seen:
                    break
            os.write(master, b"exit\n")
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        assert b"$ " in seen or b"# " in seen   # the remote shell prompted: it has a terminal
    finally:
        sky("sandbox", "down")
