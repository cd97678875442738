"""Site energy, price and carbon: the federation file's model of them, and what a run costs.

A site may say how much power its vCPUs draw (`watts_per_vcpu`, times `pue` for cooling), what
it charges (`price`, per core-hour or per kWh) and how much CO2 its electricity emits (`carbon`,
gCO2/kWh). Each of price and carbon is a constant, a 24-value daily profile (hour of day in the
site's `timezone`), or a CSV time series with such a profile for the times it does not cover.

Pure: the CSV text is handed in by config.py, which reads the file at load time; evaluation
(`footprint`) takes the clock as an argument and reads nothing.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, ValidationInfo

from skyctl.errors import ConfigError
from skyctl.validation import FieldProblem, first_problem

HOURS = 24
SERIES_SHAPE = "must be a number, a list of 24 numbers (one per hour of the day) or {csv: FILE, profile: ...}"
# The site fields this module reads (SiteConfig declares them so they are not driver options).
FIELDS = ("timezone", "pue", "watts_per_vcpu", "price", "carbon")


class PriceUnit(str, enum.Enum):
    KWH = "per_kwh"
    CORE_HOUR = "per_core_hour"


@dataclass(frozen=True, slots=True)
class Series:
    """A value over time. `profile` has 1 value (a constant) or 24 (by local hour of day);
    `points` (from a CSV: start time, value) override it from the first point until `end`."""

    profile: tuple[float, ...]
    points: tuple[tuple[float, float], ...] = ()
    end: float = 0.0

    @property
    def constant(self) -> bool:
        return len(self.profile) == 1 and not self.points

    def value(self, t: float, hour: int) -> float:
        if self.points and self.points[0][0] <= t < self.end:
            i = bisect.bisect_right(self.points, (t, math.inf)) - 1
            return self.points[i][1]
        return self.profile[hour % len(self.profile)]

    def next_change(self, t: float) -> float:
        """The first CSV breakpoint after t (inf when there is none)."""
        if not self.points or t >= self.end:
            return math.inf
        i = bisect.bisect_right(self.points, (t, math.inf))
        return self.points[i][0] if i < len(self.points) else self.end

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"profile": list(self.profile)}
        if self.points:
            out["csv_points"] = len(self.points)
            out["csv_from"] = _iso(self.points[0][0])
            out["csv_until"] = _iso(self.end)
        return out


@dataclass(frozen=True, slots=True)
class EnergyModel:
    timezone: str = "UTC"
    pue: float = 1.0
    watts_per_vcpu: float | None = None
    price: Series | None = None
    price_unit: PriceUnit = PriceUnit.CORE_HOUR
    carbon: Series | None = None     # gCO2 per kWh

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "pue": self.pue, "watts_per_vcpu": self.watts_per_vcpu,
                "price": None if self.price is None else {self.price_unit.value: self.price.to_json()},
                "carbon": None if self.carbon is None else self.carbon.to_json()}


@dataclass(frozen=True, slots=True)
class Footprint:
    """What `cores` cores on one site use over [start, start + duration): energy (None when the
    site gives no `watts_per_vcpu`), cost, and CO2 (None when the site gives no `carbon`)."""

    core_hours: float
    kwh: float | None
    cost: float
    gco2: float | None
    priced: bool        # cost comes from the site's `price` (else: static `cost` per core-hour)

    def to_json(self) -> dict[str, Any]:
        return {"core_hours": _round(self.core_hours), "kwh": _round(self.kwh), "cost": _round(self.cost),
                "gco2": _round(self.gco2)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _utc_offset(tz: str, t: float) -> float:
    if tz == "UTC":
        return 0.0
    return _quarter_offset(tz, int(t // 900))


@lru_cache(maxsize=65536)
def _quarter_offset(tz: str, quarter: int) -> float:
    """The zone's UTC offset during one quarter of an hour. Offsets are whole quarters and
    zones change them on a local quarter hour, so one quarter never holds two offsets."""
    off = datetime.fromtimestamp(quarter * 900, zone(tz)).utcoffset()
    return off.total_seconds() if off is not None else 0.0


def local_hour(tz: str, t: float) -> int:
    return int((t + _utc_offset(tz, t)) // 3600) % HOURS


def _integrals(model: EnergyModel, start: float, end: float) -> tuple[float, float]:
    """∫price dt and ∫carbon dt over [start, end), in value-seconds, piece by piece: a piece ends
    at the next local hour (profiles) or the next CSV point."""
    price, carbon = model.price, model.carbon
    if (price is None or price.constant) and (carbon is None or carbon.constant):
        span = end - start
        return ((price.profile[0] * span if price else 0.0), (carbon.profile[0] * span if carbon else 0.0))
    if end - start <= _CLOSED_FORM_SPAN and not _csv_within(price, start, end) and not _csv_within(carbon, start, end):
        off = _utc_offset(model.timezone, start)
        if off == _utc_offset(model.timezone, end - 1e-6):  # no clock change inside
            return (_profile_integral(price, start + off, end + off),
                    _profile_integral(carbon, start + off, end + off))
    p_sum = c_sum = 0.0
    t = start
    while t < end:
        off = _utc_offset(model.timezone, t)
        local = t + off
        hour = int(local // 3600) % HOURS
        nxt = (math.floor(local / 3600) + 1) * 3600 - off  # DST changes fall on whole local hours
        if price is not None:
            nxt = min(nxt, price.next_change(t))
        if carbon is not None:
            nxt = min(nxt, carbon.next_change(t))
        nxt = min(nxt if nxt > t else t + 1e-3, end)  # always move forward (float rounding)
        span = nxt - t
        if price is not None:
            p_sum += price.value(t, hour) * span
        if carbon is not None:
            c_sum += carbon.value(t, hour) * span
        t = nxt
    return p_sum, c_sum


# Spans up to this long with the same UTC offset at both ends hold no clock change (zones change
# their offset months apart), so profiles integrate in closed form over them.
_CLOSED_FORM_SPAN = 2 * 86400.0


def _csv_within(series: Series | None, start: float, end: float) -> bool:
    return series is not None and bool(series.points) and series.points[0][0] < end and start < series.end


@lru_cache(maxsize=1024)
def _prefix(profile: tuple[float, ...]) -> tuple[float, ...]:
    """Value-seconds of a daily profile from local midnight to the start of each hour (and 24)."""
    out = [0.0]
    for v in profile:
        out.append(out[-1] + v * 3600.0)
    return tuple(out)


def _profile_integral(series: Series | None, local_start: float, local_end: float) -> float:
    """∫ of a profile between two local times (seconds since the local epoch)."""
    if series is None:
        return 0.0
    prof = series.profile
    if len(prof) == 1:
        return prof[0] * (local_end - local_start)
    prefix = _prefix(prof)
    base = math.floor(local_start / 86400.0) * 86400.0   # keeps the numbers small

    def upto(x: float) -> float:
        days, rest = divmod(x - base, 86400.0)
        hour = min(int(rest // 3600), HOURS - 1)
        return days * prefix[HOURS] + prefix[hour] + (rest - hour * 3600.0) * prof[hour]

    return upto(local_end) - upto(local_start)


def footprint(model: EnergyModel | None, static_cost: float, cores: int, start: float,
              duration_s: float) -> Footprint:
    """Energy, cost and CO2 of `cores` cores running for `duration_s` seconds from `start` (epoch)."""
    core_hours = cores * duration_s / 3600.0
    if model is None:
        return Footprint(core_hours, None, static_cost * core_hours, None, False)
    p_int, c_int = _integrals(model, start, start + duration_s)
    kw = None if model.watts_per_vcpu is None else cores * model.watts_per_vcpu * model.pue / 1000.0
    kwh = None if kw is None else kw * duration_s / 3600.0
    if model.price is None:
        cost, priced = static_cost * core_hours, False
    elif model.price_unit is PriceUnit.KWH:
        cost, priced = (kw or 0.0) * p_int / 3600.0, True
    else:
        cost, priced = cores * p_int / 3600.0, True
    gco2 = None if model.carbon is None or kw is None else kw * c_int / 3600.0
    return Footprint(core_hours, kwh, cost, gco2, priced)


# ---------------------------------------------------------------- parsing


ReadText = Callable[[str], str]


def _number(value: Any, *, low: float = 0.0, what: str = "a number") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be {what}")
    number = float(value)
    if not math.isfinite(number) or number < low:
        raise ValueError(f"must be {what} >= {low:g}")
    return number


def _profile(value: Any) -> tuple[float, ...]:
    if isinstance(value, list):
        if len(value) != HOURS:
            raise ValueError(f"a daily profile has 24 values (hour 0 to 23), got {len(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_number(v))
            except ValueError as e:
                raise FieldProblem(str(e), below=(i,)) from None
        return tuple(out)
    try:
        return (_number(value),)
    except ValueError:
        raise ValueError(SERIES_SHAPE) from None


def parse_csv(text: str, tz: str) -> tuple[tuple[tuple[float, float], ...], float]:
    """`time,value` rows (a header line is allowed; times ISO 8601, naive ones in `tz`), strictly
    increasing. Each value holds until the next row; the last one for the previous step (1 h
    when there is a single row). Returns the points and where they stop covering."""
    points: list[tuple[float, float]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 2:
            raise ValueError(f"line {n}: expected time,value")
        try:
            when = datetime.fromisoformat(cells[0].replace("Z", "+00:00"))
        except ValueError:
            if not points and n == 1:
                continue  # the header
            raise ValueError(f"line {n}: {cells[0]!r} is not an ISO 8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone(tz))
        try:
            value = float(cells[1])
        except ValueError:
            raise ValueError(f"line {n}: {cells[1]!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"line {n}: values must be >= 0")
        t = when.timestamp()
        if points and t <= points[-1][0]:
            raise ValueError(f"line {n}: times must increase")
        points.append((t, value))
    if not points:
        raise ValueError("the CSV has no rows")
    step = points[-1][0] - points[-2][0] if len(points) > 1 else 3600.0
    return tuple(points), points[-1][0] + step


def _series(value: Any, info: ValidationInfo, below: tuple[str, ...] = ()) -> Series:
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in ("csv", "profile")]
        if unknown:
            raise FieldProblem("unknown field", below=(*below, str(unknown[0])), hint="known: csv, profile")
        for key in ("csv", "profile"):
            if key not in value:
                raise FieldProblem("required field is missing", below=(*below, key),
                                   hint="the profile gives the value where the CSV does not cover the time")
        try:
            profile = _profile(value["profile"])
        except FieldProblem as e:
            raise FieldProblem(str(e), below=(*below, "profile", *e.below)) from None
        except ValueError as e:
            raise FieldProblem(str(e), below=(*below, "profile")) from None
        path = value["csv"]
        if not isinstance(path, str) or not path:
            raise FieldProblem("must be the path of a CSV file", below=(*below, "csv"))
        ctx = info.context or {}
        tz = (info.data or {}).get("timezone") or "UTC"
        try:
            text = ctx["read_text"](path)
            points, end = parse_csv(text, tz)
        except OSError as e:
            raise FieldProblem(f"cannot read {path}: {e.strerror or type(e).__name__}", below=(*below, "csv")) from None
        except ValueError as e:
            raise FieldProblem(f"{path}: {e}", below=(*below, "csv")) from None
        return Series(profile, points, end)
    try:
        return Series(_profile(value))
    except FieldProblem as e:
        raise FieldProblem(str(e), below=(*below, *e.below)) from None
    except ValueError as e:
        if below:
            raise FieldProblem(str(e), below=below) from None
        raise


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a time zone name such as Europe/Paris or UTC")
    try:
        zone(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (names as in Europe/Paris, UTC)") from None
    return value


def _pue(value: Any) -> float:
    number = _number(value, low=1.0, what="a number (power usage effectiveness)")
    if number > 10:
        raise ValueError("must be a number from 1 to 10 (power usage effectiveness)")
    return number


def _watts(value: Any) -> float:
    number = _number(value, what="watts per vCPU, a number")
    if number <= 0:
        raise ValueError("must be watts per vCPU, a number > 0")
    return number


def _price(value: Any, info: ValidationInfo) -> tuple[PriceUnit, Series]:
    units = ", ".join(u.value for u in PriceUnit)
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"must be a mapping with one key: {units}")
    key, raw = next(iter(value.items()))
    try:
        unit = PriceUnit(key)
    except ValueError:
        raise FieldProblem("unknown field", below=(str(key),), hint=f"known: {units}") from None
    return unit, _series(raw, info, below=(unit.value,))


def _carbon(value: Any, info: ValidationInfo) -> Series:
    return _series(value, info)


class _EnergySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Field order is check order: `timezone` first, the CSVs need it.
    timezone: Annotated[str, PlainValidator(_timezone)] = "UTC"
    pue: Annotated[float, PlainValidator(_pue)] = 1.0
    watts_per_vcpu: Annotated[float | None, PlainValidator(_watts)] = None
    price: Annotated[tuple[PriceUnit, Series] | None, PlainValidator(_price)] = None
    carbon: Annotated[Series | None, PlainValidator(_carbon)] = None


def parse_energy(raw: Mapping[str, Any], *, path: str, read_text: ReadText,
                 source: str | None = None) -> EnergyModel | None:
    """A site's energy fields (those present of FIELDS) -> EnergyModel, or None if none is given.
    `read_text(path)` returns a CSV file's text (config.py resolves it beside the federation file)."""
    given = {k: v for k, v in raw.items() if k in FIELDS and v is not None}
    if not given:
        return None
    try:
        spec = _EnergySpec.model_validate(given, context={"read_text": read_text})
    except ValidationError as e:
        problem = first_problem(e, at=path)
        raise ConfigError(problem.message, path=problem.path, source=source, hint=problem.hint) from None
    needs_power = [k for k, on in (("price", spec.price and spec.price[0] is PriceUnit.KWH),
                                   ("carbon", spec.carbon is not None)) if on]
    if needs_power and spec.watts_per_vcpu is None:
        raise ConfigError("required field is missing", path=f"{path}.watts_per_vcpu", source=source,
                          hint=f"{needs_power[0]} per kWh needs the power a vCPU draws")
    unit, price = spec.price if spec.price else (PriceUnit.CORE_HOUR, None)
    return EnergyModel(timezone=spec.timezone, pue=spec.pue, watts_per_vcpu=spec.watts_per_vcpu,
                       price=price, price_unit=unit, carbon=spec.carbon)
