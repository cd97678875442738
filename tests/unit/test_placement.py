"""Placement is pure: each case file gives sites + rules + a request and the expected plan."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.model import Capacity, Flavor, ImageRef, Limit, Resources, Tier
from skyctl.policy.energy import parse_energy
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, place
from skyctl.policy.rules import parse_rules

CASES = sorted((Path(__file__).parent / "placement_cases").glob("*.yaml"))
STOCK_FLAVORS = [["m1.small", 1, 2048], ["m1.medium", 2, 4096], ["m1.large", 4, 8192]]


def _site(d: dict[str, Any]) -> SiteSnapshot:
    if d.get("error"):
        return SiteSnapshot(d["name"], "x", Tier(d.get("tier", "remote")), error=d["error"])
    inst, cores = d.get("instances", [0, None]), d.get("cores", [0, None])
    cap = Capacity(Limit("instances", *inst), Limit("cores", *cores), Limit("ram_mib", 0, None))
    flavors = tuple(Flavor(f"f-{n}", n, c, m) for n, c, m in d.get("flavors", STOCK_FLAVORS))
    images = tuple(ImageRef(f"id-{i}", i) for i in d.get("images", ["alma9"]))
    energy = parse_energy(d["energy"], path=f"sites.{d['name']}", read_text=_no_files) if "energy" in d else None
    return SiteSnapshot(d["name"], "x", Tier(d.get("tier", "remote")), float(d.get("cost", 0)), cap,
                        flavors, images, energy=energy)


def _no_files(path: str) -> str:
    raise FileNotFoundError(path)


def _at(data: dict[str, Any]) -> float:
    """The case's clock (`at:`, ISO 8601), or the epoch when the case does not depend on it."""
    return datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp() if "at" in data else 0.0


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    sites = [_site(s) for s in data["sites"]]
    tiers = {s.name: s for s in sites}
    rules = parse_rules(data.get("rules"), sites=tiers) if data.get("rules") else []
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}},
                      sizes={"small": Resources(1, 2048), "medium": Resources(2, 4096), "large": Resources(4, 8192)})
    plan = place(Request(**data["request"]), sites, rules, catalog, at=_at(data))
    expect = data["expect"]
    assert {d.site: d.count for d in plan.placements} == expect["placed"]
    if "order" in expect:
        assert [d.site for d in plan.placements] == expect["order"]
    if "ranks" in expect:  # every candidate, chosen or not, in rank order
        assert [d.site for d in plan.decisions if d.footprint is not None] == expect["ranks"]
    figures = {d.site: d for d in plan.decisions}
    for key in ("cost", "kwh", "gco2"):
        for site, value in expect.get(key, {}).items():
            assert figures[site].to_json()[key] == pytest.approx(value), (site, key)
    for site, (cost, carbon, room, score) in expect.get("scaled", {}).items():
        scaled = figures[site].scaled
        assert scaled is not None
        got = (scaled.cost, scaled.carbon, scaled.free_room, scaled.score)
        assert got == pytest.approx((cost, carbon, room, score)), site
    reasons = {d.site: " ".join(r.text for r in d.reasons) for d in plan.decisions}
    for site, text in expect.get("reason_contains", {}).items():
        assert text in reasons[site], f"{site}: {reasons[site]}"
    codes = {d.site: [r.code for r in d.reasons] for d in plan.decisions}
    for site, code in expect.get("reason_code", {}).items():
        assert code in codes[site], f"{site}: {codes[site]}"
    for text in expect.get("unplaced_contains", []):
        assert plan.unplaced_reason and text in plan.unplaced_reason, plan.unplaced_reason
    # Every site is accounted for, with at least one reason.
    assert {d.site for d in plan.decisions} == {s.name for s in sites}
    assert all(d.reasons for d in plan.decisions)
    assert plan.placed + plan.unplaced == data["request"]["count"]


def test_plan_is_deterministic_whatever_the_input_order() -> None:
    data = yaml.safe_load(CASES[0].read_text())
    sites = [_site(s) for s in data["sites"]]
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}})
    a = place(Request(**data["request"]), sites, (), catalog)
    b = place(Request(**data["request"]), list(reversed(sites)), (), catalog)
    assert a.to_json() == b.to_json()


def test_smallest_fitting_flavor_is_chosen() -> None:
    site = _site({"name": "s", "instances": [0, 10], "cores": [0, 10]})
    plan = place(Request("g", 1, 2, 3000, "alma9"), [site], (), Catalog(images={"alma9": {"s": "alma9"}}))
    assert plan.placements[0].flavor is not None and plan.placements[0].flavor.name == "m1.medium"


def test_ten_thousand_nodes_over_fifty_sites_is_placed_fully() -> None:
    sites = [_site({"name": f"s{i:02d}", "tier": "local" if i == 0 else "remote", "cost": i % 5,
                    "instances": [0, 250], "cores": [0, 1000]}) for i in range(50)]
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}})
    t0 = time.perf_counter()
    plan = place(Request("big", 10_000, 1, 2048, "alma9", "small"), sites, (), catalog)
    elapsed = time.perf_counter() - t0
    assert plan.placed == 10_000 and plan.placements[0].site == "s00"
    print(f"plan 10k nodes / 50 sites: {elapsed * 1000:.1f} ms")
