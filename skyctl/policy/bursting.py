"""Pure bursting decisions: which burst nodes move home this tick, and why (or why not).

A rule with a `home:` policy moves nodes that overflowed to its remote sites back to its local
sites when those have room again. The decision looks only at a snapshot and the clock:
- cooldown: no move until `cooldown` seconds after the last tick that moved something;
- room: a local site takes a node only if, after the move, it still has `hysteresis_cores`
  free under the rule's overflow line, and only once it has `when_free_cores` free at all;
- step: at most `max_moves` moves per tick;
- order: nodes on the most expensive remote site first, then the newest (highest index).
The ops layer carries the moves out make-before-break.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from skyctl.model import Capacity, GroupSpec, Limit, Node, Tier
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, consume, pick_flavor, pick_image, place, room_on
from skyctl.policy.rules import GroupBounds, Rule


@dataclass(frozen=True, slots=True)
class BurstNode:
    """A running node skyctl placed on a remote site, with what its group asks for."""

    name: str
    group: str
    site: str
    index: int
    image: str          # the group's logical image
    cpus: int
    memory_mib: int
    size: str | None = None


@dataclass(frozen=True, slots=True)
class Move:
    node: str
    group: str
    from_site: str
    to_site: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "group": self.group, "from": self.from_site, "to": self.to_site,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RuleTick:
    rule: str
    moves: tuple[Move, ...]
    burst_nodes: int
    reasons: tuple[str, ...]     # why nothing (more) moved

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "burst_nodes": self.burst_nodes, "moves": [m.to_json() for m in self.moves],
                "reasons": list(self.reasons)}


def _free_cores(cap: Capacity | None) -> int | None:
    return None if cap is None else cap.cores.free


def decide_moves(rule: Rule, sites: Sequence[SiteSnapshot], burst: Sequence[BurstNode], *,
                 last_move_at: float | None, now: float, catalog: Catalog = Catalog()) -> RuleTick:
    home = rule.home
    mine = [n for n in burst if n.site in rule.to_sites and rule.applies_to(n.group)]
    if home is None:
        return RuleTick(rule.name, (), len(mine), ("the rule has no home policy: burst load stays",))
    if not mine:
        return RuleTick(rule.name, (), 0, ("no burst nodes",))
    if last_move_at is not None and now - last_move_at < home.cooldown_s:
        left = home.cooldown_s - (now - last_move_at)
        return RuleTick(rule.name, (), len(mine), (f"cooldown: {left:.0f}s left of {home.cooldown_s:g}s",))

    by_name = {s.name: s for s in sites}
    locals_ = [by_name[n] for n in rule.from_sites if n in by_name]
    cost = {s.name: s.cost for s in sites}
    # Most expensive remote first, then the newest node.
    order = sorted(mine, key=lambda n: (-cost.get(n.site, 0.0), -n.index, n.name))
    moves: list[Move] = []
    reasons: list[str] = []
    # Nodes alike (same site and shape) get the same answer until a move changes the locals:
    # asked once, so a tick costs one look per kind of node, not per node.
    verdicts: dict[tuple[Any, ...], tuple[SiteSnapshot | None, str]] = {}
    for node in order:
        if len(moves) >= home.max_moves:
            reasons.append(f"step: at most {home.max_moves} move(s) per tick")
            break
        kind = (node.site, node.group, node.image, node.size, node.cpus, node.memory_mib)
        if kind not in verdicts:
            verdicts[kind] = _home_for(node, locals_, rule, catalog)
        target, why = verdicts[kind]
        if target is None:
            reasons.append(f"{node.name}: {why}")
            continue
        moves.append(Move(node.name, node.group, node.site, target.name, why))
        locals_ = [consume(s, 1, node.cpus, node.memory_mib) if s.name == target.name else s for s in locals_]
        verdicts.clear()
    return RuleTick(rule.name, tuple(moves), len(mine), tuple(dict.fromkeys(reasons)))


def _home_for(node: BurstNode, locals_: Sequence[SiteSnapshot], rule: Rule,
              catalog: Catalog) -> tuple[SiteSnapshot | None, str]:
    home = rule.home
    assert home is not None
    why_not = "no local site"
    for site in locals_:
        if site.error:
            why_not = f"{site.name} did not answer"
            continue
        req = Request(node.group, 1, node.cpus, node.memory_mib, node.image, node.size)
        image, why = pick_image(req, site, catalog)
        flavor, why2 = pick_flavor(req, site, catalog, image) if image else (None, why)
        if image is None or flavor is None:
            why_not = f"{site.name}: {why or why2}"
            continue
        free = _free_cores(site.capacity)
        if free is not None and free < home.when_free_cores:
            why_not = f"{site.name} has {free} free cores, moves start at {home.when_free_cores}"
            continue
        room, _ = room_on(site, flavor, rule)
        if room is not None and room < 1:
            why_not = f"{site.name} is full up to the overflow line"
            continue
        if home.hysteresis_cores and site.capacity is not None and room is not None:
            # After the move the site must keep `hysteresis_cores` under the overflow line.
            left_cores = (room - 1) * max(flavor.cpus, 1)
            if left_cores < home.hysteresis_cores:
                why_not = f"{site.name}: would leave {left_cores} cores, hysteresis wants {home.hysteresis_cores}"
                continue
        tier = "local" if site.tier is Tier.LOCAL else site.tier.value
        return site, f"{site.name} ({tier}) has room again; {node.site} costs more"
    return None, why_not


def burst_nodes(nodes: Sequence[Node], specs: Mapping[str, GroupSpec], remote_sites: set[str]) -> list[BurstNode]:
    """Running managed nodes on remote sites, with their group's spec (from the state store)."""
    out = []
    for n in nodes:
        spec = specs.get(n.group or "")
        if spec is None or n.site not in remote_sites or n.state.value != "running":
            continue
        try:
            index = int(n.labels.get("index", n.name.rsplit("-", 1)[-1]))
        except ValueError:
            index = 0
        out.append(BurstNode(n.name, n.group, n.site, index, spec.image, spec.cpus, spec.memory_mib, spec.size))
    return out


# ---------------------------------------------------------------- demand-driven groups
#
# A rule with `demand:` sizes its group from what a batch system waits for. The decision looks
# only at the command's reading, the group's nodes, the sites and the clock:
# - need: pending cores / the group's cores per node, rounded up;
# - nodes still starting, and idle nodes, take pending work first: only the rest is new;
# - idle nodes beyond that work and beyond `max_idle` are drained and deleted (scale-in);
# - the group's bounds (groups.G: {min, max}) clamp the target;
# - throttles: at most `max_starting_per_site` nodes starting on a site at once
#   (cloudscheduler), and a site where a node died within `early_death.within` of starting
#   gets no new node for `early_death.pause` (Vcycle's back-off);
# - new nodes are placed like a launch (local first, then the rule's order) on what is left.


@dataclass(frozen=True, slots=True)
class DemandReading:
    """What the demand command printed."""

    pending_cores: int
    idle_nodes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"pending_cores": self.pending_cores, "idle_nodes": list(self.idle_nodes)}


def parse_reading(text: str) -> DemandReading:
    """The command's stdout as a reading; ValueError with one line saying what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as e:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        raise ValueError(f"printed no JSON ({e.msg} at line {e.lineno} column {e.colno})"
                         + (f": {first!r}" if first else ": nothing")) from None
    if not isinstance(data, dict):
        raise ValueError(f'printed JSON {type(data).__name__}, not an object such as {{"pending_cores": 48}}')
    if "pending_cores" not in data:
        raise ValueError(f'printed no "pending_cores" (keys: {", ".join(map(str, data)) or "none"})')
    cores = data["pending_cores"]
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 0:
        raise ValueError(f'"pending_cores" must be a whole number >= 0, got {cores!r}')
    idle = data.get("idle_nodes", [])
    if not isinstance(idle, list) or not all(isinstance(n, str) for n in idle):
        raise ValueError('"idle_nodes" must be a list of node names')
    return DemandReading(cores, tuple(idle))


@dataclass(frozen=True, slots=True)
class GroupNode:
    """One node of the demand's group as the clouds list it."""

    name: str
    site: str
    state: str                  # NodeState value
    started_at: float | None = None   # epoch seconds
    index: int = 0


@dataclass(frozen=True, slots=True)
class Death:
    """A node that went away without skyctl deleting it (or went to error)."""

    site: str
    node: str
    at: float          # when it was seen gone
    lived_s: float     # how long after its creation


@dataclass(frozen=True, slots=True)
class DemandTick:
    rule: str
    group: str
    pending_cores: int
    cores_per_node: int
    current: int
    starting: int
    idle: int
    target: int
    grow: Mapping[str, int]          # site -> new nodes
    shrink: tuple[str, ...]          # idle nodes to drain and delete
    paused: Mapping[str, float]      # site -> seconds of back-off left
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "group": self.group, "pending_cores": self.pending_cores,
                "cores_per_node": self.cores_per_node, "current": self.current, "starting": self.starting,
                "idle": self.idle, "target": self.target, "grow": dict(self.grow), "shrink": list(self.shrink),
                "paused": {s: round(v) for s, v in self.paused.items()}, "reasons": list(self.reasons)}


def paused_sites(deaths: Sequence[Death], *, within_s: float, pause_s: float, now: float) -> dict[str, float]:
    """Sites in back-off: a node there died within `within_s` of starting, less than `pause_s`
    ago. Value: seconds of back-off left."""
    out: dict[str, float] = {}
    for d in deaths:
        if d.lived_s < within_s and now - d.at < pause_s:
            out[d.site] = max(out.get(d.site, 0.0), pause_s - (now - d.at))
    return out


def _throttled(site: SiteSnapshot, allowance: int | None, why: str) -> SiteSnapshot:
    """The snapshot with at most `allowance` more instances (None: as it is)."""
    if allowance is None:
        return site
    if allowance <= 0:
        return replace(site, full=why)
    cap = site.capacity or Capacity(Limit("instances", 0, None), Limit("cores", 0, None), Limit("ram_mib", 0, None))
    inst = cap.instances
    limit = inst.used + allowance if inst.limit is None else min(inst.limit, inst.used + allowance)
    return replace(site, capacity=replace(cap, instances=Limit("instances", inst.used, limit, why)))


def decide_demand(rule: Rule, reading: DemandReading, nodes: Sequence[GroupNode], sites: Sequence[SiteSnapshot], *,
                  cpus: int, memory_mib: int, image: str, size: str | None, deaths: Sequence[Death] = (),
                  now: float, catalog: Catalog = Catalog(), bounds: GroupBounds | None = None) -> DemandTick:
    """How big the demand's group should be now, where new nodes go and which idle ones leave."""
    policy = rule.demand
    assert policy is not None
    group = policy.group
    per_node = max(cpus, 1)
    need = -(-reading.pending_cores // per_node)
    live = [n for n in nodes if n.state in ("running", "pending")]
    starting = [n for n in live if n.state == "pending"]
    idle_names = set(reading.idle_nodes)
    idle = [n for n in live if n.state == "running" and n.name in idle_names]
    current = len(live)
    reasons = [f"{reading.pending_cores} pending core(s) / {per_node} per node = {need} node(s)"]
    if starting or idle:
        reasons.append(f"{len(starting)} starting and {len(idle)} idle node(s) take {min(need, len(starting) + len(idle))}")
    grow_by = max(0, need - len(starting) - len(idle))
    # Idle nodes the pending work will not use, beyond the idle ceiling, go.
    idle_needed = max(0, need - len(starting))
    surplus = max(0, len(idle) - idle_needed - policy.max_idle)
    if surplus:
        reasons.append(f"{surplus} idle node(s) above the ceiling of {policy.max_idle} leave")
    target = current + grow_by - surplus
    lo = bounds.min if bounds is not None else 0
    hi = bounds.max if bounds is not None else None
    if target < lo:
        reasons.append(f"the group's min is {lo}")
        target = lo
    if hi is not None and target > hi:
        reasons.append(f"the group's max is {hi}")
        target = hi
    paused = paused_sites(deaths, within_s=policy.died_within_s, pause_s=policy.pause_s, now=now)
    grow: dict[str, int] = {}
    shrink: tuple[str, ...] = ()
    if target > current:
        grow, why = _place_demand(rule, target - current, sites, starting, paused, group=group, cpus=per_node,
                                  memory_mib=memory_mib, image=image, size=size, now=now, catalog=catalog)
        reasons += why
    elif target < current:
        # Only idle nodes leave: dearest remote site first, then the newest.
        cost = {s.name: s.cost for s in sites}
        tier = {s.name: s.tier for s in sites}
        order = sorted(idle, key=lambda n: (tier.get(n.site) is not Tier.REMOTE, -cost.get(n.site, 0.0), -n.index, n.name))
        shrink = tuple(n.name for n in order[: current - target])
        if len(shrink) < current - target:
            reasons.append(f"{current - target} above target, but only idle nodes are removed ({len(shrink)} idle)")
    if not grow and not shrink:
        reasons.append(f"target {target}, {current} now: nothing to do" if target == current
                       else f"target {target}, {current} now")
    return DemandTick(rule.name, group, reading.pending_cores, per_node, current, len(starting), len(idle), target,
                      grow, shrink, paused, tuple(reasons))


def _place_demand(rule: Rule, count: int, sites: Sequence[SiteSnapshot], starting: Sequence[GroupNode],
                  paused: Mapping[str, float], *, group: str, cpus: int, memory_mib: int, image: str,
                  size: str | None, now: float, catalog: Catalog) -> tuple[dict[str, int], list[str]]:
    policy = rule.demand
    assert policy is not None
    on_site: dict[str, int] = {}
    for n in starting:
        on_site[n.site] = on_site.get(n.site, 0) + 1
    reasons: list[str] = []
    throttled = []
    for s in sites:
        if s.name in paused:
            throttled.append(_throttled(s, 0, f"back-off: a node died early here, {paused[s.name]:.0f}s left"))
            reasons.append(f"{s.name} paused for {paused[s.name]:.0f}s (a node died early)")
            continue
        cap = policy.max_starting_per_site
        allowance = None if cap is None else cap - on_site.get(s.name, 0)
        if allowance is not None and allowance <= 0:
            reasons.append(f"{s.name} has {on_site.get(s.name, 0)} node(s) starting (max_starting_per_site {cap})")
        throttled.append(_throttled(s, allowance, "max_starting_per_site"))
    plan = place(Request(group, count, cpus, memory_mib, image, size), throttled, [rule], catalog, at=now)
    grow = {d.site: d.count for d in plan.placements}
    placed = sum(grow.values())
    if placed:
        reasons.append(f"+{placed}: " + ", ".join(f"{s} {c}" for s, c in grow.items()))
    if placed < count:
        reasons.append(f"{count - placed} more not placed: {plan.unplaced_reason or 'no room'}")
    return grow, reasons
