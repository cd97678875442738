"""scale, reconcile and burst: groups over time."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

import enum
from typing import Annotated, Any

import typer

from skyctl.cli import complete
from skyctl.cli.options import CostYesOpt, OutputOpt, YesOpt, cost_gate
from skyctl.cli.terminal import OutputFormat, term

burst_app = typer.Typer(help="Bursting rules: see what each rule sees, run one tick, keep watching, or "
                        "simulate a trace.",
                        no_args_is_help=True)


def scale(
    group: Annotated[str, typer.Argument(help="The group to resize.", autocompletion=complete.groups)],
    count: Annotated[int, typer.Argument(min=0, help="How many nodes the group should have.")],
    yes: CostYesOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Grow or shrink a group to COUNT nodes.

    Growing places the new nodes like a launch (local first, then bursting; the expected cost
    per hour of sites that charge is shown, and asked about on a terminal); shrinking removes
    burst nodes first (dearest remote site first, newest first). Context variables come from
    what the launch stored; secret ones again from SKYCTL_VAR_<NAME>.
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.errors import EXIT_PARTIAL
    from skyctl.cli.nodes import forget_in_ssh_config
    from skyctl.ops.groups import scale as do_scale

    t = term()
    with open_sky() as sky:
        result = do_scale(sky, group, count, confirm=cost_gate(yes))
    forget_in_ssh_config([n.name for n in result.deleted])
    t.emit(result.to_json(), output, table=lambda d: None)
    launched = result.launched.created if result.launched else []
    t.info(f"{group}: {result.before} -> {result.before + len(launched) - len(result.deleted)} node(s) "
           f"(target {count}; +{len(launched)} -{len(result.deleted)})")
    if (result.launched and result.launched.missing) or result.errors:
        raise typer.Exit(EXIT_PARTIAL)


def reconcile(
    delete_orphans: Annotated[bool, typer.Option("--delete-orphans", help="Delete nodes of this skyctl whose group "
                                                 "is unknown, and duplicates.")] = False,
    yes: YesOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Make local state agree with what the clouds hold (after a crash or kill -9).

    Adopts nodes an interrupted launch created, closes its open intents, finishes deletions a
    cloud refused or did not answer (nodes reported as still deleting), finishes or undoes an
    interrupted move home (the group ends at its size), forgets records of nodes that are
    gone, and reports orphans (deleted with --delete-orphans).
    """
    from skyctl.cli.runtime import exit_partial, open_sky
    from skyctl.errors import UsageError
    from skyctl.ops.groups import reconcile as do_reconcile

    t = term()
    if delete_orphans and not yes and not t.interactive:
        raise UsageError("--delete-orphans needs --yes when not on a terminal")
    if delete_orphans and not yes and not t.confirm("Delete orphan and duplicate nodes?"):
        raise typer.Exit(1)
    with open_sky() as sky:
        result = do_reconcile(sky, delete_orphans=delete_orphans)
    t.emit(result.to_json(), output, table=lambda d: None)
    t.info(f"adopted {len(result.adopted)}, forgot {len(result.forgotten)}, closed {result.intents_closed} "
           f"intent(s), {len(result.orphans)} orphan(s), {len(result.duplicates)} duplicate(s), "
           f"deleted {len(result.deleted)}")
    for name in result.moves_finished:
        t.info(f"finished the interrupted move home of {name} (its replacement runs; {name} deleted)")
    for name in result.moves_undone:
        t.info(f"undid the interrupted move home of {name} ({name} stays; its replacement was removed)")
    for n in result.orphans:
        t.warn(f"orphan: {n.name} on {n.site} ({n.id}); group {n.group!r} is unknown here")
    exit_partial(result.site_errors)


def _tick_table(data: dict[str, Any]) -> Any:
    rows = []
    for r in data["rules"]:
        reasons = grouped_reasons(r["reasons"]) or ["-"]
        moves = ", ".join(f"{m['node']} {m['from']}->{m['to']}" for m in r["moves"]) or "-"
        rows.append((r["rule"], r["burst_nodes"], moves, reasons[0]))
        rows += [("", "", "", why) for why in reasons[1:]]   # one reason a line, not one giant cell
    table = term().table(["RULE", "BURST NODES", "MOVES", "WHY NOT MORE"], rows)
    if not data.get("demand"):
        return table
    from rich.console import Group

    return Group(table, _demand_table(data["demand"]))


def _demand_table(demand: list[dict[str, Any]]) -> Any:
    rows = []
    for d in demand:
        dec = d["decision"]
        if dec is None:
            rows.append((d["rule"], d["group"], "-", "-", "-", d["error"] or "-"))
            continue
        change = [f"+{n} {s}" for s, n in dec["grow"].items()] + [f"-{n}" for n in dec["shrink"]]
        done = [f"created {len(d['created'])}"] if d["created"] else []
        done += [f"deleted {', '.join(d['deleted'])}"] if d["deleted"] else []
        done += [f"kept {n}: {w}" for n, w in d["kept"].items()] + [f"{s}: {w}" for s, w in d["failed"].items()]
        rows.append((d["rule"], d["group"], f"{dec['pending_cores']} cores pending",
                     f"{dec['target']} (now {dec['current']}: {dec['starting']} starting, {dec['idle']} idle)",
                     ", ".join(change) or "-", "; ".join([*dec["reasons"], *done])))
    return term().table(["DEMAND RULE", "GROUP", "DEMAND", "TARGET", "CHANGE", "WHY"], rows)


def grouped_reasons(reasons: list[str], *, names: int = 3) -> list[str]:
    """'cc-0: home is full', 'cc-1: home is full'... as one 'cc-0, cc-1 (+3 more): home is
    full'; reasons about no node (a step, a cooldown) stay as they are, in order."""
    by_why: dict[str, list[str]] = {}
    for text in reasons:
        who, sep, why = text.partition(": ")
        if not sep or " " in who:
            by_why.setdefault(text, [])
        else:
            by_why.setdefault(why, []).append(who)
    out = []
    for why, who in by_why.items():
        if not who:
            out.append(why)
            continue
        who = sorted(who, key=lambda n: (n.rpartition("-")[0], int(n.rpartition("-")[2]))
                     if n.rpartition("-")[2].isdigit() else (n, -1))
        shown = ", ".join(who[:names]) + (f" (+{len(who) - names} more)" if len(who) > names else "")
        out.append(f"{shown}: {why}")
    return out


@burst_app.command("status")
def burst_status(output: OutputOpt = OutputFormat.table) -> None:
    """What each bursting rule sees now and what it would do: moves home, and for a demand
    rule its command's reading, the target size and why (changes nothing)."""
    from skyctl.cli.runtime import exit_partial, open_sky
    from skyctl.errors import EXIT_ERROR
    from skyctl.ops.burst import status

    with open_sky() as sky:
        result = status(sky)
    term().emit(result.to_json(), output, table=_tick_table)
    for d in result.demand:
        if d.error:
            term().warn(d.error)
    exit_partial(result.site_errors)
    if any(d.error for d in result.demand):
        raise typer.Exit(EXIT_ERROR)


@burst_app.command("run")
def burst_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide, but move nothing.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One bursting tick (for cron and pipelines): move burst load home where rules allow, and
    size demand-driven groups (their demand command runs every time).

    Moves are make-before-break and keep the node's name: the replacement is launched at home
    and running, the remote node is drained (drain_command), and only then deleted; a failed
    move leaves the remote node in place. Exits 3 if a move or a demand rule failed.
    """
    from skyctl.errors import EXIT_PARTIAL

    result = _tick(dry_run)
    term().emit(result.to_json(), output, table=_tick_table)
    _say_outcomes(result)
    if not result.ok:
        raise typer.Exit(EXIT_PARTIAL)


def _tick(dry_run: bool) -> Any:
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.burst import run_tick

    with open_sky() as sky:
        return run_tick(sky, dry_run=dry_run)


def _say_outcomes(result: Any) -> None:
    t = term()
    for o in result.outcomes:
        if o.ok:
            t.info(f"moved {o.move.node} from {o.move.from_site} to {o.move.to_site} (same name)")
        else:
            t.warn(f"could not move {o.move.node} to {o.move.to_site}: {o.error}")
    for d in result.demand:
        if d.error:
            t.warn(d.error)
            continue
        if d.created or d.deleted:
            t.info(f"{d.group}: +{len(d.created)} -{len(d.deleted)} node(s) for demand "
                   f"({d.reading.pending_cores if d.reading else 0} cores pending; target {d.tick.target if d.tick else '?'})")
        for name, why in d.kept.items():
            t.warn(f"kept {name}: {why}")
        for site, why in d.failed.items():
            t.warn(f"{d.group}: new nodes on {site} not made: {why}")


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


@burst_app.command("watch")
def burst_watch(
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="Seconds between ticks.")] = 60.0,
    ticks: Annotated[int, typer.Option("--ticks", min=0, help="Stop after this many ticks (0 = until stopped).")] = 0,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, metavar="PORT",
        help="Serve Prometheus metrics on PORT (/metrics; 0 picks a free port). Needs skyctl[metrics].")] = None,
    metrics_address: Annotated[str, typer.Option(
        "--metrics-address", metavar="ADDR", help="Address the metrics listen on.")] = "127.0.0.1",
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", case_sensitive=False, help="text for people, json: one object per event "
        "(ts, level, event, message, fields).")] = LogFormat.text,
) -> None:
    """Run a bursting tick every --interval seconds, as a service or in a terminal.

    A demand rule's command runs every `demand.every` seconds (the ticks come at least that
    often).

    A site that is down, or a tick that fails, is logged and the next tick comes anyway.
    SIGTERM (systemctl stop) lets the tick in progress finish, then exits 0; Ctrl-C stops
    cleanly between moves. Events go to stderr (--log-format json for a log stack), metrics
    to --metrics-port. See examples/systemd/ for a unit.

    \b
    Examples:
      skyctl burst watch --interval 30
      skyctl burst watch --metrics-port 9464 --log-format json
      curl -s localhost:9464/metrics | grep skyctl_burst_nodes
    """
    from skyctl.cli.service import run_watch

    run_watch(interval=interval, ticks=ticks, metrics_port=metrics_port, metrics_address=metrics_address,
              log_format=log_format.value)
