"""One bursting tick: snapshot -> pure decisions -> make-before-break moves home, and the
demand-driven groups (skyctl.ops.demand).

A move launches the replacement on the local site under the SAME node name (same group, same
context), waits until it is running, drains the remote node (the rule's drain_command, and
Slurm's drain for a `slurm:` node), and only then deletes it. If anything fails before that,
the replacement (if any) is removed and the remote node stays: capacity never drops, and the
work on the remote node is never cut off by skyctl. For the time of the move the two nodes
share the name on different sites; the replacement carries the move's launch id, which the
pending `move` intent names, so `ps` shows it as the move's target, `ssh`/`exec` by name reach
the remote node until the move is done, and `reconcile` never takes it for a duplicate.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import DriverError, NotFound, SkyError
from skyctl.model import Node, Tier
from skyctl.ops.demand import DemandResult, apply_demand, assess_demand, drain_before_delete, due
from skyctl.ops.grouplock import group_lock
from skyctl.ops.inventory import Listing, delete_nodes, list_nodes
from skyctl.ops.launch import catalog_of, launch, snapshot, wait_running
from skyctl.ops.request import context_of_group, request_for
from skyctl.ops.sky import Sky, retrying
from skyctl.ops.slurm import release_slurm_node
from skyctl.policy.bursting import Move, RuleTick, burst_nodes, decide_moves
from skyctl.policy.placement import SiteSnapshot
from skyctl.policy.rules import Rule


@dataclass
class MoveOutcome:
    move: Move
    ok: bool
    new_node: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.move.to_json(), "ok": self.ok, "new_node": self.new_node, "error": self.error}


@dataclass
class TickResult:
    rules: list[RuleTick] = field(default_factory=list)
    outcomes: list[MoveOutcome] = field(default_factory=list)
    site_errors: dict[str, str] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)  # what the tick saw before its moves (for metrics)
    demand: list[DemandResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and all(d.ok for d in self.demand) and not self.site_errors

    def to_json(self) -> dict[str, Any]:
        return {"rules": [r.to_json() for r in self.rules], "actions": [o.to_json() for o in self.outcomes],
                "demand": [d.to_json() for d in self.demand], "site_errors": self.site_errors}


@dataclass
class _Look:
    snaps: list[SiteSnapshot]
    listing: Listing
    ticks: list[RuleTick]
    site_errors: dict[str, str]


def assess(sky: Sky, *, now: float | None = None) -> tuple[list[RuleTick], dict[str, Node], dict[str, str]]:
    """What every rule would move now (no changes)."""
    look = _look(sky, time.time() if now is None else now)
    return look.ticks, {n.name: n for n in look.listing.nodes}, look.site_errors


def status(sky: Sky, *, now: float | None = None) -> TickResult:
    """What every rule sees and would do now: moves, and each demand rule's reading, target and
    why (the demand command runs; nothing changes on the clouds)."""
    now = time.time() if now is None else now
    look = _look(sky, now)
    demand = [assess_demand(sky, rule, look.snaps, look.listing, now=now)[0]
              for rule in sky.federation.rules if rule.demand is not None]
    return TickResult(look.ticks, [], look.site_errors, list(look.listing.nodes), demand)


def _look(sky: Sky, now: float) -> _Look:
    fed = sky.federation
    errors: dict[str, DriverError] = {}
    snaps = snapshot(sky, None, errors)
    listing = list_nodes(sky)
    specs = {g: s for g in {n.group for n in listing.nodes if n.group} if (s := sky.state.group_spec(g))}
    remote = {name for name, s in fed.sites.items() if s.tier is Tier.REMOTE}
    burst = burst_nodes(listing.nodes, specs, remote)
    catalog = catalog_of(sky)
    ticks = [decide_moves(rule, snaps, burst, last_move_at=sky.state.last_burst(rule.name), now=now, catalog=catalog)
             for rule in fed.rules]
    site_errors = {s: e.line() for s, e in {**errors, **listing.errors}.items()}
    return _Look(snaps, listing, ticks, site_errors)


def run_tick(sky: Sky, *, dry_run: bool = False, demand_when_due: bool = False) -> TickResult:
    """One tick: moves home, then every demand rule (with `demand_when_due`, as `burst watch`
    does, only those whose `every` has passed since their command last ran)."""
    now = time.time()
    look = _look(sky, now)
    nodes = {(n.name, n.site): n for n in look.listing.nodes}
    result = TickResult(look.ticks, [], look.site_errors, list(look.listing.nodes))
    rules = {r.name: r for r in sky.federation.rules}
    demand_rules = [r for r in sky.federation.rules if r.demand is not None
                    and (not demand_when_due or dry_run or due(sky, r, now))]
    if dry_run:
        result.demand = [assess_demand(sky, r, look.snaps, look.listing, now=now)[0] for r in demand_rules]
        return result
    moved_any = False
    for tick in look.ticks:
        moved = False
        for move in tick.moves:
            outcome = move_home(sky, move, nodes[(move.node, move.from_site)], rules.get(tick.rule))
            result.outcomes.append(outcome)
            moved = moved or outcome.ok
        if moved:
            sky.state.log_burst(tick.rule, "moved home")
        moved_any = moved_any or bool(tick.moves)
    if demand_rules:
        snaps, listing = look.snaps, look.listing
        if moved_any:   # the moves changed what home has free
            snaps, listing = snapshot(sky, None, {}), list_nodes(sky)
        result.demand = [apply_demand(sky, r, snaps, listing, now=now) for r in demand_rules]
    return result


def move_home(sky: Sky, move: Move, old: Node, rule: Rule | None = None) -> MoveOutcome:
    """Make-before-break, holding the group's lock; the node must still be there once the lock
    is ours (another `burst run` may have moved it while this one waited)."""
    with group_lock(move.group, say=sky.reporter.message, sky=sky):
        try:
            retrying(lambda: sky.driver(old.site).get(old.id))
        except NotFound:
            return MoveOutcome(move, False, error=f"{old.name} is gone already (moved or deleted meanwhile)")
        except DriverError as e:
            return MoveOutcome(move, False, error=e.line())
        return _move_home(sky, move, old, rule)


def _keep_record(sky: Sky, old: Node) -> None:
    """The name's record points at the remote node again (creating and removing the
    replacement, which has the same name, moved it)."""
    sky.state.record_node(old.name, old.group or "", old.site, old.id, old.launch_id or "")


def _move_home(sky: Sky, move: Move, old: Node, rule: Rule | None) -> MoveOutcome:
    spec = sky.state.group_spec(move.group)
    if spec is None:
        return MoveOutcome(move, False, error=f"group {move.group!r} is not known here")
    context_for = context_of_group(spec, reporter=sky.reporter)  # a missing secret stops the tick
    sky.reporter.message(f"moving {move.node} from {move.from_site} to {move.to_site}")
    # In the intent log before anything is created: if skyctl dies half-way (kill -9 with the
    # replacement up and the remote node not yet deleted), `reconcile` finishes or undoes it.
    # The replacement is created under this launch id, which is how reconcile (and ps, ssh)
    # tell it from the remote node: both carry the same name until the move is done.
    launch_id = uuid.uuid4().hex[:12]
    intent = sky.state.begin(launch_id, "move", move.group, old.name, old.site)
    try:
        res = launch(sky, request_for(move.group, spec, 1, site=move.to_site, fed=sky.federation),
                     context_for=context_for, group_spec=spec, launch_id=launch_id, names=[old.name],
                     bounded=False)  # replaces a node, under its name: the group keeps its size
    except SkyError as e:
        sky.state.finish(intent, "failed", e.line())
        _keep_record(sky, old)
        return MoveOutcome(move, False, error=e.line())
    if not res.created:
        why = "; ".join(f"{s}: {w}" for s, w in res.full_sites.items()) or res.unplaced_reason or "not created"
        sky.state.finish(intent, "failed", why)
        _keep_record(sky, old)
        return MoveOutcome(move, False, error=why)
    new = res.created[0]
    try:
        new = wait_running(sky, [new], res.launch_id)[0]
    except (SkyError, KeyboardInterrupt) as e:
        # The replacement never came up: remove it, keep the remote node (break nothing).
        errors = delete_nodes(sky, [new])  # reports its own failure; the remote node stays either way
        _keep_record(sky, old)
        if not errors:
            sky.state.finish(intent, "failed", f"the replacement on {new.site} did not become running; removed")
        if isinstance(e, KeyboardInterrupt):
            raise
        return MoveOutcome(move, False, new.name, error=f"the replacement on {new.site} did not become running: "
                                                        f"{e.line()}")
    # Drain before the break: work on the remote node finishes there (or the move is undone).
    why = drain_before_delete(sky, rule, old)
    if why:
        errors = delete_nodes(sky, [new])
        _keep_record(sky, old)
        if not errors:
            sky.state.finish(intent, "failed", f"{old.name} was not drained: {why}")
        return MoveOutcome(move, False, new.name, error=f"{old.name} was not drained ({why}); it stays on "
                                                        f"{old.site} and its replacement was removed")
    try:
        retrying(lambda: sky.driver(old.site).delete([old.id]))
    except DriverError as e:  # the intent stays pending: reconcile deletes the remote node later
        return MoveOutcome(move, False, new.name, error=f"the replacement on {new.site} is running but "
                                                        f"{old.name} on {old.site} could not be deleted: {e.line()}")
    sky.state.record_node(new.name, move.group, new.site, new.id, launch_id)
    sky.state.finish(intent, "done", f"{old.name}: {old.site} -> {new.site}")
    sky.reporter.node_deleted(old)
    why = release_slurm_node(sky, new, moved=True)
    if why:
        sky.reporter.warning(f"{new.name} moved, but Slurm did not take it back: {why}")
    return MoveOutcome(move, True, new.name)


