"""What `ssh-config` and `inventory` hold (skyctl.ops.access), without sockets."""

from __future__ import annotations

import shlex
from pathlib import Path

from skyctl.ops.access import (Access, HostEntry, JumpHost, ansible_inventory, forget_written, read_written,
                               ssh_common_args, ssh_config_blocks, update_written)


def _entry(name: str, site: str = "home", group: str | None = "web", jump: bool = False) -> HostEntry:
    j = JumpHost(f"skyctl-jump-{site}", "bastion.example", 2222, "ops", "[bastion.example]:2222") if jump else None
    return HostEntry(name, group, site, f"id-{name}", "10.0.0.5", 22, "cloud-user", "/keys/id ed25519",
                     f"id-{name}.{site}.skyctl", "/state/known_hosts", j)


def test_host_block_pins_the_node_key_and_quotes_paths_with_spaces() -> None:
    block = ssh_config_blocks([_entry("web-0")], prefix="sky-")["web-0"]
    lines = [ln.strip() for ln in block.splitlines()]
    assert lines[1] == "Host sky-web-0"
    assert {"HostName 10.0.0.5", "User cloud-user", "Port 22", 'IdentityFile "/keys/id ed25519"',
            "UserKnownHostsFile /state/known_hosts", "StrictHostKeyChecking yes",
            "HostKeyAlias id-web-0.home.skyctl"} <= set(lines)
    assert not any(ln.startswith("ProxyJump") for ln in lines)


def test_jump_host_gets_its_own_block_once() -> None:
    blocks = ssh_config_blocks([_entry("a-0", "cc", jump=True), _entry("a-1", "cc", jump=True)])
    assert list(blocks) == ["@skyctl-jump-cc", "a-0", "a-1"]
    jump = blocks["@skyctl-jump-cc"]
    assert "HostName bastion.example" in jump and "Port 2222" in jump and "User ops" in jump
    assert "HostKeyAlias [bastion.example]:2222" in jump
    assert "ProxyJump skyctl-jump-cc" in blocks["a-0"]


def test_written_file_round_trips_and_forgets_deleted_nodes(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    update_written(Access([_entry("web-0"), _entry("far-0", "cc", jump=True)]), everything=True, path=path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(read_written(path)) == {"@skyctl-jump-cc", "web-0", "far-0"}
    assert forget_written(["far-0", "nope"], path=path)
    assert set(read_written(path)) == {"web-0"}  # the jump host no node uses goes too
    assert not forget_written(["nope"], path=path)


def test_refresh_keeps_nodes_of_sites_that_did_not_answer(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    update_written(Access([_entry("web-0"), _entry("far-0", "cc")]), everything=True, path=path)
    update_written(Access([_entry("web-1")], site_errors={"cc": object()}), everything=True,  # type: ignore[dict-item]
                   path=path)
    assert set(read_written(path)) == {"far-0", "web-1"}


def test_inventory_groups_per_group_and_site_with_checked_ssh_args() -> None:
    inv = ansible_inventory([_entry("web-0"), _entry("web-1", "cc", jump=True), _entry("solo", group=None)])
    assert inv["web"] == {"hosts": ["web-0", "web-1"]}
    assert inv["site_home"] == {"hosts": ["web-0", "solo"]} and inv["site_cc"] == {"hosts": ["web-1"]}
    assert inv["all"]["children"] == ["site_cc", "site_home", "web"]
    hv = inv["_meta"]["hostvars"]["web-1"]
    assert hv["ansible_host"] == "10.0.0.5" and hv["ansible_user"] == "cloud-user" and hv["ansible_port"] == 22
    args = shlex.split(ssh_common_args(_entry("web-1", "cc", jump=True)))
    assert "StrictHostKeyChecking=yes" in args and "HostKeyAlias=id-web-1.cc.skyctl" in args
    proxy = shlex.split(next(a for a in args if a.startswith("ProxyCommand=")).split("=", 1)[1])
    assert proxy[-1] == "bastion.example" and "HostKeyAlias=[bastion.example]:2222" in proxy and "%h:%p" in proxy
