"""Bursting rules: the declarative `bursting:` list of the federation file, as pydantic models.

Pure: pydantic, skyctl.model, skyctl.errors and skyctl.validation only (config.py calls
`parse_rules` at load time, after it has checked the rest of the file). Every problem is one
ConfigError naming its field path, e.g. `bursting[0].home.cooldown: must be a duration such
as 300s or 5m`. Nothing is evaluated: thresholds are numbers and percentages, never
expressions. The schema is documented in docs/bursting.md; placement reads the frozen
dataclasses below, never the models.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError, \
    ValidationInfo, model_validator

from skyctl.errors import ConfigError
from skyctl.model import Tier
from skyctl.validation import FieldProblem, first_problem

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class RuleOrder(str, enum.Enum):
    COST = "cost"          # cheapest for the expected run first, then most free room, then name
    LISTED = "listed"      # the order of the rule's `from` / `to` lists
    CARBON = "carbon"      # least gCO2 for the expected run first, then most free room, then name
    WEIGHTED = "weighted"  # least weighted sum of scaled cost, carbon and (lack of) free room


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each scaled term (0 = best candidate, 1 = worst) counts in `order: weighted`."""

    cost: float = 1.0
    carbon: float = 1.0
    free_room: float = 1.0

    def to_json(self) -> dict[str, float]:
        return {"cost": self.cost, "carbon": self.carbon, "free_room": self.free_room}


DEFAULT_DURATION_S = 3600.0  # how long placement expects new nodes to run, unless a rule says


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
class DemandPolicy:
    """A group sized by what a batch system waits for: `command` prints JSON such as
    {"pending_cores": 48, "idle_nodes": ["w-3"]}; the throttles come from cloudscheduler (nodes
    starting per site, a ceiling on idle nodes) and Vcycle (a site whose nodes die early is
    left alone for a while)."""

    command: tuple[str, ...]
    group: str
    every_s: float = 60.0
    timeout_s: float = 30.0
    max_starting_per_site: int | None = None   # None: no limit
    max_idle: int = 0                          # idle nodes kept beyond what pending work needs
    died_within_s: float = 600.0               # a node gone sooner than this "died early"...
    pause_s: float = 1800.0                    # ...and its site gets no new node for this long

    def to_json(self) -> dict[str, Any]:
        return {"command": list(self.command), "group": self.group, "every_s": self.every_s,
                "timeout_s": self.timeout_s, "max_starting_per_site": self.max_starting_per_site,
                "max_idle": self.max_idle, "early_death": {"within_s": self.died_within_s, "pause_s": self.pause_s}}


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """Run before skyctl deletes a node it scales in or moves home: argv with {node}, {site}
    and {group} replaced (never through a shell); exit 0 means drained."""

    command: tuple[str, ...]
    timeout_s: float = 600.0

    def argv(self, node: str, site: str, group: str) -> list[str]:
        return [a.replace("{node}", node).replace("{site}", site).replace("{group}", group) for a in self.command]

    def to_json(self) -> dict[str, Any]:
        return {"command": list(self.command), "timeout_s": self.timeout_s}


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
    weights: Weights = Weights()              # used by order: weighted
    expected_duration_s: float = DEFAULT_DURATION_S
    replicate: str = "never"   # "auto": copy an endorsed image to a target that lacks it, then place
    demand: DemandPolicy | None = None        # the group's size follows a demand command
    drain: DrainPolicy | None = None          # drain_command: before a node is deleted

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
            "weights": self.weights.to_json() if self.order is RuleOrder.WEIGHTED else None,
            "expected_duration_s": self.expected_duration_s,
            "replicate": self.replicate,
            "demand": self.demand.to_json() if self.demand else None,
            "drain": self.drain.to_json() if self.drain else None,
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
#
# The models check the shape of the file; each scalar type says what one value must be, in the
# words of docs/bursting.md. A model checks its keys before any value, pydantic checks values
# in field order, and the first problem it lists is the one reported: the order of the fields
# is the order of the checks.


def _as_float(number: int | float | str) -> float | None:
    try:
        return float(number)
    except OverflowError:  # an integer too large for a float
        return None


def _whole_number(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):  # YAML's yes/no are not counts
            raise ValueError(f"must be a whole number >= {minimum}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return value
    return check


def _seconds(value: Any) -> float:
    """300, '300s', '5m', '1h30m' -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _as_float(value)
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.fullmatch(text)
        if text and match:
            try:
                h, m, s = (int(g) if g else 0 for g in match.groups())
                return float(h * 3600 + m * 60 + s)
            except (ValueError, OverflowError):  # more digits than Python or a float will take
                pass
    raise ValueError("must be a duration such as 300s or 5m")


def parse_duration(value: Any) -> float:
    """300, '300s', '5m', '1h30m' -> seconds (ValueError with the house message otherwise)."""
    return _seconds(value)


def _fraction(value: Any) -> float:
    """'90%' or 90 -> 0.9. A bare fraction such as 0.9 is refused: it reads both ways."""
    message = "must be a percentage such as 90%"
    number: float | None = None
    if isinstance(value, str):
        match = _PERCENT_RE.fullmatch(value)
        number = float(match.group(1)) if match else None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 < value < 1:
            raise FieldProblem(message, hint=f"write {value * 100:g}% for a fraction")
        number = _as_float(value)
    if number is None or not math.isfinite(number) or not 0 < number <= 100:
        raise ValueError(message + " (more than 0, at most 100)")
    return number / 100.0


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError("must be a name of lowercase letters, digits and '-'")
    return value


def _rule_order(value: Any) -> RuleOrder:
    try:
        return RuleOrder(value)
    except (ValueError, TypeError):  # TypeError: a list or mapping cannot be looked up
        raise ValueError(f"must be one of: {', '.join(o.value for o in RuleOrder)}") from None


def _group_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("group names must be text")
    return value


def _sites_of(tier: Tier) -> Callable[[Any, ValidationInfo], tuple[str, ...]]:
    """Site names of one tier, from the `sites` mapping in the validation context."""
    role = "overflow starts from local sites" if tier is Tier.LOCAL else "overflow goes to remote sites"

    def check(value: Any, info: ValidationInfo) -> tuple[str, ...]:
        sites: Mapping[str, Any] = (info.context or {})["sites"]
        names = [value] if isinstance(value, str) else value  # one site needs no list
        if not isinstance(names, list) or not names:
            raise ValueError("must be a non-empty list of site names")
        out: list[str] = []
        for i, name in enumerate(names):
            if not isinstance(name, str) or name not in sites:
                raise FieldProblem(f"unknown site {name!r} (sites: {', '.join(sites) or 'none'})", below=(i,))
            site_tier = Tier(getattr(sites[name], "tier", Tier.REMOTE))
            if site_tier is not tier:
                raise FieldProblem(f"site {name!r} is tier {site_tier.value}; {role}", below=(i,),
                                   hint=f"set sites.{name}.tier: {tier.value} or move it to the other list")
            if name in out:
                raise FieldProblem(f"site {name!r} is listed twice", below=(i,))
            out.append(name)
        return tuple(out)
    return check


def _group_mapping(value: Any) -> Any:
    """A plain list of group names means those groups, without bounds."""
    if isinstance(value, list):
        for name in value:
            if not isinstance(name, str) or not name:  # also what could not be a mapping's key
                raise FieldProblem("group names must be text", below=(str(name),))
        value = dict.fromkeys(value)
    if value is not None and (not isinstance(value, Mapping) or not value):
        raise ValueError("must be a mapping of group name -> {min, max}")
    return value


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value  # `home:` with nothing under it: all defaults


_Count = Annotated[int, PlainValidator(_whole_number(0))]
_Defaults = BeforeValidator(_empty_if_none)


class _Spec(BaseModel):
    """A mapping of known keys: unknown keys are refused first, with the nearest known one as a
    hint, then missing ones; only then are the values checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _keys_first(cls, data: Any) -> Any:
        keys = [f.alias or name for name, f in cls.model_fields.items()]
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a mapping with keys {', '.join(keys)}")
        for key in data:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(keys)}"
                raise FieldProblem("unknown field", below=(str(key),), hint=hint)
        for name, f in cls.model_fields.items():
            if f.is_required() and (f.alias or name) not in data:
                raise FieldProblem("required field is missing", below=(f.alias or name,))
        cls._keys_together(data)
        return dict(data)

    @classmethod
    def _keys_together(cls, data: Mapping[str, Any]) -> None:
        """Which keys may be given together, checked before any value."""


class _OverflowSpec(_Spec):
    # Absent is None; an explicit null is refused like any other non-number.
    keep_free_cores: Annotated[int | None, PlainValidator(_whole_number(0))] = None
    max_utilisation: Annotated[float | None, PlainValidator(_fraction)] = None

    @classmethod
    def _keys_together(cls, data: Mapping[str, Any]) -> None:
        if len(data) > 1:
            raise ValueError("give one threshold: keep_free_cores or max_utilisation")

    def overflow(self) -> Overflow:
        return Overflow(keep_free_cores=self.keep_free_cores, max_utilisation=self.max_utilisation)


_HOME = HomePolicy()


class _HomeSpec(_Spec):
    hysteresis_cores: _Count = _HOME.hysteresis_cores
    when_free_cores: _Count = _HOME.when_free_cores
    cooldown: Annotated[float, PlainValidator(_seconds)] = _HOME.cooldown_s
    max_moves: Annotated[int, PlainValidator(_whole_number(1))] = _HOME.max_moves

    def policy(self) -> HomePolicy:
        return HomePolicy(hysteresis_cores=self.hysteresis_cores, when_free_cores=self.when_free_cores,
                          cooldown_s=self.cooldown, max_moves=self.max_moves)


class _BoundsSpec(_Spec):
    min: _Count = 0
    max: _Count | None = None

    @model_validator(mode="after")
    def _max_at_least_min(self) -> _BoundsSpec:
        if self.max is not None and self.max < self.min:
            raise FieldProblem(f"must be >= min ({self.min}), got {self.max}", below=("max",))
        return self

    def bounds(self) -> GroupBounds:
        return GroupBounds(min=self.min, max=self.max)


def _weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError("must be a number >= 0")
    return float(value)


def _replicate(value: Any) -> str:
    if value not in ("auto", "never"):
        raise ValueError("must be auto (copy an endorsed image to a target that lacks it) or never")
    return str(value)


def _positive_seconds(value: Any) -> float:
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError("must be a duration longer than 0s, such as 1h or 30m")
    return seconds


class _WeightsSpec(_Spec):
    cost: Annotated[float, PlainValidator(_weight)] = 0.0
    carbon: Annotated[float, PlainValidator(_weight)] = 0.0
    free_room: Annotated[float, PlainValidator(_weight)] = 0.0

    @model_validator(mode="after")
    def _some_weight(self) -> _WeightsSpec:
        if not (self.cost or self.carbon or self.free_room):
            raise ValueError("give at least one weight above 0 (cost, carbon, free_room)")
        return self

    def weights(self) -> Weights:
        return Weights(cost=self.cost, carbon=self.carbon, free_room=self.free_room)


def _command(value: Any) -> tuple[str, ...]:
    """A list of words, or one string split like a shell would (but never run by one)."""
    import shlex

    words: Any = value
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split the command: {e}") from None
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise ValueError("must be a command: a string or a non-empty list of words")
    return tuple(words)


class _EarlyDeathSpec(_Spec):
    within: Annotated[float, PlainValidator(_seconds)] = 600.0
    pause: Annotated[float, PlainValidator(_seconds)] = 1800.0


class _DemandSpec(_Spec):
    command: Annotated[tuple[str, ...], PlainValidator(_command)]
    group: Annotated[str | None, PlainValidator(_group_name)] = None
    every: Annotated[float, PlainValidator(_positive_seconds)] = 60.0
    timeout: Annotated[float, PlainValidator(_positive_seconds)] = 30.0
    max_starting_per_site: Annotated[int | None, PlainValidator(_whole_number(1))] = None
    max_idle: _Count = 0
    early_death: Annotated[_EarlyDeathSpec, _Defaults] = _EarlyDeathSpec()

    def policy(self, group: str) -> DemandPolicy:
        return DemandPolicy(command=self.command, group=group, every_s=self.every, timeout_s=self.timeout,
                            max_starting_per_site=self.max_starting_per_site, max_idle=self.max_idle,
                            died_within_s=self.early_death.within, pause_s=self.early_death.pause)


class _RuleSpec(_Spec):
    name: Annotated[str, PlainValidator(_rule_name)]
    from_: Annotated[tuple[str, ...], PlainValidator(_sites_of(Tier.LOCAL))] = Field(alias="from")
    to: Annotated[tuple[str, ...], PlainValidator(_sites_of(Tier.REMOTE))]
    order: Annotated[RuleOrder, PlainValidator(_rule_order)] = RuleOrder.COST
    overflow: Annotated[_OverflowSpec, _Defaults] = _OverflowSpec()
    home: Annotated[_HomeSpec | None, _Defaults] = None  # absent: burst load stays where it is
    groups: Annotated[dict[Annotated[str, PlainValidator(_group_name)], Annotated[_BoundsSpec, _Defaults]] | None,
                      BeforeValidator(_group_mapping)] = None
    weights: _WeightsSpec | None = None
    expected_duration: Annotated[float, PlainValidator(_positive_seconds)] = DEFAULT_DURATION_S
    replicate: Annotated[str, PlainValidator(_replicate)] = "never"
    demand: _DemandSpec | None = None
    drain_command: Annotated[tuple[str, ...] | None, PlainValidator(_command)] = None
    drain_timeout: Annotated[float, PlainValidator(_positive_seconds)] = 600.0

    @classmethod
    def _keys_together(cls, data: Mapping[str, Any]) -> None:
        if "weights" in data and data.get("order") != RuleOrder.WEIGHTED.value:
            raise FieldProblem("weights are read only with order: weighted", below=("weights",),
                               hint="set order: weighted, or remove weights")
        if "drain_timeout" in data and "drain_command" not in data:
            raise FieldProblem("drain_timeout is read only with a drain_command", below=("drain_timeout",))

    @model_validator(mode="after")
    def _demand_group(self) -> _RuleSpec:
        if self.demand is None:
            return self
        groups = list(self.groups or {})
        if self.demand.group is None and len(groups) != 1:
            raise FieldProblem("name the group the demand sizes", below=("demand", "group"),
                               hint="give demand.group, or list exactly one group under groups")
        if self.demand.group is not None and groups and self.demand.group not in groups:
            raise FieldProblem(f"group {self.demand.group!r} is not one of this rule's groups ({', '.join(groups)})",
                               below=("demand", "group"))
        return self

    def _demand(self) -> DemandPolicy | None:
        if self.demand is None:
            return None
        return self.demand.policy(self.demand.group or next(iter(self.groups or {})))

    def rule(self) -> Rule:
        return Rule(name=self.name, from_sites=self.from_, to_sites=self.to, order=self.order,
                    overflow=self.overflow.overflow(), home=self.home.policy() if self.home else None,
                    groups={g: b.bounds() for g, b in (self.groups or {}).items()},
                    weights=self.weights.weights() if self.weights else Weights(),
                    expected_duration_s=self.expected_duration, replicate=self.replicate, demand=self._demand(),
                    drain=DrainPolicy(self.drain_command, self.drain_timeout) if self.drain_command else None)


def parse_rules(raw: Any, *, sites: Mapping[str, Any], path: str = "bursting",
                source: str | None = None) -> list[Rule]:
    """Validate the `bursting:` list. `sites` maps site names to objects with a `.tier`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("must be a list of rules", path=path, source=source)
    rules: list[Rule] = []
    defined_at: dict[str, str] = {}
    for i, item in enumerate(raw):
        at = f"{path}[{i}]"
        try:
            spec = _RuleSpec.model_validate(item, context={"sites": sites})
        except ValidationError as e:
            problem = first_problem(e, at=at, brackets=True)
            raise ConfigError(problem.message, path=problem.path, source=source, hint=problem.hint) from None
        # Rules are read in file order: a repeated name is reported once its rule is valid.
        if spec.name in defined_at:
            raise ConfigError(f"rule {spec.name!r} is already defined at {defined_at[spec.name]}",
                              path=f"{at}.name", source=source)
        defined_at[spec.name] = at
        rules.append(spec.rule())
    return rules
