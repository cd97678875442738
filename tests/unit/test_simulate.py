"""burst simulate: a small trace computed by hand, traces read from CSV and SWF, and a seeded
generator that gives the same trace for the same seed."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from skyctl.model import Tier
from skyctl.policy.energy import parse_energy
from skyctl.policy.rules import parse_rules
from skyctl.policy.simulate import Settings, SimSite, percentile, simulate
from skyctl.policy.traces import parse_csv_trace, parse_swf, synthetic

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()

# Minutes from the start, group, nodes, duration (s). One vCPU per node, 60 s boots.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
HAND_TRACE = (FIXTURES / "hand.csv").read_text()  # worked out by hand in test_a_hand_computed_trace


def _energy(**fields: Any) -> Any:
    return parse_energy(fields, path="sites.x", read_text=lambda p: "")


def hand_sites() -> list[SimSite]:
    # Per node-hour: home 0.02, 0.01 kWh, 1 g; cloud 0.06, 0.015 kWh (pue 1.5), 4.5 g.
    return [SimSite("home", Tier.LOCAL, 4, energy=_energy(watts_per_vcpu=10, carbon=100,
                                                          price={"per_core_hour": 0.02})),
            SimSite("cloud", Tier.REMOTE, 8, energy=_energy(watts_per_vcpu=10, pue=1.5, carbon=300,
                                                            price={"per_core_hour": 0.06}))]


def hand_rules() -> list[Any]:
    sites = {"home": SimSite("home", Tier.LOCAL, 4), "cloud": SimSite("cloud", Tier.REMOTE, 8)}
    return parse_rules([{"name": "r", "from": ["home"], "to": ["cloud"], "home": {"cooldown": "0s"}}],
                       sites=sites)


def test_a_hand_computed_trace() -> None:
    """Worked by hand, in minutes (boot 1, tick 1):
    0  J1 (2) and J2 (2) fill home (4 cores); ready at 1.
    5  J3 (3) and J4 (4) go to cloud (8 cores; 7 used); J5 (2) does not fit: it waits.
    10 J6 (13 nodes) could not fit even on empty sites: rejected.
    20 J7 (1) waits behind J5 (first come, first served).
    31 J2 ends: J5 takes home (ready 32, wait 27), J7 the last cloud core (wait 12).
    36 J4 ends. 40 J8 (1) and J9 (2) to cloud. 42 J7 ends. 50 J10 (4) waits for cloud room.
    51 J9 ends: J10 on cloud (ready 52, wait 2). 52 J5 ends: home has 2 free; the tick moves
       the newest burst node (batch-20, J10) home, one per tick: up at 53; batch-19 up at 54.
    61 J1 ends. 62 J10 ends (two home, two cloud nodes); ticks move batch-14 (J8, up 63),
       batch-6 (64), batch-5 (65), batch-4 (started 65) — J3 ends at 66 first: not counted.
    120 J11, J12 on home until 151 (the end of the span).
    Node-minutes: home 122+62+42+19+19+6+62 = 332, cloud 180+124+11+23+22+27 = 387.
    """
    trace = parse_csv_trace(HAND_TRACE, start=T0)
    out = simulate(trace, hand_sites(), hand_rules(), name="hand", settings=Settings(boot_delay_s=60, tick_s=60))
    minutes = [w / 60 for w in out.waits]
    assert sorted(minutes) == [1, 1, 1, 1, 1, 1, 1, 1, 2, 12, 27]
    assert out.rejected == 1
    assert out.boots == 23 + 6 and out.moves == 5
    home, cloud = out.sites["home"], out.sites["cloud"]
    assert home.node_hours == pytest.approx(332 / 60) and cloud.node_hours == pytest.approx(387 / 60)
    assert out.cost == pytest.approx(332 / 60 * 0.02 + 387 / 60 * 0.06)
    assert out.gco2 == pytest.approx(332 / 60 * 1.0 + 387 / 60 * 4.5)
    assert out.mean_wait == pytest.approx(49 * 60 / 11) and out.p95_wait == 27 * 60
    assert out.remote_node_hours == pytest.approx(6.45)
    data = out.to_json()
    assert data["kg_co2"] == pytest.approx(0.0346, abs=1e-4) and data["moves_home"] == 5
    assert data["sites"]["home"]["utilisation"] == pytest.approx(332 / (4 * 151), abs=1e-4)
    assert data["sites"]["cloud"]["utilisation"] == pytest.approx(387 / (8 * 151), abs=1e-4)
    assert sum(c for c, _ in out.hourly.values()) == pytest.approx(out.cost)


def test_without_a_home_policy_burst_load_stays() -> None:
    rules = parse_rules([{"name": "r", "from": ["home"], "to": ["cloud"]}],
                        sites={"home": SimSite("home", Tier.LOCAL, 4), "cloud": SimSite("cloud", Tier.REMOTE, 8)})
    out = simulate(parse_csv_trace(HAND_TRACE, start=T0), hand_sites(), rules)
    assert out.moves == 0 and out.boots == 23


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 95) == 95


def test_csv_trace_reads_iso_times_and_durations() -> None:
    trace = parse_csv_trace("2026-01-05T01:00:00Z,web,2,1h\n2026-01-05T00:30:00Z,web,1,90\n", start=0)
    assert [(j.time - T0, j.nodes, j.duration_s) for j in trace.jobs] == [(1800, 1, 90), (3600, 2, 3600)]


@pytest.mark.parametrize(("text", "message"), [
    ("0,web,2\n", "line 1: expected time,group,nodes,duration"),
    ("soon,web,2,60\n", "line 1: 'soon' is neither seconds nor an ISO 8601 time"),
    ("0,web,0,60\n", "line 1: nodes must be a whole number >= 1, got '0'"),
    ("0,web,1,forever\n", "line 1: 'forever' is not a duration (seconds, or such as 30m or 2h)"),
    ("0,web,1,0\n", "line 1: the duration must be longer than 0s"),
])
def test_bad_csv_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_csv_trace(text, start=T0)


SWF = (FIXTURES / "small.swf").read_text()


def test_swf_reads_the_documented_fields() -> None:
    trace = parse_swf(SWF, start=0, cpus_per_node=2, group="hpc")
    jobs = [(j.id, j.time - 1767571200, j.nodes, j.duration_s, j.group) for j in trace.jobs]
    # Job 2 ran for its requested time with its requested processors; job 4 never ran.
    assert jobs == [(1, 0, 2, 3600, "hpc"), (2, 60, 4, 1800, "hpc"), (3, 120, 2, 600, "hpc")]
    assert trace.skipped == 1


def test_swf_lines_need_eighteen_fields() -> None:
    with pytest.raises(ValueError, match="line 1: an SWF job has 18 fields, this line has 3"):
        parse_swf("1 2 3\n", start=0)


def test_the_synthetic_trace_is_the_same_for_the_same_seed() -> None:
    a, b, c = (synthetic(s, jobs=200, start=T0, groups=("a", "b"), cores=32) for s in (7, 7, 8))
    assert a == b and a != c
    assert len(a.jobs) == 200 and {j.group for j in a.jobs} == {"a", "b"}
    assert all(x.time <= y.time for x, y in zip(a.jobs, a.jobs[1:]))
    # Busy days, quiet nights: more arrivals between 08:00 and 20:00 UTC than outside.
    day = sum(1 for j in a.jobs if 8 <= (j.time % 86400) / 3600 < 20)
    assert day > len(a.jobs) * 0.6


def test_simulation_is_deterministic() -> None:
    trace = synthetic(3, jobs=300, start=T0, cores=4)
    a = simulate(trace, hand_sites(), hand_rules()).to_json()
    b = simulate(trace, hand_sites(), hand_rules()).to_json()
    assert a == b and a["jobs"] + a["rejected"] == 300
