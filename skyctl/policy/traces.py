"""Demand traces for `skyctl burst simulate`: jobs read from CSV or SWF text, or generated.

Pure: the CLI reads the file and hands the text in. A job asks for `nodes` nodes of one group
at `time` (epoch seconds) for `duration_s` seconds.
- CSV: `time,group,nodes,duration` (a header line is allowed); time is seconds from the trace's
  start or an ISO 8601 time, duration is seconds or a duration such as 30m or 2h.
- SWF, the Standard Workload Format of the Parallel Workloads Archive: 18 whitespace-separated
  fields per job, `;` starts a comment (a `; UnixStartTime: N` header sets the start). Submit
  time (field 2), run time (4) and processors (5) are read, the requested ones (9, 8) where
  those are -1 (unknown); a job asks for processors / cpus-per-node nodes, rounded up. Jobs
  with no run time or processors are skipped and counted.
- synthetic: a seeded generator with a daily cycle (busy days, quiet nights).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from skyctl.policy.rules import parse_duration

SWF_FIELDS = 18


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    time: float          # arrival, epoch seconds
    group: str
    nodes: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class Trace:
    jobs: tuple[Job, ...]
    source: str
    skipped: int = 0     # records that asked for nothing (SWF: no run time or no processors)

    @property
    def start(self) -> float:
        return self.jobs[0].time if self.jobs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "jobs": len(self.jobs), "skipped": self.skipped,
                "node_hours": round(sum(j.nodes * j.duration_s for j in self.jobs) / 3600, 3)}


def _sorted(jobs: list[Job]) -> tuple[Job, ...]:
    return tuple(sorted(jobs, key=lambda j: (j.time, j.id)))


def _time(cell: str, start: float) -> float:
    try:
        return start + float(cell)
    except ValueError:
        pass
    when = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def parse_csv_trace(text: str, *, start: float, source: str = "csv") -> Trace:
    jobs: list[Job] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            raise ValueError(f"line {n}: expected time,group,nodes,duration")
        if not jobs and cells[0].lower() == "time":
            continue  # the header
        try:
            at = _time(cells[0], start)
        except ValueError:
            raise ValueError(f"line {n}: {cells[0]!r} is neither seconds nor an ISO 8601 time") from None
        if not cells[1]:
            raise ValueError(f"line {n}: the group is empty")
        try:
            nodes = int(cells[2])
        except ValueError:
            nodes = 0
        if nodes < 1:
            raise ValueError(f"line {n}: nodes must be a whole number >= 1, got {cells[2]!r}")
        try:
            duration = parse_duration(cells[3]) if not _is_number(cells[3]) else float(cells[3])
        except ValueError:
            raise ValueError(f"line {n}: {cells[3]!r} is not a duration (seconds, or such as 30m or 2h)") from None
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"line {n}: the duration must be longer than 0s")
        jobs.append(Job(len(jobs) + 1, at, cells[1], nodes, duration))
    return Trace(_sorted(jobs), source)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parse_swf(text: str, *, start: float, cpus_per_node: int = 1, group: str = "batch",
              source: str = "swf") -> Trace:
    jobs: list[Job] = []
    skipped = 0
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line.startswith(";"):
            key, _, value = line[1:].partition(":")
            if key.strip() == "UnixStartTime" and value.strip():
                try:
                    start = float(value.strip())
                except ValueError:
                    raise ValueError(f"line {n}: UnixStartTime {value.strip()!r} is not a number") from None
            continue
        if not line:
            continue
        cells = line.split()
        if len(cells) != SWF_FIELDS:
            raise ValueError(f"line {n}: an SWF job has {SWF_FIELDS} fields, this line has {len(cells)}")
        try:
            f = [float(c) for c in cells]
        except ValueError:
            raise ValueError(f"line {n}: every SWF field is a number (-1 when unknown)") from None
        # -1 means unknown: then the requested time or processors stand in.
        submit, run, procs = f[1], f[3] if f[3] != -1 else f[8], f[4] if f[4] != -1 else f[7]
        if submit < 0 or run <= 0 or procs <= 0:
            skipped += 1
            continue
        jobs.append(Job(int(f[0]), start + submit, group, math.ceil(procs / max(cpus_per_node, 1)), run))
    return Trace(_sorted(jobs), source, skipped)


_NODES = (1, 1, 1, 1, 2, 2, 2, 4, 4, 8)
_DURATIONS = (600, 1200, 1800, 3600, 3600, 5400, 7200, 10800, 14400, 28800)


def synthetic(seed: int, *, jobs: int = 400, start: float, groups: Sequence[str] = ("batch",),
              cores: int = 64, cpus_per_node: int = 1, load: float = 1.1) -> Trace:
    """`jobs` jobs whose demand averages `load` x `cores` (busier by day, quiet at night; a
    day is read in UTC). The same seed gives the same trace."""
    rng = random.Random(seed)
    mean_core_s = sum(_NODES) / len(_NODES) * cpus_per_node * sum(_DURATIONS) / len(_DURATIONS)
    rate = load * max(cores, 1) / mean_core_s   # arrivals per second, on average
    peak = rate * 1.8
    out: list[Job] = []
    t = start
    while len(out) < jobs:
        t += rng.expovariate(peak)
        hour = (t % 86400) / 3600
        daily = 1.0 + 0.8 * math.sin((hour - 8) / 24 * 2 * math.pi)   # 0.2 at 02:00, 1.8 at 14:00
        if rng.random() * 1.8 > daily:
            continue  # thinning: keep the arrival with probability daily / 1.8
        out.append(Job(len(out) + 1, float(round(t)), groups[rng.randrange(len(groups))],
                       rng.choice(_NODES), float(rng.choice(_DURATIONS))))
    return Trace(_sorted(out), f"synthetic seed {seed}")
