"""launch and plan: put a group of contextualised nodes wherever the sky has room."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

import re
from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt, VarFileOpt, VarOpt, parse_vars
from skyctl.cli.terminal import OutputFormat, term

GROUP_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

GroupArg = Annotated[str, typer.Argument(help="Group name (lowercase letters, digits, '-'); nodes are GROUP-0, GROUP-1...")]
CountOpt = Annotated[int, typer.Option("--count", "-n", min=1, max=10000, help="How many nodes.")]
ImageOpt = Annotated[str | None, typer.Option("--image", "-i", help="Logical image from the federation file "
                                              "(or a site's own image name/id with --site). Default: defaults.image.")]
SizeOpt = Annotated[str | None, typer.Option("--size", help="Logical size from the federation file (or a site's own "
                                             "flavor name/id with --site). Default: defaults.size.")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", min=1, help="vCPUs per node (instead of --size).")]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Memory per node, e.g. 4GiB (with --cpus; default "
                                               "2GiB per vCPU).")]
SiteOpt = Annotated[str | None, typer.Option("--site", "-s", help="Only this site (no bursting).")]
ContextOpt = Annotated[list[str] | None, typer.Option("--context", metavar="PROFILE", help="Context profile, "
                                                      "repeatable, merged in order. Default: defaults.contexts.")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every node is ready: running, "
                                        "SSH login works with the delivered key, context finished.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan with its reasons; create nothing.")]


def _request(group: str, count: int, image: str | None, size: str | None, cpus: int | None,
             memory: str | None, site: str | None, fed: Any) -> Any:
    from skyctl.errors import UsageError
    from skyctl.model import parse_memory_mib
    from skyctl.policy.placement import Request

    if not GROUP_RE.match(group):
        raise UsageError(f"group name {group!r} must be lowercase letters, digits and '-', "
                         "starting with a letter (at most 40)")
    if site is not None:
        fed.site(site)
    image = image or fed.defaults.image
    if not image:
        raise UsageError("--image is required (no defaults.image in the federation file)")
    if image not in fed.images and site is None:
        known = ", ".join(fed.images) or "none"
        raise UsageError(f"unknown image {image!r} (logical images: {known}); "
                         "a site's own image name or id needs --site")
    if size and (cpus or memory):
        raise UsageError("give either --size or --cpus/--memory, not both")
    if cpus or memory:
        if not cpus:
            raise UsageError("--memory needs --cpus")
        try:
            mem = parse_memory_mib(memory) if memory else 2048 * cpus
        except ValueError as e:
            raise UsageError(f"--memory: {e}") from None
        return Request(group, count, cpus, mem, image, None, site)
    size = size or fed.defaults.size
    if not size:
        raise UsageError("give --size or --cpus (no defaults.size in the federation file)")
    if size in fed.sizes:
        s = fed.sizes[size]
        return Request(group, count, s.cpus, s.memory_mib, image, size, site)
    if site is None:
        known = ", ".join(fed.sizes) or "none"
        raise UsageError(f"unknown size {size!r} (sizes: {known}); a site's own flavor needs --site")
    return Request(group, count, 0, 0, image, size, site)


def _plan_table(p: dict[str, Any]) -> Any:
    title = f"plan for {p['group']}: {p['placed']} of {p['requested']} placed"
    if p["unplaced"]:
        title += f"; {p['unplaced']} unplaced ({p['unplaced_reason']})"
    return term().table(["SITE", "NODES", "IMAGE", "FLAVOR", "WHY"],
                        [(d["site"], d["count"], d["image"] or "-", d["flavor"] or "-",
                          "; ".join(d["reasons"])) for d in p["sites"]], title=title)


def launch(
    group: GroupArg,
    count: CountOpt = 1,
    image: ImageOpt = None,
    size: SizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    site: SiteOpt = None,
    context: ContextOpt = None,
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Launch a group of contextualised nodes across the federation.

    Local sites fill first (up to the bursting rule's threshold), then remote sites in rank
    order. A site that runs out of quota or hosts mid-launch is marked full and the rest fail
    over to the next site. Exits 3 when only part of the group could be created, 4 when no
    site had room.

    \b
    Examples:
      skyctl launch web --count 3 --image alma9 --size small --wait
      SKYCTL_VAR_pool_token=... skyctl launch job --count 40 --cpus 2 --memory 4GiB \\
          --context base --context htcondor-worker --var central_manager=cm.example
      skyctl launch one --image cirros --size m1.tiny --site home
    """
    from skyctl.cli.runtime import open_sky

    with open_sky() as sky:
        fed = sky.federation
        req = _request(group, count, image, size, cpus, memory, site, fed)
        profiles = list(context) if context is not None else list(fed.defaults.contexts)
        variables = parse_vars(var)
        drivers = {fed.site(req.site).driver} if req.site else {s.driver for s in fed.sites.values()}
        context_for, masked_vars = _context_builder(profiles, variables, var_file or [], drivers)
        if dry_run:
            from skyctl.ops.launch import plan_launch

            _show_plan(plan_launch(sky, req), output)
            return

        from skyctl.ops.launch import launch as do_launch

        spec = {"image": req.image, "size": req.size, "cpus": req.cpus, "memory_mib": req.memory_mib,
                "contexts": profiles, "vars": masked_vars, "site": req.site}
        result = do_launch(sky, req, context_for=context_for, group_spec=spec, wait_ready=wait)
    _report(result, output)


def plan(
    group: GroupArg,
    count: CountOpt = 1,
    image: ImageOpt = None,
    size: SizeOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    site: SiteOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show where a launch would place its nodes, and why each site was chosen or passed over.

    Creates nothing (same as 'skyctl launch ... --dry-run').
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.launch import plan_launch

    with open_sky() as sky:
        req = _request(group, count, image, size, cpus, memory, site, sky.federation)
        p = plan_launch(sky, req)
    _show_plan(p, output)


def _context_builder(profiles: list[str], variables: dict[str, str], var_files: list[str],
                     drivers: set[str] | None = None) -> tuple[Any, dict[str, str]]:
    """Validate the context once, up front (a missing variable or an oversized user-data fails
    before anything launches); render per node only when the profiles use the node's name."""
    from skyctl.context import build_context, check_for_cloud
    from skyctl.keys import default_ssh_key
    from skyctl.logsafe import register_secret

    keys = [default_ssh_key().public]  # every node accepts the key skyctl logs in with
    first = build_context(profiles, variables=variables, var_files=var_files, ssh_public_keys=keys)
    for s in first.secrets:
        register_secret(s)
    for w in first.warnings:
        term().warn(w)
    for driver in sorted(drivers or ()):
        check_for_cloud(first.rendered, driver, profiles=first.profiles)
    secret_values = set(first.secrets)
    masked = {k: ("****" if v in secret_values else v) for k, v in variables.items()}
    if not first.per_node:
        return (lambda _name: first.rendered), masked

    def context_for(name: str) -> Any:
        return build_context(profiles, variables=variables, var_files=var_files, ssh_public_keys=keys,
                             hostname=name).rendered

    return context_for, masked


def _show_plan(plan: Any, output: OutputFormat) -> None:
    """Print the plan (launch --dry-run and plan alike); exit 4 if nothing fits, 3 if part does."""
    from skyctl.errors import EXIT_NO_CAPACITY, EXIT_PARTIAL

    term().emit(plan.to_json(), output, table=_plan_table)
    if plan.placed == 0:
        term().warn(f"no site can host {plan.request.group}: {plan.unplaced_reason}")
        raise typer.Exit(EXIT_NO_CAPACITY)
    if plan.unplaced:
        term().warn(f"{plan.unplaced} of {plan.request.count} node(s) cannot be placed: {plan.unplaced_reason}")
        raise typer.Exit(EXIT_PARTIAL)


def _report(result: Any, output: OutputFormat) -> None:
    from skyctl.errors import EXIT_PARTIAL, AuthError, NoCapacity
    from skyctl.cli.nodes import node_table

    t = term()
    if not result.created:
        by_site = {**{f.site: f.error for f in result.failures}, **result.site_errors}
        considered = len(result.plans[0].decisions) if result.plans else 0
        if len(by_site) >= considered > 0 and all(isinstance(e, AuthError) for e in by_site.values()):
            raise next(iter(by_site.values()))  # every site refused the credentials: exit 5
        why = "; ".join(f"{s}: {w}" for s, w in result.full_sites.items()) or result.unplaced_reason or "no room"
        if output is not OutputFormat.table:
            t.emit(result.to_json(), output)
        raise NoCapacity(f"no node of {result.group} could be created ({why})")
    t.emit(result.to_json(), output, table=lambda d: node_table(d["nodes"]))
    sites = sorted({n.site for n in result.created})
    t.info(f"launched {len(result.created)} of {result.requested} node(s) of {result.group} "
           f"on {', '.join(sites)} (launch {result.launch_id})")
    for site, why in result.full_sites.items():
        t.info(f"{site} stopped taking nodes: {why}")
    if result.missing:
        why = result.unplaced_reason or "sites ran out of room"
        t.warn(f"{result.missing} node(s) could not be created: {why}")
        raise typer.Exit(EXIT_PARTIAL)
