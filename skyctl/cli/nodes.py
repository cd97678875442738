"""ps, show, delete: the nodes of the whole sky."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated, Any

import typer

from skyctl.cli import complete
from skyctl.cli.options import OutputOpt, YesOpt
from skyctl.cli.terminal import OutputFormat, term

SiteOpt = Annotated[str | None, typer.Option("--site", "-s", autocompletion=complete.sites, help="Only this site.")]


def node_table(nodes: list[dict[str, Any]], *, owners: bool = False) -> Any:
    columns = ["NAME", "GROUP", "SITE", "STATE", "ADDRESSES", "IMAGE", "SIZE", "ID"] + (["OWNER"] if owners else [])
    return term().table(
        columns,
        [(n["name"], n["group"] or "-", n["site"], n["state"] + (f", {n['move']}" if n.get("move") else ""), ",".join(n["addresses"]), n["image"], n["size"],
          n["id"], *([(n.get("labels") or {}).get("owner") or "-"] if owners else [])) for n in nodes])


def ps(
    group: Annotated[str | None, typer.Argument(help="Only this group (as --group).", autocompletion=complete.groups)] = None,
    site: SiteOpt = None,
    group_opt: Annotated[list[str] | None, typer.Option("--group", "-g", metavar="GROUP", autocompletion=complete.groups,
                                                        help="Only these groups (repeatable).")] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", metavar="STATE", help="Only nodes in this state: pending, running, stopped, error, "
        "unknown (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also VMs that skyctl did not create.")] = False,
    all_owners: Annotated[bool, typer.Option("--all-owners", help="Everyone's nodes, with an OWNER column "
                                             "(by default only yours).")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List your nodes on every site at once (the clouds are the source of truth).

    Filters combine: 'skyctl ps --state stopped --site home -g web'. A site that is down or
    refuses credentials is named in a warning, the others still answer, and skyctl exits 3.
    """
    from skyctl.cli.runtime import exit_partial, open_sky, raise_if_failed
    from skyctl.errors import UsageError
    from skyctl.model import NodeState
    from skyctl.ops.inventory import list_nodes, move_roles

    groups = ([group] if group else []) + list(group_opt or [])
    known = {s.value for s in NodeState if s is not NodeState.DELETED}
    bad = [s for s in state or [] if s.lower() not in known]
    if bad:
        raise UsageError(f"--state {bad[0]!r}: expected one of {', '.join(sorted(known))}")
    wanted = {s.lower() for s in state or []}
    with open_sky() as sky:
        listing = list_nodes(sky, group=groups[0] if len(groups) == 1 else None, site=site,
                             include_foreign=all_, all_owners=all_owners)
        raise_if_failed(listing.outcome(1 if site else len(sky.site_names)))
        nodes = [n for n in listing.nodes if (not groups or n.group in groups)
                 and (not wanted or n.state.value in wanted)]
        roles = move_roles(sky, nodes)
    rows = [n.to_json() | ({"move": roles[n.id]} if n.id in roles else {}) for n in nodes]
    term().emit(rows, output,
                table=lambda rows: node_table(rows, owners=all_owners or all_))
    exit_partial(listing.errors)


def show(
    node: Annotated[str, typer.Argument(help="A node name, or the cloud's own id with --site.", autocompletion=complete.nodes)],
    site: SiteOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show one node."""
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.inventory import show_node

    with open_sky() as sky:
        found = show_node(sky, node, site=site)
    data = found.to_json()

    def table(d: dict[str, Any]) -> Any:
        rows = [(k, ", ".join(v) if isinstance(v, list) else
                 ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v)
                for k, v in d.items()]
        return term().table(["FIELD", "VALUE"], rows)

    term().emit(data, output, table=table)


def delete(
    targets: Annotated[list[str] | None, typer.Argument(help="Groups and/or node names.", autocompletion=complete.targets)] = None,
    site: SiteOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Every node of yours (with --site: on that site). "
                                       "Never another owner's, never VMs skyctl did not create.")] = False,
    yes: YesOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Delete groups or nodes on every site they are on; --all deletes all of yours.

    Asks for confirmation on a terminal (naming every node); scripts pass --yes.
    """
    from skyctl.cli.runtime import exit_partial, open_sky
    from skyctl.errors import UsageError
    from skyctl.ops.inventory import delete_nodes, list_nodes, resolve_targets

    from contextlib import ExitStack

    from skyctl.ops.grouplock import group_locks
    from skyctl.ops.request import GROUP_RE

    targets = list(targets or [])
    if all_ and targets:
        raise UsageError("give groups/nodes or --all, not both")
    if not all_ and not targets:
        raise UsageError("name the groups or nodes to delete (or --all for every node of yours)")
    t = term()
    with open_sky() as sky, ExitStack() as held:
        if all_:  # only the caller's own nodes: list_nodes filters by the owner label
            listing = list_nodes(sky, site=site)
            from skyctl.ops.outcome import raise_if_none_answered

            raise_if_none_answered(listing.errors, 1 if site else len(sky.site_names))
            targets = sorted({n.group for n in listing.nodes if n.group}
                             | ({g for g in sky.state.groups()} if site is None else set()))
            targets += sorted({n.name for n in listing.nodes if not n.group})
        # one writer per group (taken in sorted order)
        held.enter_context(group_locks((x for x in targets if GROUP_RE.fullmatch(x)), say=t.info, sky=sky))
        if all_:
            nodes, listing = list(listing.nodes), listing
        else:
            nodes, listing = resolve_targets(sky, targets, site=site)
        # A group is forgotten only when every site answered that its nodes are gone: a site
        # that did not answer (or was not asked, with --site) may still hold some.
        everyone_answered = not listing.errors and site is None
        if not nodes:
            if everyone_answered:
                for g in set(targets) & set(sky.state.groups()):
                    sky.state.delete_group(g)  # an empty group: forget it
            t.info("nothing to delete")
            term().emit([], output, table=lambda _: None)
            exit_partial(listing.errors)
            return
        if not yes:
            if not t.interactive:
                raise UsageError(f"refusing to delete {len(nodes)} node(s) without --yes (not a terminal)")
            if not t.confirm(f"Delete {len(nodes)} node(s): {', '.join(sorted(n.name for n in nodes))}?"):
                raise typer.Exit(1)
        errors = delete_nodes(sky, nodes)
        deleted = [n for n in nodes if n.site not in errors]
        groups = {n.group for n in deleted if n.group in targets}
        remaining = {n.group for n in listing.nodes if n not in deleted}
        if everyone_answered and not errors:
            for g in groups - remaining:
                sky.state.delete_group(g)  # the whole group is gone
    forget_in_ssh_config([n.name for n in deleted])
    t.info(f"deleted {len(deleted)} node(s)")
    term().emit([{"name": n.name, "site": n.site, "id": n.id} for n in deleted], output,
                table=lambda rows: None)
    exit_partial({**listing.errors, **errors}, "answer")


def forget_in_ssh_config(names: list[str]) -> None:
    """Deleted nodes leave the file `skyctl ssh-config --write` keeps, if there is one."""
    from skyctl.ops.access import forget_written

    if names and forget_written(names):
        term().detail(f"removed {len(names)} node(s) from the written ssh config")


def sites(output: OutputOpt = OutputFormat.table) -> None:
    """Each site: driver, tier, cost, whether it answers, and its quota use."""
    from skyctl.cli.runtime import exit_partial, open_sky, raise_if_failed
    from skyctl.ops.inventory import sites_info
    from skyctl.ops.outcome import classify_reads

    with open_sky() as sky:
        rows, errors = sites_info(sky)
        raise_if_failed(classify_reads(errors, len(rows), len(errors) < len(rows)))

    def fmt(lim: dict[str, Any] | None) -> str:
        if not lim:
            return "-"
        return f"{lim['used']}/{'∞' if lim['limit'] is None else lim['limit']}"

    def table(data: list[dict[str, Any]]) -> Any:
        return term().table(
            ["SITE", "DRIVER", "TIER", "COST", "REACHABLE", "INSTANCES", "CORES", "RAM MiB"],
            [(r["name"], r["driver"], r["tier"], r["cost"], "yes" if r["reachable"] else f"no: {r['error']}",
              fmt((r["capacity"] or {}).get("instances")), fmt((r["capacity"] or {}).get("cores")),
              fmt((r["capacity"] or {}).get("ram_mib"))) for r in data])

    term().emit(rows, output, table=table)
    exit_partial(errors)
