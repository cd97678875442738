"""What-if bursting: replay a demand trace in simulated time against sites and rules.

The decisions are the live ones: each job is placed by `placement.place` on snapshots of the
simulated sites, and every tick `bursting.decide_moves` says which burst nodes move home. This
module only keeps the books:
- a job waits in one first-come-first-served queue until `place` finds room for all its nodes
  (no backfill: a job that does not fit holds the ones behind it); a job that could not fit
  even on empty sites is rejected and counted;
- a placed node boots for `boot_delay_s`, then the job runs `duration_s`; its wait is from
  arrival to the end of the boot;
- a move home is make-before-break: the replacement boots at home while the remote node still
  runs (both are paid for), then the remote node goes; a move is counted when it completes;
- nodes cost and emit what `energy.footprint` says, hour by hour, while they exist.
Pure: no clock, no I/O; the same inputs give the same result.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skyctl.model import Capacity, ImageRef, Limit, Tier
from skyctl.policy.bursting import BurstNode, decide_moves
from skyctl.policy.energy import EnergyModel, footprint
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, place
from skyctl.policy.rules import Rule
from skyctl.policy.traces import Job, Trace

IMAGE = "sim"
# Event kinds, in the order they are handled at the same instant: what frees room first.
_END, _MOVED, _READY, _ARRIVE, _TICK = range(5)


@dataclass(frozen=True, slots=True)
class SimSite:
    name: str
    tier: Tier
    cores: int | None            # capacity; None: no limit
    cost: float = 0.0
    energy: EnergyModel | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    cpus: int = 1                # per node
    memory_mib: int = 2048
    boot_delay_s: float = 60.0
    tick_s: float = 60.0         # how often moves home are decided


@dataclass(slots=True, eq=False)
class _Node:
    name: str
    group: str
    index: int
    job: int
    site: str
    since: float                 # created (billing starts)
    moving_to: _Node | None = None
    burst: BurstNode | None = None   # as decide_moves sees it, while it may move home


@dataclass
class SiteTotals:
    cores: int | None
    core_hours: float = 0.0
    node_hours: float = 0.0
    cost: float = 0.0
    kwh: float = 0.0
    gco2: float = 0.0
    boots: int = 0

    def utilisation(self, span_s: float) -> float | None:
        if self.cores is None or self.cores == 0 or span_s <= 0:
            return None
        return self.core_hours * 3600 / (self.cores * span_s)


@dataclass
class Outcome:
    """One rule set over one trace: totals, per-site books and the time lines the plots draw."""

    name: str
    sites: dict[str, SiteTotals]
    tiers: dict[str, Tier]
    start: float
    end: float = 0.0
    waits: list[float] = field(default_factory=list)      # per started job, in start order
    rejected: int = 0
    boots: int = 0
    moves: int = 0
    # (time, cores in use per site in `sites` order, cores asked for: running + booting + queued)
    usage: list[tuple[float, tuple[int, ...], int]] = field(default_factory=list)
    boot_times: list[float] = field(default_factory=list)
    move_times: list[float] = field(default_factory=list)
    hourly: dict[int, list[float]] = field(default_factory=dict)   # epoch hour -> [cost, gco2]

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.sites.values())

    @property
    def gco2(self) -> float:
        return sum(s.gco2 for s in self.sites.values())

    @property
    def mean_wait(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0

    @property
    def p95_wait(self) -> float:
        return percentile(self.waits, 95)

    @property
    def remote_node_hours(self) -> float:
        return sum(s.node_hours for n, s in self.sites.items() if self.tiers[n] is Tier.REMOTE)

    def to_json(self) -> dict[str, Any]:
        span = self.end - self.start
        return {
            "rules": self.name,
            "jobs": len(self.waits), "rejected": self.rejected,
            "cost": round(self.cost, 4), "kg_co2": round(self.gco2 / 1000, 4),
            "kwh": round(sum(s.kwh for s in self.sites.values()), 4),
            "mean_wait_s": round(self.mean_wait, 3), "p95_wait_s": round(self.p95_wait, 3),
            "remote_node_hours": round(self.remote_node_hours, 4),
            "boots": self.boots, "moves_home": self.moves,
            "span_s": round(span, 3),
            "sites": {n: {"tier": self.tiers[n].value, "cores": s.cores,
                          "utilisation": None if (u := s.utilisation(span)) is None else round(u, 4),
                          "node_hours": round(s.node_hours, 4), "cost": round(s.cost, 4),
                          "kg_co2": round(s.gco2 / 1000, 4), "boots": s.boots}
                      for n, s in self.sites.items()},
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest rank: the smallest value with at least pct% of the values at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


class _Run:
    def __init__(self, name: str, sites: Sequence[SimSite], rules: Sequence[Rule], settings: Settings,
                 start: float) -> None:
        self.sites = {s.name: s for s in sites}
        self.order = [s.name for s in sites]
        self.rules = list(rules)
        self.homing = [r for r in self.rules if r.home is not None]
        self.cfg = settings
        self.catalog = Catalog(images={IMAGE: {s.name: IMAGE for s in sites}})
        self.used = dict.fromkeys(self.order, 0)        # nodes on each site
        self.nodes: dict[str, _Node] = {}
        self.remote: dict[str, _Node] = {}               # nodes that may move home
        self.fits_empty: dict[tuple[str, int], bool] = {}
        self.hour_cache: dict[tuple[str, int], tuple[float, float, float]] = {}  # per core, whole hours
        self.by_job: dict[int, list[_Node]] = {}
        self.jobs: dict[int, Job] = {}
        self.queue: list[Job] = []
        self.asked = 0                                   # cores asked for by jobs not yet ended
        self.counter: dict[str, int] = {}
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.tick_due: float | None = None
        self.last_move: dict[str, float | None] = {r.name: None for r in self.homing}
        self.dirty = True
        self.out = Outcome(name, {s.name: SiteTotals(s.cores) for s in sites},
                           {s.name: s.tier for s in sites}, start)

    # ------------------------------------------------------------ the books

    def push(self, t: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, payload))

    def snapshot(self, empty: bool = False) -> list[SiteSnapshot]:
        cpus = self.cfg.cpus
        snaps = []
        for name in self.order:
            s = self.sites[name]
            n = 0 if empty else self.used[name]
            cap = Capacity(Limit("instances", n, None), Limit("cores", n * cpus, s.cores), Limit("ram_mib", 0, None))
            snaps.append(SiteSnapshot(name, "sim", s.tier, s.cost, cap, (), (ImageRef(IMAGE, IMAGE),),
                                      custom_sizes=True, energy=s.energy))
        return snaps

    def record(self, t: float) -> None:
        cpus = self.cfg.cpus
        sample = (t, tuple(self.used[n] * cpus for n in self.order), self.asked)
        if self.out.usage and self.out.usage[-1][0] == t:
            self.out.usage[-1] = sample
        else:
            self.out.usage.append(sample)

    def create(self, t: float, job: Job, site: str, name: str | None = None, index: int | None = None) -> _Node:
        if name is None or index is None:
            index = self.counter.get(job.group, 0)
            self.counter[job.group] = index + 1
            name = f"{job.group}-{index}"
        node = _Node(name, job.group, index, job.id, site, t)
        self.nodes[node.name] = node
        if self.homing and self.sites[site].tier is Tier.REMOTE:
            node.burst = BurstNode(name, job.group, site, index, IMAGE, self.cfg.cpus, self.cfg.memory_mib)
            self.remote[name] = node
        self.used[site] += 1
        self.out.boots += 1
        self.out.sites[site].boots += 1
        self.out.boot_times.append(t)
        self.changed(t)
        return node

    def changed(self, t: float) -> None:
        """Room or burst nodes changed: the next tick decides moves again."""
        self.dirty = True
        if self.homing:
            self.want_tick(t)

    def destroy(self, t: float, node: _Node, *, billed: bool = False) -> None:
        del self.nodes[node.name]
        self.remote.pop(node.name, None)
        self.used[node.site] -= 1
        if not billed:
            self.bill(node.site, node.since, t)
        self.changed(t)

    def bill(self, site_name: str, since: float, until: float, count: int = 1) -> None:
        """`count` nodes on `site_name` over [since, until): hour by hour into the books."""
        if until <= since:
            return
        site, totals, cpus = self.sites[site_name], self.out.sites[site_name], self.cfg.cpus * count
        totals.core_hours += cpus * (until - since) / 3600
        totals.node_hours += count * (until - since) / 3600
        t = since
        while t < until:
            hour = int(t // 3600)
            nxt = min((hour + 1) * 3600.0, until)
            if t == hour * 3600.0 and nxt == t + 3600.0:
                # A whole hour: the same for every node, and linear in cores.
                per_core = self.hour_cache.get((site_name, hour))
                if per_core is None:
                    fp = footprint(site.energy, site.cost, 1, t, 3600.0)
                    per_core = self.hour_cache[(site_name, hour)] = (fp.cost, fp.kwh or 0.0, fp.gco2 or 0.0)
                cost, kwh, gco2 = (v * cpus for v in per_core)
            else:
                fp = footprint(site.energy, site.cost, cpus, t, nxt - t)
                cost, kwh, gco2 = fp.cost, fp.kwh or 0.0, fp.gco2 or 0.0
            totals.cost += cost
            totals.kwh += kwh
            totals.gco2 += gco2
            books = self.out.hourly.setdefault(hour, [0.0, 0.0])
            books[0] += cost
            books[1] += gco2
            t = nxt

    # ------------------------------------------------------------ decisions

    def arrive(self, t: float, job: Job) -> None:
        self.jobs[job.id] = job
        key = (job.group, job.nodes)
        if key not in self.fits_empty:  # on empty sites the answer depends on nothing else
            self.fits_empty[key] = not self.fits(job, self.snapshot(empty=True), t).unplaced
        if not self.fits_empty[key]:
            self.out.rejected += 1
            return
        self.queue.append(job)
        self.asked += job.nodes * self.cfg.cpus

    def fits(self, job: Job, snaps: list[SiteSnapshot], t: float) -> Any:
        req = Request(job.group, job.nodes, self.cfg.cpus, self.cfg.memory_mib, IMAGE)
        return place(req, snaps, self.rules, self.catalog, at=t, duration_s=job.duration_s)

    def schedule(self, t: float) -> None:
        while self.queue:
            job = self.queue[0]
            if job.nodes * self.cfg.cpus > self.free_cores():
                return  # certainly no room: not worth asking placement
            plan = self.fits(job, self.snapshot(), t)
            if plan.unplaced:
                return
            self.queue.pop(0)
            nodes = [self.create(t, job, d.site) for d in plan.placements for _ in range(d.count)]
            self.by_job[job.id] = nodes
            self.push(t + self.cfg.boot_delay_s, _READY, job.id)

    def free_cores(self, names: Sequence[str] | None = None) -> float:
        total = 0.0
        for name in self.order if names is None else names:
            cores = self.sites[name].cores
            if cores is None:
                return math.inf
            total += max(cores - self.used[name] * self.cfg.cpus, 0)
        return total

    def want_tick(self, t: float) -> None:
        if self.tick_due is None:
            step = self.cfg.tick_s
            self.tick_due = (math.floor((t - self.out.start) / step) + 1) * step + self.out.start
            self.push(self.tick_due, _TICK, None)

    def tick(self, t: float) -> None:
        """Decide moves home, only when something changed since the last decision (the same
        snapshot and burst nodes give the same answer) or a cooldown has run out since."""
        self.tick_due = None
        if not self.dirty:
            return
        self.dirty = False
        burst = [n.burst for n in self.remote.values() if n.burst is not None and n.moving_to is None]
        if not burst:
            return
        for rule in self.homing:
            last = self.last_move[rule.name]
            if last is not None and rule.home is not None and t - last < rule.home.cooldown_s:
                self.dirty = True  # decide again once the cooldown is over
                continue
            if self.free_cores(rule.from_sites) < self.cfg.cpus:
                continue  # no local room for even one node: nothing can move

            decision = decide_moves(rule, self.snapshot(), burst, last_move_at=last, now=t, catalog=self.catalog)
            for move in decision.moves:
                self.start_move(t, self.nodes[move.node], move.to_site)
            if decision.moves:
                self.last_move[rule.name] = t
                moved = {m.node for m in decision.moves}
                burst = [b for b in burst if b.name not in moved]
        if self.dirty:
            self.want_tick(t)

    def start_move(self, t: float, node: _Node, to_site: str) -> None:
        # The replacement (named node~ until it is up) is neither moved nor counted twice.
        node.moving_to = self.create(t, self.jobs[node.job], to_site, node.name + "~", node.index)
        self.remote.pop(node.name, None)
        self.push(t + self.cfg.boot_delay_s, _MOVED, node.name)

    def moved(self, t: float, name: str) -> None:
        node = self.nodes.get(name)
        if node is None or node.moving_to is None:
            return  # the job ended first
        replacement = node.moving_to
        self.destroy(t, node)
        del self.nodes[replacement.name]
        replacement.name = name
        self.nodes[name] = replacement
        jobs_nodes = self.by_job[node.job]
        jobs_nodes[next(i for i, n in enumerate(jobs_nodes) if n is node)] = replacement
        self.out.moves += 1
        self.out.move_times.append(t)

    def ready(self, t: float, job_id: int) -> None:
        job = self.jobs[job_id]
        self.out.waits.append(t - job.time)
        self.push(t + job.duration_s, _END, job_id)

    def end(self, t: float, job_id: int) -> None:
        together: dict[tuple[str, float], int] = {}   # a job's nodes alike are billed at once
        for node in self.by_job.pop(job_id):
            for n in (node.moving_to, node):
                if n is not None:
                    self.destroy(t, n, billed=True)
                    together[(n.site, n.since)] = together.get((n.site, n.since), 0) + 1
        for (site, since), count in together.items():
            self.bill(site, since, t, count)
        self.asked -= self.jobs[job_id].nodes * self.cfg.cpus

    def run(self, jobs: Sequence[Job]) -> Outcome:
        for job in jobs:
            self.push(job.time, _ARRIVE, job)
        self.record(self.out.start)
        while self.events:
            t, kind, _, payload = heapq.heappop(self.events)
            if kind == _ARRIVE:
                self.arrive(t, payload)
            elif kind == _READY:
                self.ready(t, payload)
            elif kind == _END:
                self.end(t, payload)
            elif kind == _MOVED:
                self.moved(t, payload)
            else:
                self.tick(t)
            if kind in (_ARRIVE, _END, _MOVED):
                self.schedule(t)
            if kind != _TICK:
                self.out.end = max(self.out.end, t)
                self.record(t)
        return self.out


def simulate(trace: Trace, sites: Sequence[SimSite], rules: Sequence[Rule], *, name: str = "rules",
             settings: Settings = Settings()) -> Outcome:
    """Replay `trace` against `sites` with `rules`; see the module docstring for the model."""
    run = _Run(name, sites, rules, settings, trace.start)
    return run.run(trace.jobs)
