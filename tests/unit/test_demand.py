"""Demand-driven groups are pure decisions: each case file gives a rule with `demand:`, the
command's reading, the group's nodes, early deaths and the sites, and the expected target,
new nodes per site, idle nodes that leave and reasons. The reading's parser says what is wrong
with a command's output in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.errors import ConfigError
from skyctl.model import Capacity, Flavor, ImageRef, Limit, Resources, Tier
from skyctl.policy.bursting import Death, DemandReading, GroupNode, decide_demand, parse_reading
from skyctl.policy.placement import Catalog, SiteSnapshot
from skyctl.policy.rules import parse_rules

CASES = sorted((Path(__file__).parent / "demand_cases").glob("*.yaml"))
FLAVORS = [["m1.small", 1, 2048], ["m1.medium", 2, 4096]]
SIZES = {"small": Resources(1, 2048), "medium": Resources(2, 4096)}
NOW = 1_000_000.0


def _site(d: dict[str, Any]) -> SiteSnapshot:
    inst, cores = d.get("instances", [0, None]), d.get("cores", [0, None])
    cap = Capacity(Limit("instances", *inst), Limit("cores", *cores), Limit("ram_mib", 0, None))
    return SiteSnapshot(d["name"], "x", Tier(d.get("tier", "remote")), float(d.get("cost", 0)), cap,
                        tuple(Flavor(f"f-{n}", n, c, m) for n, c, m in FLAVORS), (ImageRef("id-alma9", "alma9"),))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    sites = [_site(s) for s in data["sites"]]
    [rule] = parse_rules([data["rule"]], sites={s.name: s for s in sites})
    size = SIZES[data["size"]]
    nodes = [GroupNode(n["name"], n["site"], n["state"], NOW - 600, n.get("index", 0)) for n in data.get("nodes", [])]
    deaths = [Death(d["site"], d["node"], NOW - d["ago"], d["lived"]) for d in data.get("deaths", [])]
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}}, sizes=SIZES)
    assert rule.demand is not None
    tick = decide_demand(rule, DemandReading(**{k: tuple(v) if isinstance(v, list) else v
                                                for k, v in data["reading"].items()}),
                         nodes, sites, cpus=size.cpus, memory_mib=size.memory_mib, image="alma9", size=data["size"],
                         deaths=deaths, now=NOW, catalog=catalog, bounds=rule.groups.get(rule.demand.group))
    expect = data["expect"]
    assert tick.target == expect["target"], tick.reasons
    if "grow" in expect:
        assert dict(tick.grow) == expect["grow"], tick.reasons
    if "shrink" in expect:
        assert list(tick.shrink) == expect["shrink"], tick.reasons
    if "paused" in expect:
        assert {s: round(v) for s, v in tick.paused.items()} == expect["paused"]
    text = " | ".join(tick.reasons)
    for part in expect.get("reason_contains", []):
        assert part in text, text
    assert tick.to_json()["target"] == tick.target and tick.reasons


@pytest.mark.parametrize(("out", "message"), [
    ("", "printed no JSON (Expecting value at line 1 column 1): nothing"),
    ("48\n", 'printed JSON int, not an object such as {"pending_cores": 48}'),
    ("pending: 48", "printed no JSON (Expecting value at line 1 column 1): 'pending: 48'"),
    ('{"pending": 48}', 'printed no "pending_cores" (keys: pending)'),
    ('{"pending_cores": -1}', '"pending_cores" must be a whole number >= 0, got -1'),
    ('{"pending_cores": 4.5}', '"pending_cores" must be a whole number >= 0, got 4.5'),
    ('{"pending_cores": true}', '"pending_cores" must be a whole number >= 0, got True'),
    ('{"pending_cores": 4, "idle_nodes": "w-1"}', '"idle_nodes" must be a list of node names'),
])
def test_a_bad_reading_is_one_line_saying_what_is_wrong(out: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_reading(out)
    assert str(e.value) == message


def test_a_good_reading() -> None:
    assert parse_reading('{"pending_cores": 48, "idle_nodes": ["w-1"], "extra": 1}\n') == DemandReading(48, ("w-1",))


def _rules(rule: dict[str, Any]) -> Any:
    sites = {"home": SiteSnapshot("home", "x", Tier.LOCAL), "cc": SiteSnapshot("cc", "x", Tier.REMOTE)}
    return parse_rules([{"name": "b", "from": ["home"], "to": ["cc"], **rule}], sites=sites)


def test_demand_and_drain_fields_parse_with_defaults() -> None:
    [rule] = _rules({"groups": {"w": {"max": 8}}, "demand": {"command": "pending --json", "every": "30s"},
                     "drain_command": ["scontrol", "update", "nodename={node}", "state=drain"]})
    assert rule.demand is not None and rule.drain is not None
    assert rule.demand.command == ("pending", "--json") and rule.demand.group == "w" and rule.demand.every_s == 30
    assert (rule.demand.max_idle, rule.demand.died_within_s, rule.demand.pause_s) == (0, 600, 1800)
    assert rule.drain.argv("w-3", "cc", "w") == ["scontrol", "update", "nodename=w-3", "state=drain"]
    assert rule.to_json()["demand"]["command"] == ["pending", "--json"]


@pytest.mark.parametrize(("rule", "message"), [
    ({"groups": ["w"], "demand": {"command": ""}}, "bursting[0].demand.command: must be a command"),
    ({"groups": ["a", "b"], "demand": {"command": "x"}}, "bursting[0].demand.group: name the group the demand sizes"),
    ({"groups": ["a"], "demand": {"command": "x", "group": "z"}}, "bursting[0].demand.group: group 'z' is not one"),
    ({"groups": ["a"], "demand": {"comand": "x"}}, "bursting[0].demand.comand: unknown field"),
    ({"groups": ["a"], "demand": {"command": "x", "every": 0}}, "bursting[0].demand.every: must be a duration longer"),
    ({"groups": ["a"], "demand": {"command": "x", "max_starting_per_site": 0}},
     "bursting[0].demand.max_starting_per_site: must be >= 1"),
    ({"drain_timeout": "5m"}, "bursting[0].drain_timeout: drain_timeout is read only with a drain_command"),
    ({"drain_command": "x 'y"}, "bursting[0].drain_command: cannot split the command"),
])
def test_bad_demand_fields_name_their_path(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _rules(rule)
    assert message in str(e.value)
