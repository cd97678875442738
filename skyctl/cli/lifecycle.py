"""stop, start, reboot, logs: a node's power and what it printed."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated

import typer

from skyctl.cli import complete
from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

TargetsArg = Annotated[list[str], typer.Argument(metavar="GROUP|NODE...", autocompletion=complete.targets, help="Groups and/or node names.")]
SiteOpt = Annotated[str | None, typer.Option("--site", "-s", autocompletion=complete.sites, help="Only nodes on this site.")]
WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Return once every node is in its new state.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", "-t", min=0.1, help="Seconds --wait waits.")]


def _power(action: str, targets: list[str], site: str | None, wait: bool, timeout: float, output: OutputFormat,
           hard: bool = False) -> None:
    from skyctl.cli.runtime import exit_partial, open_sky
    from skyctl.model import NodeState
    from skyctl.ops.inventory import resolve_targets
    from skyctl.ops.lifecycle import ACTIONS, power, wait_state
    from skyctl.ops.outcome import first_error

    t = term()
    with open_sky() as sky:
        nodes, listing = resolve_targets(sky, targets, site=site)
        if not nodes:
            t.info("no nodes")
            term().emit([], output, table=lambda _: None)
            exit_partial(listing.errors)
            return
        outcome = power(sky, nodes, action, hard=hard)
        if not outcome.done:
            raise first_error(outcome.errors.values())
        done = outcome.done
        if wait:
            done = wait_state(sky, done, ACTIONS[action][1], timeout)
        else:  # as the clouds show them now (a stop may still be on its way)
            done = resolve_targets(sky, [n.name for n in done], site=site)[0] or done
    past = {"stop": "stopped", "start": "started", "reboot": "rebooted"}[action]
    t.info(f"{past} {len(outcome.done)} node(s)" + ("" if wait or action == "stop" and all(
        n.state == NodeState.STOPPED for n in done) else " (the clouds are on it; --wait waits)"))
    from skyctl.cli.nodes import node_table

    term().emit([n.to_json() for n in done], output, table=node_table)
    for err in outcome.errors.values():
        t.error(err.line())
    if outcome.errors:   # some sites refused (or cannot): the others acted
        from skyctl.errors import EXIT_PARTIAL

        raise typer.Exit(EXIT_PARTIAL)
    exit_partial(listing.errors)


def stop(targets: TargetsArg, site: SiteOpt = None, wait: WaitOpt = False, timeout: TimeoutOpt = 300.0,
         output: OutputOpt = OutputFormat.table) -> None:
    """Power nodes off, keeping their disks and addresses (Nova os-stop, OpenNebula poweroff).

    A node already stopped is fine; one its cloud cannot stop yet (still building) is named
    with the cloud's own words. A stopped OpenStack node may still count against the quota.
    """
    _power("stop", targets, site, wait, timeout, output)


def start(targets: TargetsArg, site: SiteOpt = None, wait: WaitOpt = False, timeout: TimeoutOpt = 300.0,
          output: OutputOpt = OutputFormat.table) -> None:
    """Power stopped nodes on again (Nova os-start, OpenNebula resume). 'skyctl wait' then
    waits for SSH."""
    _power("start", targets, site, wait, timeout, output)


def reboot(targets: TargetsArg, site: SiteOpt = None,
           hard: Annotated[bool, typer.Option("--hard", help="Power-cycle instead of asking the guest "
                                              "(Nova HARD, OpenNebula reboot-hard); also starts a stopped "
                                              "OpenStack node.")] = False,
           wait: WaitOpt = False, timeout: TimeoutOpt = 300.0, output: OutputOpt = OutputFormat.table) -> None:
    """Restart running nodes (the guest's own reboot; --hard power-cycles)."""
    _power("reboot", targets, site, wait, timeout, output, hard=hard)


def logs(
    node: Annotated[str, typer.Argument(metavar="NODE", autocompletion=complete.nodes, help="A node name (see 'skyctl ps').")],
    site: SiteOpt = None,
    cloud_init: Annotated[bool, typer.Option("--cloud-init", help="The guest's /var/log/cloud-init-output.log "
                                             "over SSH instead of the console.")] = False,
    lines: Annotated[int | None, typer.Option("--lines", "-n", min=0, help="Only the last N lines.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-l", help="Login user for --cloud-init.")] = None,
    identity: Annotated[str | None, typer.Option("--identity", metavar="KEY",
                                                 help="Private key for --cloud-init.")] = None,
) -> None:
    """Print a node's console log as its cloud keeps it (OpenStack: the serial console,
    os-getConsoleOutput), or with --cloud-init the guest's cloud-init output over SSH.

    OpenNebula serves no console log over its API (its console is VNC/SPICE in Sunstone):
    use --cloud-init there.
    """
    import sys

    from skyctl.cli.runtime import open_sky
    from skyctl.ops.inventory import show_node
    from skyctl.ops.lifecycle import CLOUD_INIT_LOG, ONE_CONTEXT_LOG, console_log

    with open_sky() as sky:
        found = show_node(sky, node, site=site)
        if cloud_init:
            from skyctl.cli.ssh import _options
            from skyctl.ssh.transfer import read_text

            opts = _options(sky, identity=identity, user=user, accept_new=False)
            from skyctl.errors import NotFound

            try:
                text = read_text(found, sky.federation.sites[found.site], CLOUD_INIT_LOG, opts)
            except NotFound as e:
                # OpenNebula images without cloud-init are set up by one-context, which logs here.
                if found.driver != "opennebula":
                    e.hint = "the image may not run cloud-init"
                    raise
                term().info(f"{found.name} has no {CLOUD_INIT_LOG}; showing {ONE_CONTEXT_LOG}")
                text = read_text(found, sky.federation.sites[found.site], ONE_CONTEXT_LOG, opts)
            if lines is not None:
                text = "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
        else:
            text = console_log(sky, found, lines=lines)
    from skyctl.cli.terminal import printable

    text = text.replace("\r\n", "\n")
    sys.stdout.write(printable(text, lines=True).replace("\\x09", "\t"))
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
