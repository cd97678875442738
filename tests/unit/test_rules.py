"""Bursting rules: every bad input names its field path and says what is wrong, in the words
docs/bursting.md uses; good input becomes the frozen Rule dataclasses placement reads."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from skyctl.errors import ConfigError
from skyctl.model import Tier
from skyctl.policy.rules import (GroupBounds, HomePolicy, Overflow, Rule, RuleOrder, group_bounds, parse_rules,
                                 rule_for)

# Sites as parse_rules sees them: anything with a `.tier` (an enum or its text); none means remote.
SITES: dict[str, Any] = {"home": SimpleNamespace(tier=Tier.LOCAL), "lab": SimpleNamespace(tier="local"),
                         "cc": SimpleNamespace(tier=Tier.REMOTE), "sara": object()}
KNOWN = "home, lab, cc, sara"
RULE_SHAPE = "must be a mapping with keys name, from, to, order, overflow, home, groups, weights, expected_duration, replicate, demand, drain_command, drain_timeout"
RULE_KEYS = "known: name, from, to, order, overflow, home, groups, weights, expected_duration, replicate, demand, drain_command, drain_timeout"
SITE_LIST = "must be a non-empty list of site names"
DURATION = "must be a duration such as 300s or 5m"
PERCENT_RANGE = "must be a percentage such as 90% (more than 0, at most 100)"
GROUPS_SHAPE = "must be a mapping of group name -> {min, max}"


def R(**fields: Any) -> list[dict[str, Any]]:
    """A one-rule list that is valid apart from `fields`."""
    return [{"name": "r", "from": ["home"], "to": ["cc"], **fields}]


def drop(key: str, **fields: Any) -> list[dict[str, Any]]:
    rules = R(**fields)
    del rules[0][key]
    return rules


# (id, the `bursting:` value, the field path, the message, the hint)
BAD: list[tuple[str, Any, str, str, str | None]] = [
    ("not-a-list", 5,
     "bursting", "must be a list of rules", None),
    ("a-mapping", {"name": "r"},
     "bursting", "must be a list of rules", None),
    ("tuple", ("a",),
     "bursting", "must be a list of rules", None),
    ("rule-not-mapping", [5],
     "bursting[0]", RULE_SHAPE, None),
    ("rule-none", [None],
     "bursting[0]", RULE_SHAPE, None),
    ("rule-list", [["name"]],
     "bursting[0]", RULE_SHAPE, None),
    ("unknown-close", R(nmae="x"),
     "bursting[0].nmae", "unknown field", "did you mean 'name'?"),
    ("unknown-far", R(zzz=1),
     "bursting[0].zzz", "unknown field", RULE_KEYS),
    ("unknown-int-key", [{1: 2, "name": "r"}],
     "bursting[0].1", "unknown field", RULE_KEYS),
    ("unknown-before-missing", [{"frm": ["home"]}],
     "bursting[0].frm", "unknown field", "did you mean 'from'?"),
    ("unknown-before-bad-value", R(name="Bad", ovreflow={}),
     "bursting[0].ovreflow", "unknown field", "did you mean 'overflow'?"),
    ("missing-name", drop("name"),
     "bursting[0].name", "required field is missing", None),
    ("missing-from", drop("from"),
     "bursting[0].from", "required field is missing", None),
    ("missing-to", drop("to"),
     "bursting[0].to", "required field is missing", None),
    ("missing-from-before-bad-name", drop("from", name="Bad"),
     "bursting[0].from", "required field is missing", None),
    ("missing-all", [{}],
     "bursting[0].name", "required field is missing", None),
    ("name-upper", R(name="Web"),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("name-int", R(name=5),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("name-none", R(name=None),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("name-empty", R(name=""),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("name-long", R(name="a"*64),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("name-digit-start", R(name="1a"),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("from-empty", R(**{"from": []}),
     "bursting[0].from", SITE_LIST, None),
    ("from-int", R(**{"from": 5}),
     "bursting[0].from", SITE_LIST, None),
    ("from-dict", R(**{"from": {"home": 1}}),
     "bursting[0].from", SITE_LIST, None),
    ("from-none", R(**{"from": None}),
     "bursting[0].from", SITE_LIST, None),
    ("from-unknown", R(**{"from": ["home", "nope"]}),
     "bursting[0].from[1]", f"unknown site 'nope' (sites: {KNOWN})", None),
    ("from-unknown-int", R(**{"from": [3]}),
     "bursting[0].from[0]", f"unknown site 3 (sites: {KNOWN})", None),
    ("from-unknown-list", R(**{"from": [["home"]]}),
     "bursting[0].from[0]", f"unknown site ['home'] (sites: {KNOWN})", None),
    ("from-remote", R(**{"from": ["cc"]}),
     "bursting[0].from[0]", "site 'cc' is tier remote; overflow starts from local sites",
     "set sites.cc.tier: local or move it to the other list"),
    ("from-no-tier", R(**{"from": ["sara"]}),
     "bursting[0].from[0]", "site 'sara' is tier remote; overflow starts from local sites",
     "set sites.sara.tier: local or move it to the other list"),
    ("from-twice", R(**{"from": ["home", "lab", "home"]}),
     "bursting[0].from[2]", "site 'home' is listed twice", None),
    ("to-local", R(to=["cc", "lab"]),
     "bursting[0].to[1]", "site 'lab' is tier local; overflow goes to remote sites",
     "set sites.lab.tier: remote or move it to the other list"),
    ("to-twice", R(to=["cc", "cc"]),
     "bursting[0].to[1]", "site 'cc' is listed twice", None),
    ("to-empty-str", R(to=""),
     "bursting[0].to[0]", f"unknown site '' (sites: {KNOWN})", None),
    ("from-before-to", R(**{"from": ["x"]}, to=["y"]),
     "bursting[0].from[0]", f"unknown site 'x' (sites: {KNOWN})", None),
    ("name-before-from", R(name="X", **{"from": ["x"]}),
     "bursting[0].name", "must be a name of lowercase letters, digits and '-'", None),
    ("order-bad", R(order="cheap"),
     "bursting[0].order", "must be one of: cost, listed, carbon, weighted", None),
    ("order-none", R(order=None),
     "bursting[0].order", "must be one of: cost, listed, carbon, weighted", None),
    ("order-list", R(order=["cost"]),
     "bursting[0].order", "must be one of: cost, listed, carbon, weighted", None),
    ("order-int", R(order=1),
     "bursting[0].order", "must be one of: cost, listed, carbon, weighted", None),
    ("overflow-list", R(overflow=[1]),
     "bursting[0].overflow", "must be a mapping with keys keep_free_cores, max_utilisation", None),
    ("overflow-str", R(overflow="4"),
     "bursting[0].overflow", "must be a mapping with keys keep_free_cores, max_utilisation", None),
    ("overflow-unknown", R(overflow={"keep_free": 2}),
     "bursting[0].overflow.keep_free", "unknown field", "did you mean 'keep_free_cores'?"),
    ("overflow-unknown-far", R(overflow={"zz": 2}),
     "bursting[0].overflow.zz", "unknown field", "known: keep_free_cores, max_utilisation"),
    ("overflow-two", R(overflow={"keep_free_cores": -1, "max_utilisation": 0.5}),
     "bursting[0].overflow", "give one threshold: keep_free_cores or max_utilisation", None),
    ("overflow-unknown-before-two", R(overflow={"keep_free_cores": 1, "max_utilisation": 2, "x": 1}),
     "bursting[0].overflow.x", "unknown field", "known: keep_free_cores, max_utilisation"),
    ("kfc-bool", R(overflow={"keep_free_cores": True}),
     "bursting[0].overflow.keep_free_cores", "must be a whole number >= 0", None),
    ("kfc-float", R(overflow={"keep_free_cores": 2.0}),
     "bursting[0].overflow.keep_free_cores", "must be a whole number >= 0", None),
    ("kfc-str", R(overflow={"keep_free_cores": "2"}),
     "bursting[0].overflow.keep_free_cores", "must be a whole number >= 0", None),
    ("kfc-neg", R(overflow={"keep_free_cores": -1}),
     "bursting[0].overflow.keep_free_cores", "must be >= 0, got -1", None),
    ("kfc-none", R(overflow={"keep_free_cores": None}),
     "bursting[0].overflow.keep_free_cores", "must be a whole number >= 0", None),
    ("mu-fraction", R(overflow={"max_utilisation": 0.9}),
     "bursting[0].overflow.max_utilisation", "must be a percentage such as 90%", "write 90% for a fraction"),
    ("mu-fraction-small", R(overflow={"max_utilisation": 0.005}),
     "bursting[0].overflow.max_utilisation", "must be a percentage such as 90%", "write 0.5% for a fraction"),
    ("mu-zero", R(overflow={"max_utilisation": 0}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-over", R(overflow={"max_utilisation": 101}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-str-over", R(overflow={"max_utilisation": "150%"}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-no-sign", R(overflow={"max_utilisation": "90"}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-str-fraction", R(overflow={"max_utilisation": "0.9"}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-bool", R(overflow={"max_utilisation": True}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-none", R(overflow={"max_utilisation": None}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-neg", R(overflow={"max_utilisation": -5}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-nan", R(overflow={"max_utilisation": float("nan")}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-inf", R(overflow={"max_utilisation": float("inf")}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-list", R(overflow={"max_utilisation": [90]}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("mu-zero-pct", R(overflow={"max_utilisation": "0%"}),
     "bursting[0].overflow.max_utilisation", PERCENT_RANGE, None),
    ("home-list", R(home=[]),
     "bursting[0].home", "must be a mapping with keys hysteresis_cores, when_free_cores, cooldown, max_moves", None),
    ("home-str", R(home="yes"),
     "bursting[0].home", "must be a mapping with keys hysteresis_cores, when_free_cores, cooldown, max_moves", None),
    ("home-unknown", R(home={"cooldwn": "5m"}),
     "bursting[0].home.cooldwn", "unknown field", "did you mean 'cooldown'?"),
    ("home-unknown-far", R(home={"qq": 1}),
     "bursting[0].home.qq", "unknown field", "known: hysteresis_cores, when_free_cores, cooldown, max_moves"),
    ("hyst-neg", R(home={"hysteresis_cores": -2}),
     "bursting[0].home.hysteresis_cores", "must be >= 0, got -2", None),
    ("hyst-bool", R(home={"hysteresis_cores": False}),
     "bursting[0].home.hysteresis_cores", "must be a whole number >= 0", None),
    ("hyst-none", R(home={"hysteresis_cores": None}),
     "bursting[0].home.hysteresis_cores", "must be a whole number >= 0", None),
    ("wfc-float", R(home={"when_free_cores": 1.5}),
     "bursting[0].home.when_free_cores", "must be a whole number >= 0", None),
    ("max-moves-zero", R(home={"max_moves": 0}),
     "bursting[0].home.max_moves", "must be >= 1, got 0", None),
    ("max-moves-str", R(home={"max_moves": "1"}),
     "bursting[0].home.max_moves", "must be a whole number >= 1", None),
    ("max-moves-bool", R(home={"max_moves": True}),
     "bursting[0].home.max_moves", "must be a whole number >= 1", None),
    ("cooldown-word", R(home={"cooldown": "soon"}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-neg", R(home={"cooldown": -1}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-bool", R(home={"cooldown": True}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-none", R(home={"cooldown": None}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-empty", R(home={"cooldown": ""}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-blank", R(home={"cooldown": "  "}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-bare-str", R(home={"cooldown": "300"}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-nan", R(home={"cooldown": float("nan")}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-inf", R(home={"cooldown": float("inf")}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-order", R(home={"cooldown": "5m1h"}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-space", R(home={"cooldown": "1h 30m"}),
     "bursting[0].home.cooldown", DURATION, None),
    ("cooldown-list", R(home={"cooldown": ["5m"]}),
     "bursting[0].home.cooldown", DURATION, None),
    ("home-order-of-checks", R(home={"max_moves": 0, "cooldown": "x", "when_free_cores": -1, "hysteresis_cores": -1}),
     "bursting[0].home.hysteresis_cores", "must be >= 0, got -1", None),
    ("home-cooldown-before-moves", R(home={"max_moves": 0, "cooldown": "x"}),
     "bursting[0].home.cooldown", DURATION, None),
    ("groups-empty-list", R(groups=[]),
     "bursting[0].groups", GROUPS_SHAPE, None),
    ("groups-empty-map", R(groups={}),
     "bursting[0].groups", GROUPS_SHAPE, None),
    ("groups-str", R(groups="web"),
     "bursting[0].groups", GROUPS_SHAPE, None),
    ("groups-int", R(groups=3),
     "bursting[0].groups", GROUPS_SHAPE, None),
    ("groups-int-name", R(groups=["web", 1]),
     "bursting[0].groups.1", "group names must be text", None),
    ("groups-int-key", R(groups={1: None}),
     "bursting[0].groups.1", "group names must be text", None),
    ("groups-empty-name", R(groups=[""]),
     "bursting[0].groups.", "group names must be text", None),
    ("groups-none-key", R(groups={None: {"min": 1}}),
     "bursting[0].groups.None", "group names must be text", None),
    ("bounds-list", R(groups={"web": [1]}),
     "bursting[0].groups.web", "must be a mapping with keys min, max", None),
    ("bounds-str", R(groups={"web": "1-3"}),
     "bursting[0].groups.web", "must be a mapping with keys min, max", None),
    ("bounds-unknown", R(groups={"web": {"mx": 3}}),
     "bursting[0].groups.web.mx", "unknown field", "did you mean 'max'?"),
    ("bounds-unknown-far", R(groups={"web": {"q": 3}}),
     "bursting[0].groups.web.q", "unknown field", "known: min, max"),
    ("min-neg", R(groups={"web": {"min": -1}}),
     "bursting[0].groups.web.min", "must be >= 0, got -1", None),
    ("min-none", R(groups={"web": {"min": None}}),
     "bursting[0].groups.web.min", "must be a whole number >= 0", None),
    ("min-bool", R(groups={"web": {"min": True}}),
     "bursting[0].groups.web.min", "must be a whole number >= 0", None),
    ("max-float", R(groups={"web": {"max": 2.5}}),
     "bursting[0].groups.web.max", "must be a whole number >= 0", None),
    ("max-neg", R(groups={"web": {"max": -3}}),
     "bursting[0].groups.web.max", "must be >= 0, got -3", None),
    ("max-lt-min", R(groups={"web": {"min": 5, "max": 2}}),
     "bursting[0].groups.web.max", "must be >= min (5), got 2", None),
    ("max-lt-default-min", R(groups={"a": {"max": 0}, "b": {"min": 3, "max": 1}}),
     "bursting[0].groups.b.max", "must be >= min (3), got 1", None),
    ("bad-group-after-good", R(groups={"a": {"min": 1, "max": 2}, "b": {"min": -1}}),
     "bursting[0].groups.b.min", "must be >= 0, got -1", None),
    ("bounds-before-next-name", R(groups={"a": {"min": -1}, 2: None}),
     "bursting[0].groups.a.min", "must be >= 0, got -1", None),
    ("dup-name", [R()[0], R(to="cc")[0]],
     "bursting[1].name", "rule 'r' is already defined at bursting[0]", None),
    ("dup-third", [R(name="a")[0], R(name="b")[0], R(name="a")[0]],
     "bursting[2].name", "rule 'a' is already defined at bursting[0]", None),
    ("dup-after-bad-rule", [R()[0], R(name="r", to=["zz"])[0]],
     "bursting[1].to[0]", f"unknown site 'zz' (sites: {KNOWN})", None),
    ("dup-before-later-bad", [R()[0], R()[0], {"x": 1}],
     "bursting[1].name", "rule 'r' is already defined at bursting[0]", None),
    ("second-rule-bad", [R()[0], R(name="s", order="x")[0]],
     "bursting[1].order", "must be one of: cost, listed, carbon, weighted", None),
]


@pytest.mark.parametrize(("raw", "path", "message", "hint"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_rules_name_the_field_and_the_problem(raw: Any, path: str, message: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(raw, sites=SITES, source="sky.yaml")
    err = info.value
    assert (err.path, str(err), err.hint) == (path, f"sky.yaml: {path}: {message}", hint)
    assert err.source == "sky.yaml"


def test_the_path_prefix_and_source_are_the_callers() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(R(order="x"), sites=SITES, path="rules")
    assert (info.value.path, str(info.value), info.value.source) ==\
        ("rules[0].order", "rules[0].order: must be one of: cost, listed, carbon, weighted", None)


def test_nothing_is_no_rules() -> None:
    assert parse_rules(None, sites=SITES) == []
    assert parse_rules([], sites=SITES) == []


def test_a_full_rule() -> None:
    raw = [{"name": "overflow-home", "from": ["home", "lab"], "to": ["cc", "sara"], "order": "listed",
            "overflow": {"keep_free_cores": 4},
            "home": {"when_free_cores": 2, "hysteresis_cores": 1, "cooldown": "1h30m", "max_moves": 3},
            "groups": {"workers": {"min": 1, "max": 40}, "db": None, "web": {"max": None}}}]
    (rule,) = parse_rules(raw, sites=SITES)
    assert rule == Rule(name="overflow-home", from_sites=("home", "lab"), to_sites=("cc", "sara"),
                        order=RuleOrder.LISTED, overflow=Overflow(keep_free_cores=4),
                        home=HomePolicy(hysteresis_cores=1, when_free_cores=2, cooldown_s=5400.0, max_moves=3),
                        groups={"workers": GroupBounds(1, 40), "db": GroupBounds(), "web": GroupBounds()})
    assert list(rule.groups) == ["workers", "db", "web"]


def test_defaults_and_shorthands() -> None:
    (rule,) = parse_rules([{"name": "r", "from": "home", "to": "cc"}], sites=SITES)
    assert rule == Rule(name="r", from_sites=("home",), to_sites=("cc",))
    assert rule.home is None and rule.overflow == Overflow() and rule.groups == {}
    (rule,) = parse_rules(R(overflow=None, home=None, groups=None), sites=SITES)
    assert rule.overflow == Overflow() and rule.home == HomePolicy() and rule.groups == {}
    (rule,) = parse_rules(R(overflow={}, home={}, groups=["web", "db", "web"]), sites=SITES)
    assert rule.overflow == Overflow() and rule.home == HomePolicy()
    assert rule.groups == {"web": GroupBounds(), "db": GroupBounds()}


@pytest.mark.parametrize(("value", "fraction"), [("90%", 0.9), (" 50 % ", 0.5), (90, 0.9), (100, 1.0), (1, 0.01),
                                                 ("0.5%", 0.005), (12.5, 0.125)])
def test_percentages(value: Any, fraction: float) -> None:
    (rule,) = parse_rules(R(overflow={"max_utilisation": value}), sites=SITES)
    assert rule.overflow == Overflow(max_utilisation=fraction)


@pytest.mark.parametrize(("value", "seconds"), [(300, 300.0), (0, 0.0), (2.5, 2.5), ("300s", 300.0), ("5m", 300.0),
                                                ("1h30m", 5400.0), ("1h", 3600.0), ("2m5s", 125.0), (" 1h ", 3600.0)])
def test_durations(value: Any, seconds: float) -> None:
    (rule,) = parse_rules(R(home={"cooldown": value}), sites=SITES)
    assert rule.home is not None and rule.home.cooldown_s == seconds
    assert isinstance(rule.home.cooldown_s, float)


def test_several_rules_keep_file_order_and_the_first_covering_rule_governs() -> None:
    rules = parse_rules([{"name": "web-only", "from": "home", "to": "cc", "groups": {"web": {"min": 1, "max": 3}}},
                         {"name": "all", "from": "lab", "to": ["sara"]}], sites=SITES)
    assert [r.name for r in rules] == ["web-only", "all"]
    assert rule_for(rules, "web") is rules[0] and rule_for(rules, "db") is rules[1]
    assert group_bounds(rules, "web") == GroupBounds(1, 3)
    assert group_bounds(rules, "db") is None
    assert rule_for([], "web") is None


# The hand validator crashed on these (a number too large for a float, a mapping as a group name).
@pytest.mark.parametrize(("fields", "path", "message"), [
    ({"home": {"cooldown": 10**400}}, "bursting[0].home.cooldown", DURATION),
    ({"home": {"cooldown": "9" * 5000 + "s"}}, "bursting[0].home.cooldown", DURATION),
    ({"overflow": {"max_utilisation": 10**400}}, "bursting[0].overflow.max_utilisation", PERCENT_RANGE),
    ({"groups": ["web", {"db": 1}]}, "bursting[0].groups.{'db': 1}", "group names must be text"),
], ids=["huge-cooldown", "long-cooldown", "huge-percentage", "mapping-as-group-name"])
def test_inputs_that_once_crashed_are_config_errors(fields: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(R(**fields), sites=SITES)
    assert (info.value.path, str(info.value)) == (path, f"{path}: {message}")


def test_field_paths_read_like_the_file() -> None:
    from skyctl.validation import field_path

    loc = ("groups", "web", "min")
    assert field_path(loc, at="bursting[0]", brackets=True) == "bursting[0].groups.web.min"
    assert field_path(("from", 1), at="bursting[2]", brackets=True) == "bursting[2].from[1]"
    # a bad dict key is named, not indexed, even when it is a number
    assert field_path(("groups", 1, "[key]"), at="bursting[0]", brackets=True) == "bursting[0].groups.1"
    # the federation file's own errors keep their dotted form
    assert field_path(("bursting", 0)) == "bursting.0"
    assert field_path(("sites", 1, "[key]")) == "sites.1.[key]"
