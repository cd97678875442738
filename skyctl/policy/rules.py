"""Bursting rules: the declarative `bursting:` list of the federation file, validated by hand.

Pure: standard library, skyctl.model and skyctl.errors only (config.py calls `parse_rules`
at load time, after pydantic has checked the rest of the file). Every problem is one
ConfigError naming its field path, e.g. `bursting[0].home.cooldown: must be a duration such
as 300s or 5m`. Nothing is evaluated: thresholds are numbers and percentages, never
expressions. The schema is documented in docs/bursting.md.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import ConfigError
from skyctl.model import Tier

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class RuleOrder(str, enum.Enum):
    COST = "cost"      # cheapest first, then most free room, then name
    LISTED = "listed"  # the order of the rule's `from` / `to` lists


@dataclass(frozen=True, slots=True)
class Overflow:
    """How full a local site may get before new load overflows to remote sites.

    At most one of the two is set; neither means "fill the local site completely".
    """

    keep_free_cores: int | None = None
    max_utilisation: float | None = None  # a fraction in (0, 1]

    def describe(self) -> str:
        if self.keep_free_cores is not None:
            return f"keep {self.keep_free_cores} cores free"
        if self.max_utilisation is not None:
            return f"at most {_pct(self.max_utilisation)} utilised"
        return "fill completely"

    def to_json(self) -> dict[str, Any]:
        return {"keep_free_cores": self.keep_free_cores, "max_utilisation": self.max_utilisation}


@dataclass(frozen=True, slots=True)
class HomePolicy:
    """When burst nodes move back to the local sites (make-before-break is done by ops)."""

    hysteresis_cores: int = 0   # room that must remain under the overflow line after a move
    when_free_cores: int = 0    # do not start moving until a local site has this many free cores
    cooldown_s: float = 300.0   # seconds between two ticks that moved something
    max_moves: int = 1          # moves per tick

    def to_json(self) -> dict[str, Any]:
        return {"hysteresis_cores": self.hysteresis_cores, "when_free_cores": self.when_free_cores,
                "cooldown_s": self.cooldown_s, "max_moves": self.max_moves}


@dataclass(frozen=True, slots=True)
class GroupBounds:
    min: int = 0
    max: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    from_sites: tuple[str, ...]
    to_sites: tuple[str, ...]
    order: RuleOrder = RuleOrder.COST
    overflow: Overflow = Overflow()
    home: HomePolicy | None = None  # None: burst load stays where it is
    # Empty: the rule covers every group. Otherwise only these, with their size bounds.
    groups: Mapping[str, GroupBounds] = field(default_factory=dict)

    def applies_to(self, group: str) -> bool:
        return not self.groups or group in self.groups

    def sites(self) -> tuple[str, ...]:
        return self.from_sites + self.to_sites

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": list(self.from_sites),
            "to": list(self.to_sites),
            "order": self.order.value,
            "overflow": self.overflow.to_json(),
            "home": self.home.to_json() if self.home else None,
            "groups": {g: b.to_json() for g, b in self.groups.items()},
        }


def rule_for(rules: Sequence[Rule], group: str) -> Rule | None:
    """The rule governing a group: the first, in file order, that covers it."""
    for rule in rules:
        if rule.applies_to(group):
            return rule
    return None


def group_bounds(rules: Sequence[Rule], group: str) -> GroupBounds | None:
    """Size bounds of a group, from the rule that governs it (None: unbounded)."""
    rule = rule_for(rules, group)
    return rule.groups.get(group) if rule else None


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


# ---------------------------------------------------------------- parsing


class _Ctx:
    """Carries the file name so each error only has to say where and what."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, path: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=path, source=self.source, hint=hint)

    def mapping(self, value: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping with keys {', '.join(allowed)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(allowed)}"
                raise self.fail(f"{path}.{key}", "unknown field", hint)
        return value

    def integer(self, value: Any, path: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be a whole number >= {minimum}")
        if value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def duration(self, value: Any, path: str) -> float:
        """300, '300s', '5m', '1h30m' -> seconds."""
        msg = "must be a duration such as 300s or 5m"
        if isinstance(value, bool):
            raise self.fail(path, msg)
        if isinstance(value, (int, float)):
            if not math.isfinite(value) or value < 0:
                raise self.fail(path, msg)
            return float(value)
        if isinstance(value, str):
            text = value.strip()
            m = _DURATION_RE.match(text)
            if text and m:
                h, mi, s = (int(g) if g else 0 for g in m.groups())
                return float(h * 3600 + mi * 60 + s)
        raise self.fail(path, msg)

    def percentage(self, value: Any, path: str) -> float:
        """'90%' or 90 -> 0.9. A bare fraction such as 0.9 is refused: it reads both ways."""
        msg = "must be a percentage such as 90%"
        number: float | None = None
        if isinstance(value, str):
            m = _PERCENT_RE.match(value)
            number = float(m.group(1)) if m else None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if 0 < value < 1:
                raise self.fail(path, msg, hint=f"write {value * 100:g}% for a fraction")
            number = float(value)
        if number is None or not math.isfinite(number) or not 0 < number <= 100:
            raise self.fail(path, msg + " (more than 0, at most 100)")
        return number / 100.0

    def site_list(self, value: Any, path: str, sites: Mapping[str, Any], tier: Tier) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(path, "must be a non-empty list of site names")
        out: list[str] = []
        for i, name in enumerate(value):
            p = f"{path}[{i}]"
            if not isinstance(name, str) or name not in sites:
                known = ", ".join(sites) or "none"
                raise self.fail(p, f"unknown site {name!r} (sites: {known})")
            site_tier = Tier(getattr(sites[name], "tier", Tier.REMOTE))
            if site_tier is not tier:
                role = "overflow starts from local sites" if tier is Tier.LOCAL \
                    else "overflow goes to remote sites"
                raise self.fail(p, f"site {name!r} is tier {site_tier.value}; {role}",
                                hint=f"set sites.{name}.tier: {tier.value} or move it to the other list")
            if name in out:
                raise self.fail(p, f"site {name!r} is listed twice")
            out.append(name)
        return tuple(out)


_RULE_KEYS = ("name", "from", "to", "order", "overflow", "home", "groups")
_OVERFLOW_KEYS = ("keep_free_cores", "max_utilisation")
_HOME_KEYS = ("hysteresis_cores", "when_free_cores", "cooldown", "max_moves")
_GROUP_KEYS = ("min", "max")


def parse_rules(raw: Any, *, sites: Mapping[str, Any], path: str = "bursting",
                source: str | None = None) -> list[Rule]:
    """Validate the `bursting:` list. `sites` maps site names to objects with a `.tier`."""
    ctx = _Ctx(source)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ctx.fail(path, "must be a list of rules")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        rule = _parse_rule(ctx, item, f"{path}[{i}]", sites)
        if rule.name in seen:
            raise ctx.fail(f"{path}[{i}].name", f"rule {rule.name!r} is already defined at {path}[{seen[rule.name]}]")
        seen[rule.name] = i
        rules.append(rule)
    return rules


def _parse_rule(ctx: _Ctx, item: Any, path: str, sites: Mapping[str, Any]) -> Rule:
    data = ctx.mapping(item, path, _RULE_KEYS)
    for key in ("name", "from", "to"):
        if key not in data:
            raise ctx.fail(f"{path}.{key}", "required field is missing")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ctx.fail(f"{path}.name", "must be a name of lowercase letters, digits and '-'")
    from_sites = ctx.site_list(data["from"], f"{path}.from", sites, Tier.LOCAL)
    to_sites = ctx.site_list(data["to"], f"{path}.to", sites, Tier.REMOTE)

    order_raw = data.get("order", RuleOrder.COST.value)
    try:
        order = RuleOrder(order_raw)
    except ValueError:
        raise ctx.fail(f"{path}.order", "must be one of: cost, listed") from None

    overflow = Overflow()
    if data.get("overflow") is not None:
        o = ctx.mapping(data["overflow"], f"{path}.overflow", _OVERFLOW_KEYS)
        if len(o) > 1:
            raise ctx.fail(f"{path}.overflow", "give one threshold: keep_free_cores or max_utilisation")
        if "keep_free_cores" in o:
            overflow = Overflow(keep_free_cores=ctx.integer(o["keep_free_cores"], f"{path}.overflow.keep_free_cores"))
        elif "max_utilisation" in o:
            overflow = Overflow(max_utilisation=ctx.percentage(o["max_utilisation"], f"{path}.overflow.max_utilisation"))

    home: HomePolicy | None = None
    if "home" in data:
        h = ctx.mapping(data["home"] if data["home"] is not None else {}, f"{path}.home", _HOME_KEYS)
        defaults = HomePolicy()
        home = HomePolicy(
            hysteresis_cores=ctx.integer(h.get("hysteresis_cores", defaults.hysteresis_cores),
                                         f"{path}.home.hysteresis_cores"),
            when_free_cores=ctx.integer(h.get("when_free_cores", defaults.when_free_cores),
                                        f"{path}.home.when_free_cores"),
            cooldown_s=ctx.duration(h.get("cooldown", defaults.cooldown_s), f"{path}.home.cooldown"),
            max_moves=ctx.integer(h.get("max_moves", defaults.max_moves), f"{path}.home.max_moves", minimum=1),
        )

    groups: dict[str, GroupBounds] = {}
    if data.get("groups") is not None:
        g_raw = data["groups"]
        if isinstance(g_raw, list):  # a plain list of group names: no bounds
            g_raw = {g: None for g in g_raw}
        if not isinstance(g_raw, Mapping) or not g_raw:
            raise ctx.fail(f"{path}.groups", "must be a mapping of group name -> {min, max}")
        for gname, bounds in g_raw.items():
            gp = f"{path}.groups.{gname}"
            if not isinstance(gname, str) or not gname:
                raise ctx.fail(gp, "group names must be text")
            b = ctx.mapping(bounds if bounds is not None else {}, gp, _GROUP_KEYS)
            lo = ctx.integer(b.get("min", 0), f"{gp}.min")
            hi = ctx.integer(b["max"], f"{gp}.max") if b.get("max") is not None else None
            if hi is not None and hi < lo:
                raise ctx.fail(f"{gp}.max", f"must be >= min ({lo}), got {hi}")
            groups[gname] = GroupBounds(lo, hi)

    return Rule(name=name, from_sites=from_sites, to_sites=to_sites, order=order,
                overflow=overflow, home=home, groups=groups)
