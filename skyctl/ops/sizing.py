"""How big a group is, how big it may be, and how many nodes a launch must create.

`launch GROUP --count N` makes the group N nodes: it creates only what is missing (a re-run
script never duplicates nodes); `--add` adds N on purpose. Either way the group must stay
within the size bounds its bursting rule gives it (`groups: {NAME: {min, max}}`), for every
path that adds nodes (launch, scale, Slurm resume). A move home replaces a node, so it never
changes the count.

The count is taken inside the group's lock (ops.launch holds it), so two launches of the same
group never both see room for the same node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skyctl.errors import DriverError, UsageError
from skyctl.model import Node, NodeState
from skyctl.ops.inventory import list_nodes
from skyctl.ops.sky import Sky
from skyctl.policy.rules import GroupBounds, group_bounds, rule_for

_GONE = (NodeState.DELETED, NodeState.ERROR)


@dataclass
class GroupSize:
    """The group's nodes as the clouds show them; nodes on sites that did not answer are
    counted from local state (`guessed`), so a site being down never makes room."""

    nodes: list[Node] = field(default_factory=list)       # every listed node (for index numbering)
    live: list[Node] = field(default_factory=list)        # the ones that count: not deleted, not in error
    guessed: list[str] = field(default_factory=list)      # names recorded on sites that did not answer
    errors: dict[str, DriverError] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.live) + len(self.guessed)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.live] + self.guessed


def group_size(sky: Sky, group: str) -> GroupSize:
    listing = list_nodes(sky, group=group)
    live = [n for n in listing.nodes if n.state not in _GONE]
    seen = {n.name for n in listing.nodes}
    guessed = sorted(r.name for r in sky.state.nodes(group)
                     if r.site in listing.errors and r.name not in seen)
    return GroupSize(listing.nodes, live, guessed, dict(listing.errors))


def bounds_of(sky: Sky, group: str) -> tuple[GroupBounds, str] | None:
    """The group's bounds and where they are written (`bursting[2].groups.web`)."""
    rules = sky.federation.rules
    rule = rule_for(rules, group)
    bounds = group_bounds(rules, group)
    if rule is None or bounds is None:
        return None
    return bounds, f"bursting[{list(rules).index(rule)}].groups.{group}"


def check_bounds(sky: Sky, group: str, *, has: int, after: int) -> None:
    """Refuse (exit 2) a change that would leave the group outside its bounds."""
    found = bounds_of(sky, group)
    if found is None:
        return
    b, where = found
    if b.max is not None and after > b.max:
        raise UsageError(f"group {group} may have at most {b.max} node(s) ({where}.max); it has {has}, "
                         f"and this would make {after}",
                         hint=f"ask for at most {b.max}, or raise {where}.max in the federation file")
    if after < b.min:
        raise UsageError(f"group {group} must have at least {b.min} node(s) ({where}.min); it has {has}, "
                         f"and this would leave {after}",
                         hint=f"ask for at least {b.min}, or lower {where}.min in the federation file")


def room(sky: Sky, group: str, has: int) -> int | None:
    """How many nodes the group may still gain (None: no maximum)."""
    found = bounds_of(sky, group)
    if found is None or found[0].max is None:
        return None
    return max(0, found[0].max - has)


def max_reason(sky: Sky, group: str) -> str:
    found = bounds_of(sky, group)
    assert found is not None and found[0].max is not None
    return f"group {group} is at its maximum of {found[0].max} node(s) ({found[1]}.max)"


def to_create(sky: Sky, group: str, count: int, *, add: bool, has: int) -> int:
    """How many nodes a launch creates: `count` more with `add`, else what the group lacks to
    reach `count`. Checks the bounds of the size it would end at."""
    want = count if add else max(0, count - has)
    if want:
        check_bounds(sky, group, has=has, after=has + want)
    return want
