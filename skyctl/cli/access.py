"""ssh-config and inventory: the nodes for OpenSSH (ssh, scp, rsync, VS Code) and Ansible."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated, Any

import typer

from skyctl.cli.terminal import OutputFormat, term

TargetsArg = Annotated[list[str] | None, typer.Argument(
    metavar="GROUP|NODE", help="Groups and/or node names (default: every node).")]
PinOpt = Annotated[bool, typer.Option(
    "--pin/--no-pin", help="Log in once to nodes whose host key skyctl has not pinned yet, to pin it "
    "(--no-pin leaves them out, with a warning).")]
IdentityOpt = Annotated[str | None, typer.Option(
    "--identity", "-i", metavar="KEY", help="Private key to log in with (default: the key contexts deliver).")]
UserOpt = Annotated[str | None, typer.Option("--user", "-l", help="Login user (default: the node's own, "
                                                                   "then the site's ssh.user).")]


def register(app: typer.Typer) -> None:
    app.command("ssh-config")(ssh_config)
    app.command("inventory")(inventory)


def _gather(targets: list[str], *, pin: bool, identity: str | None, user: str | None) -> Any:
    from pathlib import Path

    from skyctl.cli.runtime import open_sky, raise_if_failed
    from skyctl.keys import default_ssh_key
    from skyctl.ops.access import gather_access
    from skyctl.ops.outcome import classify_reads
    from skyctl.ops.ready import console_reader
    from skyctl.ssh.hostkeys import KnownHosts

    key: Any = Path(identity).expanduser() if identity else default_ssh_key()
    with open_sky() as sky:
        access = gather_access(sky, targets, key=key, known_hosts=KnownHosts(), pin=pin, user=user,
                               console=console_reader(sky))
        if access.site_errors:
            raise_if_failed(classify_reads(access.site_errors, len(sky.site_names),
                                           bool(access.entries or access.skipped)))
    t = term()
    for why in access.skipped.values():
        t.warn(f"left out: {why}")
    return access


def _finish(access: Any) -> None:
    from skyctl.cli.runtime import exit_partial

    exit_partial(access.site_errors)


def ssh_config(
    targets: TargetsArg = None,
    prefix: Annotated[str, typer.Option("--prefix", metavar="TEXT",
                                        help="Put TEXT before every Host name (e.g. 'sky-').")] = "",
    write: Annotated[bool, typer.Option("--write", help="Keep the blocks in skyctl's own file (config dir, "
                                        "0600) instead of printing them; 'skyctl delete' removes gone "
                                        "nodes from it.")] = False,
    pin: PinOpt = True,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    output: Annotated[OutputFormat, typer.Option(
        "-o", "--output", case_sensitive=False,
        help="table: OpenSSH config text; json or yaml: the entries as data.")] = OutputFormat.table,
) -> None:
    """Print OpenSSH Host blocks for nodes: plain ssh, scp, rsync and VS Code reach them by name.

    Each block names the node's address, user, port, key, jump host (ProxyJump), and skyctl's
    known-hosts file with the key pinned for that node (HostKeyAlias, StrictHostKeyChecking
    yes): the host key is still checked. Nodes never logged in to are met once to pin their
    key (see --no-pin). With --write the blocks go to a file under skyctl's config directory,
    which one Include line in ~/.ssh/config brings in.

    \b
    Examples:
      skyctl ssh-config demo > demo.ssh && ssh -F demo.ssh demo-0
      skyctl ssh-config --write        # then, once, in ~/.ssh/config:
                                       #   Include ~/.config/skyctl/ssh_config
      rsync -a -e 'ssh -F demo.ssh' data/ demo-1:data/
    """
    from skyctl.ops.access import ssh_config_blocks, update_written

    names = list(targets or [])
    access = _gather(names, pin=pin, identity=identity, user=user)
    t = term()
    if write:
        path = update_written(access, everything=not names, prefix=prefix)
        t.info(f"wrote {len(access.entries)} host(s) to {path}; add 'Include {path}' to ~/.ssh/config")
    if output is not OutputFormat.table:
        t.emit([e.to_json() for e in access.entries], output)
    elif not write:
        from skyctl.ops.access import render_ssh_config

        text = render_ssh_config(ssh_config_blocks(access.entries, prefix=prefix))
        t.emit(access.entries, output, table=lambda _: text or None)
    _finish(access)


def inventory(
    list_: Annotated[bool, typer.Option("--list", help="Every group and host (Ansible's inventory protocol).")]
    = False,
    host: Annotated[str | None, typer.Option("--host", metavar="NODE", help="One host's variables.")] = None,
    pin: PinOpt = True,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    output: Annotated[OutputFormat, typer.Option(
        "-o", "--output", case_sensitive=False, help="json (what Ansible reads) or yaml.")] = OutputFormat.json,
) -> None:
    """Ansible dynamic inventory: groups per skyctl group and per site (site_NAME).

    Every host carries ansible_host, ansible_user, ansible_port, its private key and
    ansible_ssh_common_args with skyctl's known-hosts file and StrictHostKeyChecking=yes, so
    Ansible checks the host keys skyctl pinned. Ansible runs an inventory script with --list:
    point it at a two-line wrapper. A site that does not answer is a warning (its hosts are
    left out), not exit 3: Ansible would drop the whole inventory.

    \b
    Examples:
      printf '#!/bin/sh\\nexec skyctl inventory "$@"\\n' > sky.sh && chmod +x sky.sh
      ansible-inventory -i sky.sh --graph
      ansible demo -i sky.sh -m ping
      skyctl inventory --host demo-0
    """
    from skyctl.errors import NotFound, UsageError
    from skyctl.ops.access import ansible_inventory, hostvars

    if list_ == (host is not None):
        raise UsageError("give exactly one of --list or --host NODE")
    if output is OutputFormat.table:
        output = OutputFormat.json
    t = term()
    if host is not None:
        access = _gather([host], pin=pin, identity=identity, user=user)
        entry = next((e for e in access.entries if e.node == host), None)
        if entry is None:
            raise NotFound(f"{host!r} is not a node that can be reached now"
                           + (f": {access.skipped[host]}" if host in access.skipped else ""))
        t.emit(hostvars(entry), output)
    else:
        access = _gather([], pin=pin, identity=identity, user=user)
        t.emit(ansible_inventory(access.entries), output)
    # Ansible drops the whole inventory when the script exits non-zero: a site that did not
    # answer is a warning here (its hosts are missing), not exit 3 as elsewhere.
    for site, err in access.site_errors.items():
        t.warn(f"site {site} did not answer; its nodes are not in the inventory: {err.line()}")
