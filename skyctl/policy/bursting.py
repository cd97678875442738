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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skyctl.model import Capacity, GroupSpec, Node, Tier
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, consume, pick_flavor, pick_image, room_on
from skyctl.policy.rules import Rule


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
        flavor, why2 = pick_flavor(req, site, catalog) if image else (None, why)
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
