"""One view of the sky: list nodes on every site at once, find nodes by name, site facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import DriverError, NotFound, UsageError
from skyctl.logsafe import site_scope
from skyctl.model import Node
from skyctl.ops.outcome import Outcome, classify_reads, raise_if_none_answered
from skyctl.ops.sky import Sky, retrying


@dataclass
class Listing:
    nodes: list[Node]
    errors: dict[str, DriverError] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.errors)

    def outcome(self, asked: int) -> Outcome:
        """Failed (auth first) only when none of the `asked` sites answered."""
        return classify_reads(self.errors, asked, bool(self.nodes))


def list_nodes(sky: Sky, *, group: str | None = None, site: str | None = None,
               include_foreign: bool = False, all_owners: bool = False) -> Listing:
    """The caller's own nodes (their owner label on each site is `sky.owner(site)`); with
    `all_owners` everyone's, with `include_foreign` also VMs skyctl did not create."""
    sites = [sky.federation.site(site).name] if site else sky.site_names
    selector = {"group": group} if group else {}

    def one(driver: Any) -> list[Node]:
        mine = {} if all_owners or include_foreign else {"owner": sky.owner(driver.site_name)}
        return driver.list({**selector, **mine} or None, managed_only=not include_foreign)

    answers, errors = sky.gather(one, sites)
    nodes = [n for listed in answers.values() for n in listed]
    nodes.sort(key=lambda n: (n.group or "~", _natural(n.name), n.site))
    return Listing(nodes, errors)


def _natural(name: str) -> tuple[Any, ...]:
    """g1-10 sorts after g1-9."""
    head, _, tail = name.rpartition("-")
    return (head, int(tail), "") if tail.isdigit() else (name, -1, name)


def moving_in(sky: Sky) -> dict[str, Any]:
    """Launch id -> the pending `move` intent whose replacement carries it: a node with this
    launch id is a move's target, sharing its name with the node it replaces until that one is
    deleted."""
    return {i.launch_id: i for i in sky.state.intents("pending") if i.op == "move"}


def move_roles(sky: Sky, nodes: list[Node]) -> dict[str, str]:
    """Node id -> 'moving in (replaces NAME on SITE)' / 'moving out (to SITE)' for the nodes of
    a move in progress."""
    targets = moving_in(sky)
    out: dict[str, str] = {}
    for n in nodes:
        intent = targets.get(n.launch_id or "")
        if intent is None:
            continue
        out[n.id] = f"moving in (replaces {intent.node} on {intent.site})"
        for m in nodes:
            if m.name == n.name and m.site == intent.site and m.id != n.id:
                out[m.id] = f"moving out (to {n.site})"
    return out


def resolve_targets(sky: Sky, names: list[str], *, site: str | None = None) -> tuple[list[Node], Listing]:
    """Each name is a group or a node name (or, with --site, the cloud's own id)."""
    listing = list_nodes(sky, site=site)
    raise_if_none_answered(listing.errors, 1 if site else len(sky.site_names))
    by_group: dict[str, list[Node]] = {}
    by_name: dict[str, list[Node]] = {}
    by_id: dict[str, Node] = {}
    for n in listing.nodes:
        by_group.setdefault(n.group or "", []).append(n)
        by_name.setdefault(n.name, []).append(n)
        by_id[n.id] = n
    found: dict[tuple[str, str], Node] = {}
    missing: list[str] = []
    known_groups = set(sky.state.groups())
    for name in names:
        if name in known_groups and name not in by_group:
            continue  # a group of this skyctl whose nodes are all gone (or never came up)
        if name in by_group:
            for n in by_group[name]:
                found[(n.site, n.id)] = n
        elif name in by_name:
            same = by_name[name]
            if len(same) > 1:
                # A move home in progress: the name still means the node it replaces.
                targets = moving_in(sky)
                staying = [n for n in same if (n.launch_id or "") not in targets]
                same = staying if len(staying) == 1 else same
            if len(same) > 1:  # never a silent pick: duplicates after a crash, or a name reused
                each = ", ".join(f"{n.id} on {n.site}" for n in same)
                raise UsageError(f"{name!r} names {len(same)} nodes ({each})",
                                 hint="name one by its id with --site SITE, or run 'skyctl reconcile'")
            n = same[0]
            found[(n.site, n.id)] = n
        elif site and name in by_id:
            found[(site, name)] = by_id[name]
        else:
            missing.append(name)
    if missing and not listing.partial:
        where = f" on site {site}" if site else ""
        raise NotFound(f"no group or node named {', '.join(map(repr, missing))}{where}"
                       + ("" if site else " (use --site SITE for a cloud's own id)"))
    return list(found.values()), listing


def show_node(sky: Sky, name: str, *, site: str | None = None) -> Node:
    if site:
        sky.federation.site(site)
        try:
            return retrying(lambda: sky.driver(site).get(name))
        except NotFound:
            pass  # not an id: try it as a node name on that site
    nodes, listing = resolve_targets(sky, [name], site=site)
    if len(nodes) == 1:
        return nodes[0]
    if not nodes:
        raise NotFound(f"node {name!r} not found (sites that did not answer: {', '.join(listing.errors)})")
    raise UsageError(f"{name!r} is a group of {len(nodes)} nodes; name one node (see 'skyctl ps {name}')")


def sites_info(sky: Sky) -> tuple[list[dict[str, Any]], dict[str, DriverError]]:
    caps, errors = sky.gather(lambda d: d.capacity())
    out: list[dict[str, Any]] = []
    for name, cfg in sky.federation.sites.items():
        row: dict[str, Any] = {"name": name, "driver": cfg.driver, "tier": cfg.tier.value, "cost": cfg.cost}
        if name in errors:
            row.update(reachable=False, error=errors[name].line(), capacity=None)
        else:
            row.update(reachable=True, error=None, capacity=caps[name].as_dict())
        try:
            row.update(sky.driver(name).describe())
        except DriverError:
            pass
        out.append(row)
    return out, errors


def delete_nodes(sky: Sky, nodes: list[Node]) -> dict[str, DriverError]:
    """Delete nodes, grouped per site, sites in parallel. Returns the sites that failed.

    Each node gets a "delete" intent first, closed when its site answers that it is gone; a
    site that fails (down, or a cloud still refusing: OpenNebula in PROLOG) leaves it pending,
    so `reconcile` finishes the deletion later, and the node is never forgotten meanwhile."""
    per_site: dict[str, list[Node]] = {}
    for n in nodes:
        per_site.setdefault(n.site, []).append(n)
    intents = {n.name: sky.state.begin(n.launch_id or "", "delete", n.group or "", n.name, n.site) for n in nodes}

    def run(driver: Any) -> int:
        batch = per_site[driver.site_name]
        driver.delete([n.id for n in batch])
        return len(batch)

    done, errors = sky.gather(run, list(per_site))
    for site in done:
        for n in per_site[site]:
            sky.state.forget_node(n.name)
            sky.state.finish(intents[n.name], "done", f"deleted {n.id}")
            sky.reporter.node_deleted(n)
    return errors


def prepare_access(sky: Sky, nodes: list[Node]) -> list[Node]:
    """Give nodes what reaches them from this machine (floating IPs where a site asks for
    them), one driver call per site; returns the nodes with their new addresses."""
    by_site: dict[str, list[Node]] = {}
    for n in nodes:
        by_site.setdefault(n.site, []).append(n)
    prepared: dict[str, Node] = {}
    for site, group in by_site.items():
        with site_scope(site):  # a library's log lines name the site
            prepared.update((p.id, p) for p in retrying(lambda site=site, group=group: sky.driver(site).prepare_access(group)))
    return [prepared.get(n.id, n) for n in nodes]
