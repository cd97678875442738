"""One bursting tick: snapshot -> pure decisions -> make-before-break moves home.

A move launches the replacement on the local site (same group, same context), waits until it
is running, and only then deletes the remote node. If anything fails before that, the
replacement (if any) is removed and the remote node stays: capacity never drops.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import DriverError, NotFound, SkyError
from skyctl.model import Node, Tier
from skyctl.ops.grouplock import group_lock
from skyctl.ops.inventory import delete_nodes, list_nodes
from skyctl.ops.launch import catalog_of, launch, snapshot, wait_running
from skyctl.ops.request import context_of_group, request_for
from skyctl.ops.sky import Sky, retrying
from skyctl.policy.bursting import Move, RuleTick, burst_nodes, decide_moves


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

    def to_json(self) -> dict[str, Any]:
        return {"rules": [r.to_json() for r in self.rules], "actions": [o.to_json() for o in self.outcomes],
                "site_errors": self.site_errors}


def assess(sky: Sky, *, now: float | None = None) -> tuple[list[RuleTick], dict[str, Node], dict[str, str]]:
    """What every rule would do now (no changes)."""
    now = time.time() if now is None else now
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
    return ticks, {n.name: n for n in listing.nodes}, site_errors


def run_tick(sky: Sky, *, dry_run: bool = False) -> TickResult:
    ticks, nodes, site_errors = assess(sky)
    result = TickResult(ticks, [], site_errors, list(nodes.values()))
    if dry_run:
        return result
    for tick in ticks:
        moved = False
        for move in tick.moves:
            outcome = move_home(sky, move, nodes[move.node])
            result.outcomes.append(outcome)
            moved = moved or outcome.ok
        if moved:
            sky.state.log_burst(tick.rule, "moved home")
    return result


def move_home(sky: Sky, move: Move, old: Node) -> MoveOutcome:
    """Make-before-break, holding the group's lock; the node must still be there once the lock
    is ours (another `burst run` may have moved it while this one waited)."""
    with group_lock(move.group, say=sky.reporter.message, sky=sky):
        try:
            retrying(lambda: sky.driver(old.site).get(old.id))
        except NotFound:
            return MoveOutcome(move, False, error=f"{old.name} is gone already (moved or deleted meanwhile)")
        except DriverError as e:
            return MoveOutcome(move, False, error=e.line())
        return _move_home(sky, move, old)


def _move_home(sky: Sky, move: Move, old: Node) -> MoveOutcome:
    spec = sky.state.group_spec(move.group)
    if spec is None:
        return MoveOutcome(move, False, error=f"group {move.group!r} is not known here")
    context_for = context_of_group(spec, reporter=sky.reporter)  # a missing secret stops the tick
    sky.reporter.message(f"moving {move.node} from {move.from_site} to {move.to_site}")
    # In the intent log before anything is created: if skyctl dies half-way (kill -9 with the
    # replacement up and the remote node not yet deleted), `reconcile` finishes or undoes it.
    # The replacement is created under this launch id, which is how reconcile finds it.
    launch_id = uuid.uuid4().hex[:12]
    intent = sky.state.begin(launch_id, "move", move.group, old.name, old.site)
    try:
        res = launch(sky, request_for(move.group, spec, 1, site=move.to_site), context_for=context_for,
                     group_spec=spec, launch_id=launch_id)
    except SkyError as e:
        sky.state.finish(intent, "failed", e.line())
        return MoveOutcome(move, False, error=e.line())
    if not res.created:
        why = "; ".join(f"{s}: {w}" for s, w in res.full_sites.items()) or res.unplaced_reason or "not created"
        sky.state.finish(intent, "failed", why)
        return MoveOutcome(move, False, error=why)
    new = res.created[0]
    try:
        new = wait_running(sky, [new], res.launch_id)[0]
    except (SkyError, KeyboardInterrupt) as e:
        # The replacement never came up: remove it, keep the remote node (break nothing).
        errors = delete_nodes(sky, [new])  # reports its own failure; the remote node stays either way
        if not errors:
            sky.state.finish(intent, "failed", f"{new.name} did not become running; removed")
        if isinstance(e, KeyboardInterrupt):
            raise
        return MoveOutcome(move, False, new.name, error=f"{new.name} did not become running: {e.line()}")
    try:
        retrying(lambda: sky.driver(old.site).delete([old.id]))
    except DriverError as e:  # the intent stays pending: reconcile deletes the remote node later
        return MoveOutcome(move, False, new.name, error=f"replacement {new.name} is running but "
                                                        f"{old.name} could not be deleted: {e.line()}")
    sky.state.forget_node(old.name)
    sky.state.finish(intent, "done", f"{old.name} -> {new.name}")
    sky.reporter.node_deleted(old)
    return MoveOutcome(move, True, new.name)


