"""launch and plan: put a group of contextualised nodes wherever the sky has room."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated, Any

import typer

from skyctl.cli import complete
from skyctl.cli.options import CostYesOpt, OutputOpt, VarFileOpt, VarOpt, cost_gate, parse_vars
from skyctl.cli.terminal import OutputFormat, term

GroupArg = Annotated[str, typer.Argument(autocompletion=complete.groups, help="Group name (lowercase letters, digits, '-'); nodes are GROUP-0, GROUP-1...")]
CountOpt = Annotated[int, typer.Option("--count", "-n", min=1, max=10000, help="How many nodes the group should "
                                        "have: only the missing ones are created, so a re-run creates nothing "
                                        "(with --add: how many to add).")]
AddOpt = Annotated[bool, typer.Option("--add", help="Add --count nodes to the group, whatever it has already.")]
MinCountOpt = Annotated[int | None, typer.Option("--min-count", min=1, metavar="M", help="All or nothing below M "
                                                 "(same units as --count): if fewer could be created, what this "
                                                 "launch created is deleted and it exits 4.")]
ImageOpt = Annotated[str | None, typer.Option("--image", autocompletion=complete.images, help="Logical image from the federation file "
                                              "(or a site's own image name/id with --site). Default: defaults.image.")]
# `-i` is --identity in ssh and ssh-config (as in OpenSSH); here it was --image. Still taken,
# hidden, with a warning, so scripts written against it keep working.
OldImageOpt = Annotated[str | None, typer.Option("-i", hidden=True, help="Old short form of --image.")]
SizeOpt = Annotated[str | None, typer.Option("--size", autocompletion=complete.sizes, help="Logical size from the federation file (or a site's own "
                                             "flavor name/id with --site). Default: defaults.size.")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", min=1, help="vCPUs per node (instead of --size).")]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Memory per node, e.g. 4GiB (with --cpus; default "
                                               "2GiB per vCPU).")]
SiteOpt = Annotated[str | None, typer.Option("--site", "-s", autocompletion=complete.sites, help="Only this site (no bursting).")]
ContextOpt = Annotated[list[str] | None, typer.Option("--context", metavar="PROFILE", autocompletion=complete.profiles, help="Context profile, "
                                                      "repeatable, merged in order. Default: defaults.contexts.")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every node is ready: running, "
                                        "SSH login works with the delivered key, context finished. On a terminal "
                                        "each stage (creating, booting, ssh, context) shows with its own timer; -v "
                                        "prints each node's changes of stage.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan with its reasons; create nothing.")]
AtOpt = Annotated[str | None, typer.Option("--at", metavar="TIME", help="Read prices and carbon at this time "
                                           "(ISO 8601, e.g. 2026-01-05T02:00Z; no zone = UTC). Default: now.")]
DurationOpt = Annotated[str | None, typer.Option("--duration", metavar="DURATION", help="How long the nodes are "
                                                 "expected to run, e.g. 2h (default: the rule's expected_duration, "
                                                 "else 1h).")]


def _plan_table(p: dict[str, Any]) -> Any:
    title = f"plan for {p['group']}: {p['placed']} of {p['requested']} placed"
    if p.get("existing"):
        title += f" (it has {len(p['existing'])} already)"
    if p["unplaced"]:
        title += f"; {p['unplaced']} unplaced ({p['unplaced_reason']})"
    return term().table(["SITE", "NODES", "IMAGE", "FLAVOR", "KWH", "COST", "GCO2", "SCALED COST/CO2/ROOM", "WHY"],
                        [(d["site"], d["count"], d["image"] or "-", d["flavor"] or "-", _num(d.get("kwh")),
                          _num(d.get("cost")), _num(d.get("gco2")), _scaled(d.get("scaled")),
                          "; ".join(r["text"] for r in d["reasons"])) for d in p["sites"]], title=title)


def _scaled(terms: Any) -> str:
    """Each term between the best (0) and the worst (1) candidate of the site's tier."""
    if not terms:
        return "-"
    return f"{terms['cost']:.2f}/{terms['carbon']:.2f}/{terms['free_room']:.2f}"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _image(image: str | None, old: str | None) -> str | None:
    """--image, or the old `-i` (said once on stderr: -i is --identity in ssh)."""
    if old is None:
        return image
    from skyctl.errors import UsageError

    if image is not None and image != old:
        raise UsageError(f"-i {old!r} and --image {image!r} disagree: give --image only")
    term().warn("-i for --image is going away (in 'skyctl ssh', -i is --identity, as in OpenSSH): use --image")
    return old


def parse_at(text: str | None) -> float | None:
    """--at TIME (ISO 8601; no zone means UTC) -> epoch seconds."""
    if text is None:
        return None
    from datetime import datetime, timezone

    from skyctl.errors import UsageError

    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text!r}: expected an ISO 8601 time such as 2026-01-05T02:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def parse_duration_opt(text: str | None, option: str = "--duration") -> float | None:
    if text is None:
        return None
    from skyctl.errors import UsageError
    from skyctl.policy.rules import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{option} {text!r}: {e}") from None
    if seconds <= 0:
        raise UsageError(f"{option} {text!r}: must be longer than 0s")
    return seconds


def launch(
    group: GroupArg,
    count: CountOpt = 1,
    image: ImageOpt = None,
    old_image: OldImageOpt = None,
    size: SizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    site: SiteOpt = None,
    context: ContextOpt = None,
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    add: AddOpt = False,
    min_count: MinCountOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = False,
    yes: CostYesOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Launch a group of contextualised nodes across the federation.

    --count N makes the group N nodes: a re-run creates only what is missing (--add adds N
    more). The group stays within its bursting rule's groups.NAME.min/max. Local sites fill
    first (up to the bursting rule's threshold), then remote sites in rank order. A site that
    runs out of quota or hosts mid-launch is marked full and the rest fail over to the next
    site. Exits 3 when only part of the group could be created, 4 when no site had room (or
    fewer than --min-count).

    Before nodes go to a site that costs money (its price or cost per core-hour), the expected
    cost per hour is printed; on a terminal skyctl asks first (--yes does not). Piped or in a
    pipeline it never asks and goes ahead.

    \b
    Examples:
      skyctl launch web --count 3 --image alma9 --size small --wait
      SKYCTL_VAR_pool_token=... skyctl launch job --count 40 --cpus 2 --memory 4GiB \\
          --context base --context htcondor-worker --var central_manager=cm.example
      skyctl launch one --image cirros --size m1.tiny --site home
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.errors import UsageError
    from skyctl.ops import request as rq

    image = _image(image, old_image)
    with open_sky() as sky:
        fed = sky.federation
        req = rq.resolve(fed, group, count, image=image, size=size, cpus=cpus, memory=memory, site=site)
        profiles = list(context) if context is not None else list(fed.defaults.contexts)
        variables = parse_vars(var)
        ctx = rq.build_group_context(profiles, variables, var_file or [], clouds=rq.clouds_for(fed, req),
                                     reporter=sky.reporter)
        if min_count is not None and min_count > count:
            raise UsageError(f"--min-count {min_count} is more than --count {count}")
        if dry_run:
            _plan_group(sky, req, add=add, output=output)
            return

        from skyctl.ops.launch import launch as do_launch

        spec = rq.group_spec_for(req, profiles, variables, ctx.secret_variables)
        result = do_launch(sky, req, context_for=ctx.context_for, group_spec=spec, wait_ready=wait,
                           size_to=not add, min_count=min_count or 0, confirm=cost_gate(yes))
    _report(result, output, asked=count, add=add)


def plan(
    group: GroupArg,
    count: CountOpt = 1,
    image: ImageOpt = None,
    old_image: OldImageOpt = None,
    size: SizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    site: SiteOpt = None,
    add: AddOpt = False,
    at: AtOpt = None,
    duration: DurationOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show where a launch would place its nodes, and why each site was chosen or passed over.

    Creates nothing (same as 'skyctl launch ... --dry-run'): like a launch, it places only the
    nodes the group lacks to reach --count (with --add, --count more). Each candidate shows the
    kWh, cost and gCO2 of the whole request there over the expected duration; --at fixes the
    clock so a plan can be reproduced.
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.request import resolve

    when, seconds = parse_at(at), parse_duration_opt(duration)
    image = _image(image, old_image)
    with open_sky() as sky:
        req = resolve(sky.federation, group, count, image=image, size=size, cpus=cpus, memory=memory, site=site)
        _plan_group(sky, req, add=add, output=output, at=when, duration_s=seconds)


def _plan_group(sky: Any, req: Any, *, add: bool, output: OutputFormat, at: float | None = None,
                duration_s: float | None = None) -> None:
    """The plan for what a launch would create now: the group's missing nodes (or --add more)."""
    from dataclasses import replace

    from skyctl.ops import sizing
    from skyctl.ops.launch import plan_launch

    size = sizing.group_size(sky, req.group)
    want = sizing.to_create(sky, req.group, req.count, add=add, has=size.count)
    if want == 0:
        data = {"group": req.group, "requested": 0, "placed": 0, "unplaced": 0, "unplaced_reason": None,
                "existing": size.names, "sites": []}
        term().emit(data, output, table=lambda d: None)
        term().info(f"{req.group} has {size.count} node(s) already (--count {req.count}): a launch creates "
                    "nothing (--add to add more)")
        return
    _show_plan(plan_launch(sky, replace(req, count=want), at=at, duration_s=duration_s), output,
               existing=size.names)


def _show_plan(plan: Any, output: OutputFormat, *, existing: list[str] | None = None) -> None:
    """Print the plan (launch --dry-run and plan alike); exit 4 if nothing fits, 3 if part does."""
    from skyctl.errors import EXIT_NO_CAPACITY, EXIT_PARTIAL

    term().emit({**plan.to_json(), "existing": list(existing or [])}, output, table=_plan_table)
    if plan.placed == 0:
        term().warn(f"cannot place {plan.request.group}: {plan.unplaced_reason}")
        raise typer.Exit(EXIT_NO_CAPACITY)
    if plan.unplaced:
        term().warn(f"{plan.unplaced} of {plan.request.count} node(s) cannot be placed: {plan.unplaced_reason}")
        raise typer.Exit(EXIT_PARTIAL)


def _report(result: Any, output: OutputFormat, *, asked: int, add: bool) -> None:
    from skyctl.cli.nodes import node_table
    from skyctl.cli.runtime import raise_if_failed
    from skyctl.errors import EXIT_PARTIAL, NoCapacity

    t = term()
    if result.requested == 0 and not result.created:
        t.emit(result.to_json(), output, table=lambda d: None)
        if result.unplaced_reason:  # named nodes beyond the group's maximum
            raise NoCapacity(f"no node of {result.group} could be created ({result.unplaced_reason})")
        t.info(f"{result.group} has {len(result.existing)} node(s) already (--count {asked}); nothing to create "
               "(--add to add more, 'skyctl scale' to shrink)")
        return
    if not result.created:
        raise_if_failed(result.outcome())  # every site refused the credentials: exit 5
        why = "; ".join(f"{s}: {w}" for s, w in result.full_sites.items()) or result.unplaced_reason or "no room"
        if output is not OutputFormat.table:
            t.emit(result.to_json(), output)
        raise NoCapacity(f"no node of {result.group} could be created ({why})")
    t.emit(result.to_json(), output, table=lambda d: node_table(d["nodes"]))
    sites = sorted({n.site for n in result.created})
    had = f"; it had {len(result.existing)}" if result.existing else ""
    t.info(f"launched {len(result.created)} of {result.requested} node(s) of {result.group} "
           f"on {', '.join(sites)} (launch {result.launch_id}{had})")
    for site, why in result.full_sites.items():
        t.info(f"{site} stopped taking nodes: {why}")
    if result.missing:
        why = result.unplaced_reason or "sites ran out of room"
        t.warn(f"{result.missing} node(s) could not be created: {why}")
        raise typer.Exit(EXIT_PARTIAL)
