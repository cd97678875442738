"""Reaching nodes with the tools people already use: what OpenSSH Host blocks and Ansible's
dynamic inventory hold for each node (address, user, port, key, jump host, pinned host key),
and the ssh config file that `ssh-config --write` keeps current under skyctl's config dir.

The host keys stay in skyctl's own known-hosts file, under each node's alias (see
skyctl.ssh.hostkeys): every entry names that file and the alias (OpenSSH's HostKeyAlias), so
the system ssh checks the very key skyctl pinned, never one keyed by a reused address.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyctl.errors import DriverError, SkyError
from skyctl.keys import KeySource, split_key
from skyctl.model import Node, NodeState
from skyctl.ops.inventory import list_nodes, prepare_access, resolve_targets
from skyctl.ops.sky import Sky
from skyctl.ssh.hostkeys import KnownHosts, host_key_alias
from skyctl.ssh.target import target_for

SSH_CONFIG_NAME = "ssh_config"
_BLOCK_MARK = "# skyctl node "  # the comment that opens each node's block in the written file


@dataclass(frozen=True)
class JumpHost:
    """A site's jump host, as its own Host block (so it never borrows the user's settings)."""

    alias: str
    host: str
    port: int
    user: str | None
    host_key_alias: str  # the name skyctl pinned its key under: host, or [host]:port

    def to_json(self) -> dict[str, Any]:
        return {"alias": self.alias, "host": self.host, "port": self.port, "user": self.user,
                "host_key_alias": self.host_key_alias}


@dataclass(frozen=True)
class HostEntry:
    """How the system ssh reaches one node with its host key checked."""

    node: str
    group: str | None
    site: str
    node_id: str
    hostname: str
    port: int
    user: str
    identity_file: str
    host_key_alias: str
    known_hosts: str
    jump: JumpHost | None = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "group": self.group, "site": self.site, "id": self.node_id,
                "hostname": self.hostname, "port": self.port, "user": self.user,
                "identity_file": self.identity_file, "host_key_alias": self.host_key_alias,
                "known_hosts": self.known_hosts, "jump": self.jump.to_json() if self.jump else None}


@dataclass
class Access:
    entries: list[HostEntry]
    skipped: dict[str, str] = field(default_factory=dict)          # node -> why it is left out
    site_errors: dict[str, DriverError] = field(default_factory=dict)


def jump_alias(site: str, prefix: str = "") -> str:
    return f"{prefix}skyctl-jump-{site}"


def gather_access(sky: Sky, targets: Iterable[str] = (), *, key: KeySource, known_hosts: KnownHosts,
                  pin: bool = True, user: str | None = None, parallel: int = 16,
                  console: Any = None) -> Access:
    """Entries for the nodes named (groups or nodes; all of them when none is named).

    A node skyctl never logged in to has no pinned host key yet. With `pin`, skyctl meets it
    once now, as `skyctl wait` does (console fingerprints where the cloud prints them, else
    first use), so the entry is checked from the first `ssh`; without, it is left out.
    Stopped nodes, nodes without an address and nodes that cannot be reached are left out,
    each with the reason.
    """
    names = list(targets)
    if names:
        nodes, listing = resolve_targets(sky, names)
    else:
        listing = list_nodes(sky)
        nodes = listing.nodes
    skipped: dict[str, str] = {}
    live: list[Node] = []
    for n in nodes:
        if n.state not in (NodeState.RUNNING, NodeState.UNKNOWN):
            skipped[n.name] = f"{n.name} is {n.state.value}"
        elif not n.addresses:
            skipped[n.name] = f"{n.name} has no address yet"
        else:
            live.append(n)
    unpinned = [n for n in live if not known_hosts.known(host_key_alias(n))]
    if unpinned and not pin:
        for n in unpinned:
            skipped[n.name] = f"{n.name}: no pinned host key yet (never logged in to; run 'skyctl wait {n.name}')"
    elif unpinned:
        met = _pin(sky, unpinned, key=key, known_hosts=known_hosts, user=user, parallel=parallel,
                   console=console, skipped=skipped)
        live = [met.get(n.id, n) for n in live]
    entries = [host_entry(n, sky.federation.sites[n.site], key=key, known_hosts=known_hosts, user=user)
               for n in live if n.name not in skipped]
    return Access(entries, skipped, dict(listing.errors))


def _pin(sky: Sky, nodes: list[Node], *, key: KeySource, known_hosts: KnownHosts, user: str | None,
         parallel: int, console: Any, skipped: dict[str, str]) -> dict[str, Node]:
    """Log in to each node once (recording its host key); returns the nodes as reached."""
    from skyctl.ssh.session import SshOptions

    try:
        prepared = prepare_access(sky, nodes)  # floating IPs where a site asks for them
    except DriverError as e:
        for n in nodes:
            skipped[n.name] = f"{n.name}: {e.line()}"
        return {}
    opts = SshOptions(key=key, known_hosts=known_hosts, console=console, user=user)

    def meet(node: Node) -> str | None:
        try:
            opts.open(node, sky.federation.sites[node.site]).close()
        except SkyError as e:
            return e.line()
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(prepared)))) as pool:
        for node, error in zip(prepared, pool.map(meet, prepared)):
            if error is not None:
                skipped[node.name] = error
    return {n.id: n for n in prepared}


def host_entry(node: Node, site: Any, *, key: KeySource, known_hosts: KnownHosts, user: str | None = None,
               prefix: str = "") -> HostEntry:
    target = target_for(node, site, user=user)
    key_path, _ = split_key(key)
    jump = None
    if target.jump:
        j = target.jump
        jump = JumpHost(jump_alias(node.site, prefix), j.host, j.port, j.user, j.known_hosts_name)
    return HostEntry(node.name, node.group, node.site, node.id, target.host, target.port, target.user,
                     str(key_path), target.alias, str(known_hosts.path), jump)


# ---------------------------------------------------------------- OpenSSH


def _quote(path: str) -> str:
    """A path as ssh_config reads it: % doubled (it expands %-tokens in paths), double quotes
    around one with spaces."""
    path = path.replace("%", "%%")
    return f'"{path}"' if re.search(r'[\s"]', path) else path


def _host_options(hostname: str, port: int, user: str | None, identity: str, known_hosts: str,
                  alias: str) -> list[str]:
    lines = [f"HostName {hostname}", f"Port {port}"]
    if user:
        lines.append(f"User {user}")
    return lines + [
        f"IdentityFile {_quote(identity)}",
        "IdentitiesOnly yes",
        f"UserKnownHostsFile {_quote(known_hosts)}",
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        f"HostKeyAlias {alias}",
        "CheckHostIP no",
    ]


def ssh_config_blocks(entries: Iterable[HostEntry], *, prefix: str = "") -> dict[str, str]:
    """node name -> its Host block; a jump host's block is under '@' + its alias."""
    blocks: dict[str, str] = {}
    for e in entries:
        if e.jump:
            j = e.jump
            alias = jump_alias(e.site, prefix)
            blocks.setdefault("@" + alias, "\n".join(
                [f"{_BLOCK_MARK}{alias} jump host of site {e.site}", f"Host {alias}"]
                + [f"  {line}" for line in _host_options(j.host, j.port, j.user, e.identity_file, e.known_hosts,
                                                         j.host_key_alias)]) + "\n")
        lines = [f"{_BLOCK_MARK}{e.node} site {e.site} id {e.node_id}", f"Host {prefix}{e.node}"]
        lines += [f"  {line}" for line in _host_options(e.hostname, e.port, e.user, e.identity_file,
                                                        e.known_hosts, e.host_key_alias)]
        if e.jump:
            lines.append(f"  ProxyJump {jump_alias(e.site, prefix)}")
        blocks[e.node] = "\n".join(lines) + "\n"
    return blocks


_HEADER = ("# Written by skyctl ssh-config --write; `skyctl delete` removes gone nodes, and\n"
           "# `skyctl ssh-config --write` refreshes it. Use it from ~/.ssh/config with:\n"
           "#   Include {path}\n\n")


def render_ssh_config(blocks: dict[str, str]) -> str:
    jumps = [b for k, b in blocks.items() if k.startswith("@")]
    nodes = [b for k, b in blocks.items() if not k.startswith("@")]
    return "\n".join(jumps + nodes)


def written_path() -> Path:
    from skyctl.paths import config_dir

    return config_dir() / SSH_CONFIG_NAME


def read_written(path: Path) -> dict[str, str]:
    """The blocks of a file skyctl wrote, by node name (jump hosts under '@' + alias)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    blocks: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(_BLOCK_MARK):
            name = line[len(_BLOCK_MARK):].split()[0]
            current = ("@" + name) if " jump host of site " in line else name
            blocks[current] = ""
        if current is not None and line.strip():
            blocks[current] += line
    return blocks


def write_ssh_config(path: Path, blocks: dict[str, str]) -> Path:
    """Write the file (0600 from its first byte); jump hosts no node uses any more go."""
    from skyctl.paths import write_private

    used = {line.split()[1] for b in blocks.values() for line in b.splitlines()
            if line.strip().startswith("ProxyJump ")}
    kept = {k: b for k, b in blocks.items() if not k.startswith("@") or k[1:] in used}
    write_private(path, _HEADER.format(path=path) + render_ssh_config(kept))
    return path


def update_written(access: Access, *, everything: bool, prefix: str = "", path: Path | None = None) -> Path:
    """Put these nodes' blocks in the written file, replacing theirs. With `everything` (no
    names given), nodes that are no longer in the sky go too, except those of sites that did
    not answer: their blocks stay until the site can say."""
    path = path or written_path()
    blocks = read_written(path)
    if everything:
        present = {e.node for e in access.entries} | set(access.skipped)
        for name, block in list(blocks.items()):
            site = _block_site(block)
            if not name.startswith("@") and name not in present and site not in access.site_errors:
                del blocks[name]
    blocks.update(ssh_config_blocks(access.entries, prefix=prefix))
    return write_ssh_config(path, blocks)


def _block_site(block: str) -> str | None:
    m = re.match(re.escape(_BLOCK_MARK) + r"\S+ site (\S+)", block)
    return m.group(1) if m else None


def forget_written(names: Iterable[str], path: Path | None = None) -> bool:
    """Remove deleted nodes from the written file, if there is one. True when it changed."""
    path = path or written_path()
    if not path.exists():
        return False
    blocks = read_written(path)
    gone = [n for n in names if n in blocks]
    if not gone:
        return False
    for n in gone:
        del blocks[n]
    write_ssh_config(path, blocks)
    return True


# ---------------------------------------------------------------- Ansible


def ssh_common_args(e: HostEntry) -> str:
    """What ansible's ssh connection adds to every ssh it runs for this host."""
    args = ["-o", f"UserKnownHostsFile={e.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={e.host_key_alias}",
            "-o", "CheckHostIP=no", "-o", "IdentitiesOnly=yes"]
    if e.jump:
        # -o options do not reach a ProxyJump's own ssh: spell the jump out, checked the same way.
        j = e.jump
        inner = ["ssh", "-i", e.identity_file, "-p", str(j.port), "-o", "IdentitiesOnly=yes",
                 "-o", f"UserKnownHostsFile={e.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                 "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={j.host_key_alias}",
                 "-W", "%h:%p"] + (["-l", j.user] if j.user else []) + [j.host]
        args += ["-o", f"ProxyCommand={shlex.join(inner)}"]
    return shlex.join(args)


def hostvars(e: HostEntry) -> dict[str, Any]:
    return {"ansible_host": e.hostname, "ansible_port": e.port, "ansible_user": e.user,
            "ansible_ssh_private_key_file": e.identity_file, "ansible_ssh_common_args": ssh_common_args(e),
            "skyctl_site": e.site, "skyctl_group": e.group, "skyctl_id": e.node_id}


def site_group(site: str) -> str:
    return f"site_{site.replace('-', '_')}"


def ansible_inventory(entries: Iterable[HostEntry]) -> dict[str, Any]:
    """Ansible's dynamic-inventory --list answer: one group per skyctl group and per site
    (site_<name>), every host's variables in _meta.hostvars."""
    out: dict[str, Any] = {"_meta": {"hostvars": {}}}
    groups: dict[str, list[str]] = {}
    for e in entries:
        out["_meta"]["hostvars"][e.node] = hostvars(e)
        if e.group:
            groups.setdefault(e.group, []).append(e.node)
        groups.setdefault(site_group(e.site), []).append(e.node)
    for name in sorted(groups):
        out[name] = {"hosts": groups[name]}
    out["all"] = {"children": sorted(groups)}
    return out
