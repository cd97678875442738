"""Groups over time: scale a group through the same placement, and reconcile state with the clouds.

The clouds are the source of truth (every node carries skyctl's labels); the state store
remembers intents and group specs. `reconcile` makes the two agree after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import DriverError, NotFound, SkyError
from skyctl.model import Node, NodeState, Tier
from skyctl.ops.grouplock import group_lock, group_locks
from skyctl.ops.inventory import delete_nodes, list_nodes
from skyctl.ops.launch import LaunchResult, launch
from skyctl.ops.outcome import raise_if_none_answered
from skyctl.ops.request import context_of_group, request_for
from skyctl.ops.sizing import check_bounds
from skyctl.ops.sky import Sky
from skyctl.policy.placement import Plan


def _index(n: Node) -> int:
    try:
        return int(n.labels.get("index", n.name.rsplit("-", 1)[-1]))
    except ValueError:
        return -1


def shrink_order(sky: Sky, nodes: list[Node]) -> list[Node]:
    """Which nodes go first when a group shrinks: burst nodes (remote, dearest first), newest first."""
    sites = sky.federation.sites

    def key(n: Node) -> tuple[Any, ...]:
        cfg = sites.get(n.site)
        remote = cfg is not None and cfg.tier is Tier.REMOTE
        return (0 if remote else 1, -(cfg.cost if cfg else 0.0), -_index(n), n.name)

    return sorted(nodes, key=key)


@dataclass
class ScaleResult:
    group: str
    before: int
    target: int
    launched: LaunchResult | None = None
    deleted: list[Node] = field(default_factory=list)
    errors: dict[str, DriverError] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "before": self.before, "target": self.target,
                "launched": self.launched.to_json() if self.launched else None,
                "deleted": [n.to_json() for n in self.deleted],
                "errors": {s: e.line() for s, e in self.errors.items()}}


def scale(sky: Sky, group: str, target: int, *, confirm: Callable[[Plan], bool] | None = None) -> ScaleResult:
    """Grow or shrink `group` to `target` nodes, holding the group's lock throughout (so two
    scales at once end at the size asked, not at the sum). `confirm`: as for launch."""
    with group_lock(group, say=sky.reporter.message, sky=sky):
        return _scale(sky, group, target, confirm)


def _scale(sky: Sky, group: str, target: int, confirm: Callable[[Plan], bool] | None) -> ScaleResult:
    """Grow through the same placement as a launch (the context rebuilt from the group's spec),
    or shrink, burst nodes first."""
    spec = sky.state.group_spec(group)
    if spec is None:
        raise NotFound(f"group {group!r} is not known here; create it with 'skyctl launch {group} ...'")
    listing = list_nodes(sky, group=group)
    raise_if_none_answered(listing.errors, len(sky.site_names))
    if listing.errors:
        names = ", ".join(sorted(listing.errors))
        raise SkyError(f"cannot scale {group}: {names} did not answer, so its size is unknown")
    current = [n for n in listing.nodes if n.state.value not in ("deleted", "error")]
    if target != len(current):
        check_bounds(sky, group, has=len(current), after=target)
    result = ScaleResult(group, len(current), target)
    if target > len(current):
        req = request_for(group, spec, target - len(current), fed=sky.federation)
        result.launched = launch(sky, req, context_for=context_of_group(spec, reporter=sky.reporter),
                                 group_spec=spec, confirm=confirm)
    elif target < len(current):
        victims = shrink_order(sky, current)[: len(current) - target]
        result.errors = delete_nodes(sky, victims)
        result.deleted = [n for n in victims if n.site not in result.errors]
    return result


@dataclass
class ReconcileResult:
    adopted: list[str] = field(default_factory=list)      # on a cloud, now in state
    forgotten: list[str] = field(default_factory=list)    # in state, gone from the clouds
    orphans: list[Node] = field(default_factory=list)     # ours on a cloud, group unknown here
    duplicates: list[Node] = field(default_factory=list)  # a second node with the same name
    deleted: list[str] = field(default_factory=list)
    moves_finished: list[str] = field(default_factory=list)  # half-done moves home: remote node deleted
    moves_undone: list[str] = field(default_factory=list)    # half-done moves home: replacement removed
    intents_closed: int = 0
    site_errors: dict[str, DriverError] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "forgotten": self.forgotten,
                "orphans": [n.to_json() for n in self.orphans],
                "duplicates": [n.to_json() for n in self.duplicates], "deleted": self.deleted,
                "moves_finished": self.moves_finished, "moves_undone": self.moves_undone,
                "intents_closed": self.intents_closed,
                "site_errors": {s: e.line() for s, e in self.site_errors.items()}}


def _settle_move(sky: Sky, intent: Any, ours: list[Node], by_name: dict[str, Node], out: ReconcileResult) -> bool:
    """A move home that skyctl did not finish: the group ends at its size either way. With the
    replacement running, the remote node goes (the move is finished); otherwise the
    replacement goes (undone). True when the intent could be closed."""
    state = sky.state
    old = by_name.get(intent.node)
    old = old if old is not None and old.site == intent.site else None
    new = next((n for n in ours if n.launch_id == intent.launch_id), None)
    if old is None:
        state.finish(intent.id, "done", "the remote node is gone")
        if new is not None:
            by_name[new.name] = new
        return True
    if new is None:
        state.finish(intent.id, "failed", "undone by reconcile: no replacement was created")
        out.moves_undone.append(intent.node)
        return True
    keep, drop = (new, old) if new.state is NodeState.RUNNING else (old, new)
    with group_lock(drop.group or intent.node, say=sky.reporter.message, sky=sky):
        if delete_nodes(sky, [drop]):
            return False
    # Both carry the name (moves made before names were kept had two): it is the kept node's now.
    by_name.pop(drop.name, None)
    by_name[keep.name] = keep
    state.record_node(keep.name, keep.group or "", keep.site, keep.id, keep.launch_id or "")
    if keep is new:
        state.finish(intent.id, "done", f"finished by reconcile: {old.name} {old.site} -> {new.site}")
        out.moves_finished.append(old.name)
    else:
        state.finish(intent.id, "failed", f"undone by reconcile: the replacement on {new.site} was not running")
        out.moves_undone.append(old.name)
    return True


def reconcile(sky: Sky, *, delete_orphans: bool = False) -> ReconcileResult:
    state = sky.state
    listing = list_nodes(sky)
    raise_if_none_answered(listing.errors, len(sky.site_names))
    out = ReconcileResult(site_errors=dict(listing.errors))
    answered = set(sky.site_names) - set(listing.errors)
    ours = [n for n in listing.nodes if n.labels.get("owner") == sky.owner(n.site)]
    known_groups = set(state.groups())

    # The oldest node of a name is the real one; a later twin is a duplicate, unless it is the
    # replacement of a move home in progress (same name on purpose; settled with its intent).
    moving_in = {i.launch_id for i in state.intents("pending") if i.op == "move"}
    by_name: dict[str, Node] = {}
    for n in sorted(ours, key=lambda n: (n.created_at or "", n.id)):
        if n.launch_id in moving_in:
            continue
        if n.name in by_name:
            out.duplicates.append(n)
        else:
            by_name[n.name] = n

    # Deletions a site refused or did not answer (still deleting): finish them first.
    doomed: dict[str, tuple[Any, Node]] = {}
    for intent in state.intents("pending"):
        if intent.op != "delete":
            continue
        node = by_name.get(intent.node)
        if node is not None and node.site == intent.site:
            doomed[intent.node] = (intent, node)
        elif intent.site in answered:
            state.finish(intent.id, "done", "gone from the cloud")
            out.intents_closed += 1
    if doomed:
        # delete_nodes opens (and on success closes) intents of its own: close the old ones
        errors = delete_nodes(sky, [node for _, node in doomed.values()])
        out.site_errors.update(errors)
        for name, (intent, node) in doomed.items():
            if node.site in errors:
                continue
            state.finish(intent.id, "done", "deleted by reconcile")
            out.intents_closed += 1
            out.deleted.append(name)
            by_name.pop(name, None)
        for intent in state.intents("pending"):   # the retries that failed again: one stays open
            if intent.op == "delete" and intent.node in doomed and intent.site in errors \
                    and intent.id != doomed[intent.node][0].id:
                state.finish(intent.id, "failed", "superseded by the earlier open deletion")

    for intent in state.intents("pending"):
        if intent.op == "delete":
            continue
        if intent.op == "move":
            if not listing.errors and _settle_move(sky, intent, ours, by_name, out):
                out.intents_closed += 1
            continue  # a move with a site silent stays pending: its nodes cannot all be seen
        node = by_name.get(intent.node)
        if node is not None:
            state.finish(intent.id, "done", f"adopted {node.id}")
        elif intent.site in answered:
            state.finish(intent.id, "failed", "not on the cloud (interrupted before it was created)")
        else:
            continue
        out.intents_closed += 1

    recorded = {r.name: r for r in state.nodes()}
    for name, node in by_name.items():
        if node.group not in known_groups:
            out.orphans.append(node)
            continue
        rec = recorded.get(name)
        if rec is None or rec.cloud_id != node.id or rec.site != node.site:
            state.record_node(name, node.group or "", node.site, node.id, node.launch_id or "")
            out.adopted.append(name)
    for name, rec in recorded.items():
        if name not in by_name and rec.site in answered:
            state.forget_node(name)
            out.forgotten.append(name)

    if delete_orphans and (out.orphans or out.duplicates):
        _delete_strays(sky, out, by_name)
    return out


def _delete_strays(sky: Sky, out: ReconcileResult, by_name: dict[str, Node]) -> None:
    """Delete orphans and duplicates holding each group's lock, like any other change to a
    group: a launch of the group still running keeps its lock until its group is recorded,
    so what looked like an orphan before the lock is checked again under it and kept."""
    state = sky.state
    groups = {n.group for n in out.orphans + out.duplicates if n.group}
    with group_locks(groups, say=sky.reporter.message, sky=sky):
        known = set(state.groups())
        kept = [n for n in out.orphans if n.group in known]  # launched meanwhile: not an orphan
        doomed = [n for n in out.orphans if n not in kept] + out.duplicates
        out.orphans = [n for n in out.orphans if n not in kept]
        errors = delete_nodes(sky, doomed) if doomed else {}
        out.deleted = [n.name for n in doomed if n.site not in errors]
        out.site_errors.update(errors)
        for dup in out.duplicates:  # deleting a twin dropped the record of its name: restore it
            real = by_name[dup.name]
            if real.group in known:
                state.record_node(real.name, real.group or "", real.site, real.id, real.launch_id or "")
