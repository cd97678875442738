"""Where and as whom to log in to a node: Target, jump hosts, and the system ssh's argv.

Pure: no sockets, no paramiko.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skyctl.errors import ConfigError, Unreachable
from skyctl.model import L_USER, Node
from skyctl.ssh.hostkeys import host_key_alias

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.site import SiteConfig

DEFAULT_USER = "cloud-user"


@dataclass(frozen=True)
class Jump:
    user: str | None
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.port}" if self.port != 22 else f"{user}{host}"

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_jump(spec: str, *, path: str = "ssh.jump_host") -> Jump:
    """'user@host[:port]' (IPv6 as [addr]:port) -> Jump."""
    user, _, hostport = spec.strip().rpartition("@")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?", hostport)
    if not m or (user and not re.fullmatch(r"[A-Za-z0-9._-]+", user)):
        raise ConfigError(f"not a jump host: {spec!r} (expected user@host[:port])", path=path)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 22)
    if not 0 < port < 65536:
        raise ConfigError(f"port out of range in {spec!r}", path=path)
    return Jump(user or None, host, port)


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in to one node."""

    node: Node
    host: str
    port: int
    user: str
    jump: Jump | None = None

    @property
    def alias(self) -> str:
        return host_key_alias(self.node)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        via = f" via {self.jump}" if self.jump else ""
        return f"{self.node.name} ({self.user}@{host}:{self.port}{via})"


def target_for(node: Node, site: SiteConfig, *, user: str | None = None) -> Target:
    if not node.addresses:
        raise Unreachable(f"{node.name} has no address yet", site=node.site)
    ssh = site.ssh
    jump = parse_jump(ssh.jump_host, path=f"sites.{site.name}.ssh.jump_host") if ssh.jump_host else None
    # The user the node's own context created beats the site's generic one.
    login = user or node.labels.get(L_USER) or ssh.user or DEFAULT_USER
    return Target(node, node.addresses[0], ssh.port, login, jump)


def ssh_command(target: Target, key_path: Path, known_hosts: Path, command: Sequence[str] = (), *,
                extra: Sequence[str] = ()) -> list[str]:
    """argv for the system ssh, pinned to skyctl's known-hosts entry for this node. `extra`
    (forwards, the user's -o options) comes after skyctl's own options: OpenSSH takes the
    first value of an option, so the key, known-hosts file and host key checking stay skyctl's."""
    argv = ["ssh", "-i", str(key_path), "-p", str(target.port),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={target.alias}",
            "-o", "CheckHostIP=no",
            "-l", target.user]
    if target.jump:
        argv += ["-J", str(target.jump)]
    argv += list(extra)
    argv.append(target.host)
    if command:
        argv += ["--", *command]
    return argv


def remote_command(args: Sequence[str]) -> str:
    """The command line for the node's shell from the words after `--`: one word is a shell
    command line as it is (`ssh host 'cmd | grep x'`); several words keep their argv, each
    quoted for the shell (`docker exec`), so `-- touch 'my file'` touches one file."""
    import shlex

    if len(args) == 1:
        return args[0]
    return shlex.join(args)


def split_location(arg: str) -> tuple[str | None, str]:
    """'NAME:PATH' -> (NAME, PATH); a local path (no colon before the first slash) -> (None, arg)."""
    head, sep, tail = arg.partition(":")
    if sep and head and "/" not in head and not head.startswith("."):
        return head, tail
    return None, arg
