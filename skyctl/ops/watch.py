"""`burst watch` as a loop a service manager can run: a bursting tick every interval, a site
that is down or a tick that fails never ends the loop, and a stop request (SIGTERM) lets the
tick in progress finish. What happened goes out as one TickReport per tick. A demand rule's
command runs on the ticks at which its `every` has passed (`watch_interval` makes the ticks
come at least that often)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import SkyError
from skyctl.model import Tier
from skyctl.ops.burst import TickResult, run_tick
from skyctl.ops.sky import Sky
from skyctl.polling import iterate_timeout


@dataclass
class TickReport:
    number: int
    started: float          # wall clock (time.time())
    duration: float         # seconds
    result: TickResult | None = None
    error: str | None = None                     # the tick failed as a whole (config, state...)
    tiers: dict[str, Tier] = field(default_factory=dict)   # every site of the federation

    @property
    def ok(self) -> bool:
        return self.error is None


class Watch:
    """Runs ticks until `ticks` are done or `stop()` is called (from a signal handler too)."""

    def __init__(self, open_sky: Callable[[], Sky], *, interval: float, ticks: int = 0,
                 on_tick: Callable[[TickReport], None] = lambda r: None,
                 on_start: Callable[[int], None] = lambda n: None,
                 tick: Callable[[Sky], TickResult] | None = None) -> None:
        self.open_sky = open_sky
        self.interval = interval
        self.ticks = ticks
        self.on_tick = on_tick
        self.on_start = on_start
        self._tick = tick or watch_tick
        self._stop = threading.Event()
        self.done = 0  # ticks finished

    def stop(self) -> None:
        """Finish the tick in progress, then end (safe to call from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Tick until told to stop; returns the number of ticks run."""
        for _ in iterate_timeout(None, "the next tick", interval=self.interval, sleep=self._nap):
            if self._stop.is_set():
                break
            self.on_tick(self.run_one())
            if self.ticks and self.done >= self.ticks:
                break
        return self.done

    def _nap(self, seconds: float) -> None:
        self._stop.wait(seconds)  # wakes at once on stop()

    def run_one(self) -> TickReport:
        number = self.done + 1
        self.on_start(number)
        started, t0 = time.time(), time.monotonic()
        tiers: dict[str, Tier] = {}
        try:
            with self.open_sky() as sky:
                tiers = {name: s.tier for name, s in sky.federation.sites.items()}
                result = self._tick(sky)
        except SkyError as e:
            self.done = number
            return TickReport(number, started, time.monotonic() - t0, None, e.line(), tiers)
        self.done = number  # counted once finished: Ctrl-C in the middle leaves it out
        return TickReport(number, started, time.monotonic() - t0, result, None, tiers)


def watch_tick(sky: Sky) -> TickResult:
    """A watch's tick: moves home, and the demand rules that are due."""
    return run_tick(sky, demand_when_due=True)


def watch_interval(interval: float, rules: Any) -> float:
    """Ticks at least as often as the most frequent demand rule asks."""
    everies = [r.demand.every_s for r in rules if getattr(r, "demand", None) is not None]
    return min([interval, *everies])


def tick_event(report: TickReport) -> dict[str, Any]:
    """One tick as a flat record (for logs)."""
    event: dict[str, Any] = {"event": "tick", "tick": report.number, "duration_s": round(report.duration, 3)}
    if report.result is None:
        event.update(ok=False, error=report.error)
        return event
    r = report.result
    event.update(ok=True, moves=sum(o.ok for o in r.outcomes), failed_moves=sum(not o.ok for o in r.outcomes),
                 burst_nodes={t.rule: t.burst_nodes for t in r.rules}, site_errors=dict(r.site_errors))
    if r.demand:
        event["demand"] = {d.rule: {"error": d.error, "target": d.tick.target if d.tick else None,
                                    "pending_cores": d.reading.pending_cores if d.reading else None,
                                    "created": len(d.created), "deleted": len(d.deleted), "kept": len(d.kept)}
                           for d in r.demand}
    return event
