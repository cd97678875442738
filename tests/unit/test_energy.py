"""Site energy, price and carbon: the federation file's fields (errors name the path) and what a
run costs, from constants, daily profiles in the site's time zone, and CSV series."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyctl.errors import ConfigError
from skyctl.policy.energy import PriceUnit, footprint, local_hour, parse_energy

NIGHT_CHEAP = [1.0] * 6 + [3.0] * 18


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def model(files: dict[str, str] | None = None, **fields: Any) -> Any:
    def read_text(path: str) -> str:
        if files is None or path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[path]
    return parse_energy(fields, path="sites.s", read_text=read_text, source="sky.yaml")


def test_no_fields_no_model_and_static_cost_per_core_hour() -> None:
    assert model() is None
    fp = footprint(None, 2.0, 4, 0.0, 1800)
    assert (fp.core_hours, fp.cost, fp.kwh, fp.gco2, fp.priced) == (2.0, 4.0, None, None, False)


def test_constant_power_price_and_carbon() -> None:
    m = model(watts_per_vcpu=10, pue=1.25, price={"per_kwh": 0.2}, carbon=400)
    fp = footprint(m, 99.0, 8, utc("2026-03-01T10:00"), 2 * 3600)
    # 8 x 10 W x 1.25 = 100 W for 2 h = 0.2 kWh -> 0.04 and 80 g
    assert (fp.kwh, fp.cost, fp.gco2, fp.priced) == pytest.approx((0.2, 0.04, 80.0, True))


def test_a_profile_is_integrated_hour_by_hour_across_midnight_in_the_site_zone() -> None:
    m = model(timezone="Europe/Paris", price={"per_core_hour": NIGHT_CHEAP})
    assert m.price_unit is PriceUnit.CORE_HOUR
    # 04:30-06:30 UTC is 05:30-07:30 in Paris (winter): half an hour at 1, then 1.5 h at 3.
    assert footprint(m, 0, 1, utc("2026-01-05T04:30"), 7200).cost == pytest.approx(0.5 + 4.5)
    # 22:00 UTC for 4 h: 23:00-03:00 Paris: one hour at 3, three at 1.
    assert footprint(m, 0, 2, utc("2026-01-05T22:00"), 4 * 3600).cost == pytest.approx(2 * (3 + 3))


def test_daylight_saving_time_moves_the_local_hour() -> None:
    assert local_hour("Europe/Paris", utc("2026-01-05T05:00")) == 6   # CET, UTC+1
    assert local_hour("Europe/Paris", utc("2026-07-05T05:00")) == 7   # CEST, UTC+2
    m = model(timezone="Europe/Paris", price={"per_core_hour": NIGHT_CHEAP})
    # The night of the spring change (29 March 2026, 02:00 -> 03:00): 00:00 UTC is 01:00 CET;
    # six real hours reach 08:00 CEST, of which 01:00, 03:00, 04:00, 05:00 are cheap.
    assert footprint(m, 0, 1, utc("2026-03-29T00:00"), 6 * 3600).cost == pytest.approx(4 * 1 + 2 * 3)


CSV = """time,value
2026-01-05T00:00:00Z,100
2026-01-05T01:00:00Z,200
2026-01-05T02:00:00Z,300
"""


def test_a_csv_series_is_used_where_it_covers_the_time_and_the_profile_elsewhere() -> None:
    m = model({"c.csv": CSV}, watts_per_vcpu=1000, carbon={"csv": "c.csv", "profile": 50})
    # 1 vCPU at 1 kW: gCO2 = the value integrated over hours. The CSV covers 00:00-03:00 (the
    # last row lasts one step); 23:30 to 04:30 reads 0.5 h of profile, then 100, 200, 300, then
    # 1.5 h of profile again.
    fp = footprint(m, 0, 1, utc("2026-01-04T23:30"), 5 * 3600)
    assert fp.gco2 == pytest.approx(0.5 * 50 + 100 + 200 + 300 + 1.5 * 50)


def test_csv_naive_times_are_in_the_site_zone_and_a_header_is_optional() -> None:
    m = model({"p.csv": "2026-01-05T01:00,7\n2026-01-05T02:00,7\n"}, timezone="Europe/Paris",
              price={"per_core_hour": {"csv": "p.csv", "profile": 1}})
    assert footprint(m, 0, 1, utc("2026-01-05T00:00"), 3600).cost == pytest.approx(7)  # 01:00 Paris


BAD = [
    ({"pue": 0.9}, "sites.s.pue", "must be a number (power usage effectiveness) >= 1"),
    ({"pue": "high"}, "sites.s.pue", "must be a number (power usage effectiveness)"),
    ({"watts_per_vcpu": 0}, "sites.s.watts_per_vcpu", "must be watts per vCPU, a number > 0"),
    ({"timezone": "Mars/Olympus"}, "sites.s.timezone",
     "unknown time zone 'Mars/Olympus' (names as in Europe/Paris, UTC)"),
    ({"price": 0.1}, "sites.s.price", "must be a mapping with one key: per_kwh, per_core_hour"),
    ({"price": {"per_kw": 0.1}}, "sites.s.price.per_kw", "unknown field"),
    ({"price": {"per_core_hour": [1] * 23}}, "sites.s.price.per_core_hour",
     "a daily profile has 24 values (hour 0 to 23), got 23"),
    ({"price": {"per_core_hour": [1] * 23 + [-1]}}, "sites.s.price.per_core_hour.23", "must be a number >= 0"),
    ({"watts_per_vcpu": 5, "carbon": "low"}, "sites.s.carbon",
     "must be a number, a list of 24 numbers (one per hour of the day) or {csv: FILE, profile: ...}"),
    ({"watts_per_vcpu": 5, "carbon": {"csv": "c.csv"}}, "sites.s.carbon.profile", "required field is missing"),
    ({"watts_per_vcpu": 5, "carbon": {"csv": "gone.csv", "profile": 1}}, "sites.s.carbon.csv",
     "cannot read gone.csv: No such file or directory"),
    ({"watts_per_vcpu": 5, "carbon": {"csv": "bad.csv", "profile": 1}}, "sites.s.carbon.csv",
     "bad.csv: line 3: times must increase"),
    ({"carbon": 300}, "sites.s.watts_per_vcpu", "required field is missing"),
    ({"price": {"per_kwh": 0.2}}, "sites.s.watts_per_vcpu", "required field is missing"),
]


@pytest.mark.parametrize(("fields", "path", "message"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_fields_name_their_path(fields: dict[str, Any], path: str, message: str) -> None:
    files = {"bad.csv": "2026-01-05T02:00Z,1\n2026-01-05T03:00Z,1\n2026-01-05T03:00Z,2\n"}
    with pytest.raises(ConfigError) as info:
        model(files, **fields)
    assert (info.value.path, str(info.value)) == (path, f"sky.yaml: {path}: {message}")


def test_the_federation_file_reads_csv_beside_itself(tmp_path: Any) -> None:
    from skyctl.config import load

    (tmp_path / "carbon.csv").write_text(CSV)
    (tmp_path / "sky.yaml").write_text(
        "sites:\n  s: {driver: memory, watts_per_vcpu: 10, carbon: {csv: carbon.csv, profile: 1}}\n")
    fed = load(tmp_path / "sky.yaml", validate_drivers=False)
    assert fed.energy["s"].carbon is not None and len(fed.energy["s"].carbon.points) == 3


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Asia/Kathmandu"]


@settings(max_examples=300, deadline=None)
@given(profile=st.lists(st.floats(0, 1000), min_size=24, max_size=24), zone_name=st.sampled_from(ZONES),
       start=st.floats(utc("2026-01-01T00:00"), utc("2027-01-01T00:00")), hours=st.floats(0.01, 60))
def test_the_closed_form_matches_hour_by_hour(profile: list[float], zone_name: str, start: float,
                                              hours: float) -> None:
    """Profiles integrate in closed form when no clock change falls inside; hour by hour otherwise."""
    import skyctl.policy.energy as energy

    m = model(timezone=zone_name, watts_per_vcpu=1000, price={"per_core_hour": profile}, carbon=profile)
    fast = footprint(m, 0, 1, start, hours * 3600)
    saved = energy._CLOSED_FORM_SPAN
    energy._CLOSED_FORM_SPAN = 0.0
    try:
        slow = footprint(m, 0, 1, start, hours * 3600)
    finally:
        energy._CLOSED_FORM_SPAN = saved
    assert fast.cost == pytest.approx(slow.cost, rel=1e-9, abs=1e-6)
    assert fast.gco2 == pytest.approx(slow.gco2, rel=1e-9, abs=1e-6)
