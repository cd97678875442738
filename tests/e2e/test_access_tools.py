"""The tools people already use against the sandbox, through what skyctl generates: the real
OpenSSH client (ssh, scp, rsync over ssh) with `skyctl ssh-config`, and the real Ansible with
`skyctl inventory`. Host keys stay checked: a wrong one is refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL, SkyCli


def _need(tool: str) -> str:
    found = shutil.which(tool) or (str(Path(sys.executable).with_name(tool))
                                   if Path(sys.executable).with_name(tool).exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (CI installs it: see .ci/run)")
        pytest.skip(f"{tool} is not installed")
    return found


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory, skyctl_sandbox: Any) -> Iterator[SkyCli]:
    with skyctl_sandbox(tmp_path_factory.mktemp("access-home"), boot_delay=0.1) as s:
        s.run("launch", "demo", "--count", "2", "--site", "home", "--wait")
        yield s


def _ssh(sky: SkyCli, *argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=sky.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode in ok, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def test_openssh_reaches_nodes_by_name_with_the_host_key_checked(sky: SkyCli, tmp_path: Path) -> None:
    ssh, scp, rsync = _need("ssh"), _need("scp"), _need("rsync")
    config = tmp_path / "sky.ssh"
    config.write_text(sky.run("ssh-config", "demo").stdout)
    text = config.read_text()
    assert "Host demo-0\n" in text and "Host demo-1\n" in text
    assert "StrictHostKeyChecking yes" in text and "HostKeyAlias " in text

    assert _ssh(sky, ssh, "-F", str(config), "demo-0", "hostname").stdout.strip() == "demo-0"

    (tmp_path / "hello.txt").write_text("hello from scp\n")
    _ssh(sky, scp, "-F", str(config), str(tmp_path / "hello.txt"), "demo-1:")
    assert _ssh(sky, ssh, "-F", str(config), "demo-1", "cat hello.txt").stdout == "hello from scp\n"

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a\n")
    (data / "b.txt").write_text("b\n")
    _ssh(sky, rsync, "-a", "-e", f"{ssh} -F {config}", f"{data}/", "demo-1:data/")
    assert _ssh(sky, ssh, "-F", str(config), "demo-1", "ls data").stdout.split() == ["a.txt", "b.txt"]

    # A known-hosts file in which demo-0 shows another key: the very same config is refused.
    known = Path(re.search(r"UserKnownHostsFile (\S+)", text).group(1))  # type: ignore[union-attr]
    alias = re.search(r"Host demo-0\n(?:  .*\n)*?  HostKeyAlias (\S+)", text).group(1)  # type: ignore[union-attr]
    other = next(line.split(None, 1)[1] for line in known.read_text().splitlines()
                 if line and not line.startswith(alias + " "))
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(f"{alias} {other}\n")
    bad = tmp_path / "bad.ssh"
    bad.write_text(text.replace(f"UserKnownHostsFile {known}", f"UserKnownHostsFile {forged}"))
    refused = _ssh(sky, ssh, "-F", str(bad), "demo-0", "hostname", ok=(255,))
    assert "Host key verification failed" in refused.stderr and refused.stdout == ""


def test_never_contacted_nodes_are_pinned_or_left_out(sky: SkyCli, tmp_path: Path) -> None:
    ssh = _need("ssh")
    sky.run("launch", "fresh", "--count", "1", "--site", "home")  # no --wait: nobody logged in yet
    for _ in iterate_timeout(60, "fresh-0 to be running", interval=0.1):
        if [n["state"] for n in sky.nodes("fresh")] == ["running"]:
            break
    left = sky.run("ssh-config", "fresh", "--no-pin")
    assert "Host fresh-0" not in left.stdout and "no pinned host key yet" in left.stderr
    config = tmp_path / "fresh.ssh"
    config.write_text(sky.run("ssh-config", "fresh").stdout)
    assert "Host fresh-0\n" in config.read_text()
    assert _ssh(sky, ssh, "-F", str(config), "fresh-0", "hostname").stdout.strip() == "fresh-0"
    sky.run("delete", "fresh", "--yes")


def test_written_file_is_included_and_kept_current(sky: SkyCli, tmp_path: Path) -> None:
    ssh = _need("ssh")
    sky.run("launch", "tmp", "--count", "1", "--site", "home", "--wait")
    sky.run("ssh-config", "--write", "--prefix", "sky-")
    written = sky.home / "config" / "ssh_config"
    assert written.stat().st_mode & 0o777 == 0o600
    assert "Host sky-demo-0\n" in written.read_text() and "Host sky-tmp-0\n" in written.read_text()
    user_config = tmp_path / "config"
    user_config.write_text(f"Include {written}\n")  # the one line a user adds to ~/.ssh/config
    assert _ssh(sky, ssh, "-F", str(user_config), "sky-tmp-0", "hostname").stdout.strip() == "tmp-0"

    sky.run("delete", "tmp", "--yes")
    text = written.read_text()
    assert "tmp-0" not in text and "Host sky-demo-0\n" in text
    assert _ssh(sky, ssh, "-F", str(user_config), "sky-demo-1", "hostname").stdout.strip() == "demo-1"

    data = sky.json("ssh-config", "demo-0")
    assert [e["node"] for e in data] == ["demo-0"] and data[0]["port"] > 0 and data[0]["jump"] is None


def _ansible_env(sky: SkyCli, tmp_path: Path) -> dict[str, str]:
    env = dict(sky.env)
    env.update(ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_NOCOLOR="1", PATH=f"{Path(SKYCTL).parent}:{env.get('PATH', '')}")
    return env


def _ansible_ping(sky: SkyCli, tmp_path: Path, pattern: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "sky.sh"
    script.write_text(f'#!/bin/sh\nexec {SKYCTL} inventory "$@"\n')
    script.chmod(0o755)
    # The sandbox's VMs run commands on this host: point Ansible at this host's python.
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return subprocess.run([_need("ansible"), pattern, "-i", str(script), "-m", "ping", "-e",
                           f"ansible_python_interpreter={python}"], env=_ansible_env(sky, tmp_path),
                          capture_output=True, text=True, timeout=180)


def test_ansible_reads_the_inventory_and_pings_a_group(sky: SkyCli, tmp_path: Path) -> None:
    inventory_cmd = _need("ansible-inventory")
    script = tmp_path / "sky.sh"
    script.write_text(f'#!/bin/sh\nexec {SKYCTL} inventory "$@"\n')
    script.chmod(0o755)
    env = _ansible_env(sky, tmp_path)

    inv = sky.json("inventory", "--list")
    assert inv["demo"]["hosts"] == ["demo-0", "demo-1"] and inv["site_home"]["hosts"] == ["demo-0", "demo-1"]
    hv = inv["_meta"]["hostvars"]["demo-0"]
    assert hv["ansible_user"] == "skyctl" and hv["ansible_port"] > 0
    assert "StrictHostKeyChecking=yes" in hv["ansible_ssh_common_args"]
    assert sky.json("inventory", "--host", "demo-1")["ansible_host"] == inv["_meta"]["hostvars"]["demo-1"]["ansible_host"]

    graph = subprocess.run([inventory_cmd, "-i", str(script), "--graph"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert graph.returncode == 0, graph.stderr
    assert "@demo:" in graph.stdout and "--demo-1" in graph.stdout and "@site_home:" in graph.stdout

    ping = _ansible_ping(sky, tmp_path, "demo")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.count("SUCCESS") == 2 and '"ping": "pong"' in ping.stdout


def test_jump_host_through_its_own_checked_block(sky: SkyCli, tmp_path: Path) -> None:
    """A site behind a bastion (here a sandbox VM of another site, which forwards as sshd does):
    the generated config reaches its nodes with ProxyJump, both host keys checked."""
    import yaml

    ssh = _need("ssh")
    sky.run("launch", "bastion", "--count", "1", "--site", "home", "--wait")
    b = sky.nodes("bastion")[0]
    fed = yaml.safe_load((sky.home / "state" / "sandbox" / "sky.yaml").read_text())
    port = fed["sites"]["cc"]["ssh"]["port"]
    fed["sites"]["cc"]["ssh"]["jump_host"] = f"skyctl@{b['addresses'][0]}:{port}"
    jumped = tmp_path / "jumped.yaml"
    jumped.write_text(yaml.safe_dump(fed))
    via = SkyCli(sky.home)
    via.env["SKYCTL_CONFIG"] = str(jumped)
    try:
        via.run("launch", "far", "--count", "1", "--site", "cc", "--wait")
        config = tmp_path / "far.ssh"
        config.write_text(via.run("ssh-config", "far").stdout)
        text = config.read_text()
        assert "Host skyctl-jump-cc\n" in text and "ProxyJump skyctl-jump-cc" in text
        assert f"HostKeyAlias [{b['addresses'][0]}]:{port}" in text
        assert _ssh(via, ssh, "-F", str(config), "far-0", "hostname").stdout.strip() == "far-0"
        hv = via.json("inventory", "--host", "far-0")
        assert "ProxyCommand=" in hv["ansible_ssh_common_args"]
        ping = _ansible_ping(via, tmp_path, "far-0")
        assert ping.returncode == 0 and '"ping": "pong"' in ping.stdout, ping.stdout + ping.stderr
    finally:
        via.run("delete", "far", "--yes", ok=(0, 3))
        sky.run("delete", "bastion", "--yes")
