"""Pure placement: where the nodes of one request go, and why.

`place(request, sites, rules)` looks only at a snapshot (what each site offers and has free)
and returns a `Plan` that places every node it can and records, for every site, why it was
chosen or passed over. No I/O: the ops layer takes the snapshot and carries the plan out.

Ranking (deterministic): local tier first; then the governing rule's order: `listed` (the
rule's `to` list, then most free room), `cost` or `carbon` (least for the request's nodes over
the expected duration, from `skyctl.policy.energy`, then most free room), or `weighted` (least
weighted sum of the scaled terms); then name. Scaled terms put each candidate between the best
(0) and the worst (1) of its tier; a site with unknown carbon counts as the worst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skyctl.model import FLAVOR_UNUSABLE, Capacity, Flavor, ImageRef, Limit, OwnedName, Resources, Tier
from skyctl.policy.energy import EnergyModel, Footprint, footprint
from skyctl.policy.rules import DEFAULT_DURATION_S, Rule, RuleOrder, Weights, rule_for


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """What one site offers right now. `error` set means it did not answer."""

    name: str
    driver: str
    tier: Tier
    cost: float = 0.0
    capacity: Capacity | None = None
    flavors: tuple[Flavor, ...] = ()
    images: tuple[ImageRef, ...] = ()
    custom_sizes: bool = False        # any cpus/memory is accepted (OpenNebula)
    error: str | None = None
    full: str | None = None           # marked full during this launch, with the reason
    energy: EnergyModel | None = None  # power, price and carbon (None: static `cost` per core-hour)


def consume(site: SiteSnapshot, count: int, cpus: int, memory_mib: int) -> SiteSnapshot:
    """The snapshot after `count` more nodes of this size landed on the site."""
    cap = site.capacity
    if cap is None or count == 0:
        return site

    def use(lim: Limit, n: int) -> Limit:
        return replace(lim, used=lim.used + n)

    return replace(site, capacity=replace(cap, instances=use(cap.instances, count),
                                          cores=use(cap.cores, count * cpus),
                                          ram_mib=use(cap.ram_mib, count * memory_mib)))


@dataclass(frozen=True, slots=True)
class Request:
    group: str
    count: int
    cpus: int
    memory_mib: int
    image: str                        # a logical image, or a site's own name/id when pinned
    size: str | None = None           # a logical size or, when pinned, a site's own flavor
    site: str | None = None           # --site: only this site


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a site was chosen or passed over: a stable `code` for scripts, a `text` for people.

    Codes: no_answer, marked_full, not_in_rule, no_image, no_flavor, quota, hosts_full,
    overflow_line (the rule keeps room free on a local site), and the rank of a candidate:
    tier_order (local site), rule_order (listed by the rule), cost_order (remote, by cost),
    carbon_order (remote, by gCO2), weighted_order (remote, by the weighted scaled terms).
    """

    code: str
    text: str

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True, slots=True)
class SiteDecision:
    site: str
    count: int                        # nodes placed here (0 = passed over)
    reasons: tuple[Reason, ...]
    image: ImageRef | None = None
    flavor: Flavor | None = None
    room: int | None = None           # how many would fit (None = no limit known)
    footprint: Footprint | None = None  # the whole request here for the expected duration
    scaled: Scaled | None = None

    def to_json(self) -> dict[str, Any]:
        fp = self.footprint
        return {"site": self.site, "count": self.count, "reasons": [r.to_json() for r in self.reasons],
                "image": self.image.name if self.image else None,
                "image_id": self.image.id if self.image else None,
                "flavor": self.flavor.name if self.flavor else None,
                "room": self.room,
                "kwh": _round(fp.kwh) if fp else None, "cost": _round(fp.cost) if fp else None,
                "gco2": _round(fp.gco2) if fp else None,
                "scaled": self.scaled.to_json() if self.scaled else None}


@dataclass(frozen=True, slots=True)
class Scaled:
    """A candidate's terms scaled across the candidates of its tier: 0 best, 1 worst."""

    cost: float
    carbon: float
    free_room: float
    score: float        # the rule's weights applied (equal weights when the rule is not weighted)

    def to_json(self) -> dict[str, float]:
        return {"cost": round(self.cost, 6), "carbon": round(self.carbon, 6), "free_room": round(self.free_room, 6),
                "score": round(self.score, 6)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


@dataclass(frozen=True, slots=True)
class Plan:
    request: Request
    decisions: tuple[SiteDecision, ...]     # every site considered, in rank order
    rule: str | None = None
    unplaced_reason: str | None = None
    at: float | None = None           # the clock the energy figures were taken at (epoch s)
    duration_s: float = DEFAULT_DURATION_S

    @property
    def placements(self) -> list[SiteDecision]:
        return [d for d in self.decisions if d.count > 0]

    @property
    def placed(self) -> int:
        return sum(d.count for d in self.decisions)

    @property
    def unplaced(self) -> int:
        return self.request.count - self.placed

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {"group": r.group, "requested": r.count, "placed": self.placed, "unplaced": self.unplaced,
                "unplaced_reason": self.unplaced_reason, "rule": self.rule,
                "cpus": r.cpus, "memory_mib": r.memory_mib, "image": r.image, "size": r.size,
                "at": self.at, "duration_s": self.duration_s,
                "sites": [d.to_json() for d in self.decisions]}


@dataclass(frozen=True, slots=True)
class Catalog:
    """The federation file's logical names: image -> {site: native name or id}."""

    images: Mapping[str, Mapping[str, str | OwnedName]] = field(default_factory=dict)
    sizes: Mapping[str, Resources] = field(default_factory=dict)


def _no_image(text: str) -> tuple[None, Reason]:
    return None, Reason("no_image", text)


def _no_flavor(text: str) -> tuple[None, Reason]:
    return None, Reason("no_flavor", text)


def pick_image(req: Request, site: SiteSnapshot, catalog: Catalog) -> tuple[ImageRef | None, Reason | None]:
    per_site = catalog.images.get(req.image)
    if per_site is not None:
        wanted = per_site.get(site.name)
        if wanted is None:
            return _no_image(f"image {req.image!r} is not mapped to this site")
    elif req.site == site.name:
        wanted = req.image  # a site's own image name or id, allowed when the site is pinned
    else:
        return _no_image(f"image {req.image!r} is not a logical image")
    if isinstance(wanted, OwnedName):
        # named with its owner: drivers put the owner's name in ImageRef.extra["owner"]
        owned = [img for img in site.images if img.name == wanted.name and img.extra.get("owner") == wanted.owner]
        if len(owned) == 1:
            return owned[0], None
        return _no_image(f"site has no image {wanted}" if not owned else
                         f"image {wanted} is ambiguous here ({len(owned)} images); map it by id")
    for img in site.images:
        if img.id == wanted:
            return img, None
    matches = [img for img in site.images if img.name == wanted]
    if len(matches) > 1:
        return _no_image(f"image name {wanted!r} is ambiguous here ({len(matches)} images); map it by id")
    if matches:
        return matches[0], None
    return _no_image(f"site has no image {wanted!r}")


def pick_flavor(req: Request, site: SiteSnapshot, catalog: Catalog) -> tuple[Flavor | None, Reason | None]:
    if req.size and req.size not in catalog.sizes and req.site == site.name:
        # A site's own flavor name or id, allowed when the site is pinned.
        for f in site.flavors:
            if req.size in (f.id, f.name):
                if f.extra.get(FLAVOR_UNUSABLE):
                    return _no_flavor(f"flavor {f.name}: {f.extra[FLAVOR_UNUSABLE]}")
                return f, None
        return _no_flavor(f"site has no flavor {req.size!r}")
    if site.custom_sizes:
        return Flavor("custom", f"{req.cpus}cpu-{req.memory_mib}mib", req.cpus, req.memory_mib), None
    fitting = [f for f in site.flavors if f.fits(req.cpus, req.memory_mib)]
    fits = [f for f in fitting if not f.extra.get(FLAVOR_UNUSABLE)]
    if not fits and fitting:
        passed = "; ".join(f"{f.name}: {f.extra[FLAVOR_UNUSABLE]}" for f in fitting[:3])
        return _no_flavor(f"no usable flavor fits {req.cpus} cpu / {req.memory_mib} MiB ({passed})")
    if not fits:
        return _no_flavor(f"no flavor fits {req.cpus} cpu / {req.memory_mib} MiB")
    # The smallest that fits: fewest cpus, then least memory, then name.
    return min(fits, key=lambda f: (f.cpus, f.memory_mib, f.disk_gib, f.name)), None


def room_on(site: SiteSnapshot, flavor: Flavor, rule: Rule | None) -> tuple[int | None, Reason | None]:
    """How many nodes of `flavor` fit, honouring the rule's overflow line on a local site
    (the reason is set when that line, not the quota, is what limits the room)."""
    cap = site.capacity
    if cap is None:
        return None, None
    room = cap.fits_count(Resources(flavor.cpus, flavor.memory_mib))
    why = None
    if rule is not None and site.tier is Tier.LOCAL and site.name in rule.from_sites:
        line = rule.overflow
        cores = cap.cores
        allowed: int | None = None
        if line.keep_free_cores is not None and cores.limit is not None:
            allowed = (cores.limit - line.keep_free_cores - cores.used) // max(flavor.cpus, 1)
        elif line.max_utilisation is not None and cores.limit is not None:
            allowed = int(cores.limit * line.max_utilisation - cores.used) // max(flavor.cpus, 1)
        if allowed is not None:
            allowed = max(allowed, 0)
            if room is None or allowed < room:
                room, why = allowed, Reason("overflow_line", f"rule {rule.name}: {line.describe()}")
    return room, why


def _scale(values: Sequence[float | None], *, higher_is_better: bool = False) -> list[float]:
    """Each value between the best (0) and the worst (1) of `values`; unknown (None) is worst."""
    known = [v for v in values if v is not None]
    if not known:
        return [0.0] * len(values)
    lo, hi = min(known), max(known)
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(1.0)
        elif span <= 0:
            out.append(0.0)
        else:
            out.append((hi - v) / span if higher_is_better else (v - lo) / span)
    return out


_UNLIMITED = 1 << 30


def _scaled_terms(cands: Sequence[tuple[SiteSnapshot, SiteDecision, int | None]], weights: Weights) -> list[Scaled]:
    """Scaled cost, carbon and free room of each candidate, against the others of its tier."""
    out: list[Scaled | None] = [None] * len(cands)
    total = (weights.cost + weights.carbon + weights.free_room) or 1.0
    for tier in (Tier.LOCAL, Tier.REMOTE):
        idx = [i for i, c in enumerate(cands) if (c[0].tier is Tier.LOCAL) == (tier is Tier.LOCAL)]
        fps = [cands[i][1].footprint for i in idx]
        cost = _scale([fp.cost if fp else None for fp in fps])
        carbon = _scale([fp.gco2 if fp else None for fp in fps])
        room = _scale([float(_UNLIMITED if cands[i][2] is None else cands[i][2]) for i in idx], higher_is_better=True)
        for k, i in enumerate(idx):
            score = (weights.cost * cost[k] + weights.carbon * carbon[k] + weights.free_room * room[k]) / total
            out[i] = Scaled(cost[k], carbon[k], room[k], score)
    return [s for s in out if s is not None]


def _rank_key(site: SiteSnapshot, dec: SiteDecision, room: int | None, rule: Rule | None) -> tuple[Any, ...]:
    tier = 0 if site.tier is Tier.LOCAL else 1
    free = -(room if room is not None else _UNLIMITED)
    order = rule.order if rule is not None else RuleOrder.COST
    fp, scaled = dec.footprint, dec.scaled
    if order is RuleOrder.LISTED:
        listed = rule is not None and site.name in rule.to_sites
        return (tier, rule.to_sites.index(site.name) if listed and rule else 0, 0.0 if listed else site.cost,
                free, site.name)
    if order is RuleOrder.CARBON:
        unknown = fp is None or fp.gco2 is None
        return (tier, unknown, 0.0 if unknown or fp is None else fp.gco2, free, site.name)
    if order is RuleOrder.WEIGHTED and scaled is not None:
        return (tier, scaled.score, site.name)
    return (tier, fp.cost if fp is not None else site.cost, free, site.name)


def place(req: Request, sites: Sequence[SiteSnapshot], rules: Sequence[Rule] = (),
          catalog: Catalog = Catalog(), *, at: float = 0.0, duration_s: float | None = None) -> Plan:
    """`at` is the clock (epoch seconds) the energy, price and carbon figures are taken at, from
    the caller: placement reads no clock. `duration_s` defaults to the rule's expected duration."""
    rule = rule_for(rules, req.group) if rules else None
    if duration_s is None:
        duration_s = rule.expected_duration_s if rule is not None else DEFAULT_DURATION_S
    candidates: list[tuple[SiteSnapshot, SiteDecision, int | None]] = []
    passed: list[SiteDecision] = []

    for site in sites:
        def skip(reason: Reason, s: SiteSnapshot = site) -> None:
            passed.append(SiteDecision(s.name, 0, (reason,)))

        if req.site is not None and site.name != req.site:
            continue  # pinned elsewhere: not considered at all
        if site.error:
            skip(Reason("no_answer", f"did not answer: {site.error}"))
            continue
        if site.full:
            skip(Reason("marked_full", f"full: {site.full}"))
            continue
        if rule is not None and req.site is None and site.name not in rule.sites():
            skip(Reason("not_in_rule", f"not in rule {rule.name}"))
            continue
        image, no_image = pick_image(req, site, catalog)
        if image is None:
            skip(no_image or Reason("no_image", "no image"))
            continue
        flavor, no_flavor = pick_flavor(req, site, catalog)
        if flavor is None:
            skip(no_flavor or Reason("no_flavor", "no flavor"))
            continue
        room, limit_why = room_on(site, flavor, rule)
        if room == 0:
            passed.append(SiteDecision(site.name, 0, (limit_why or _quota_reason(site, flavor),),
                                       image, flavor, 0))
            continue
        reasons = (limit_why,) if limit_why else ()
        fp = footprint(site.energy, site.cost, req.count * flavor.cpus, at, duration_s)
        candidates.append((site, SiteDecision(site.name, 0, reasons, image, flavor, room, fp), room))

    weights = rule.weights if rule is not None and rule.order is RuleOrder.WEIGHTED else Weights()
    candidates = [(site, replace(dec, scaled=sc), room)
                  for (site, dec, room), sc in zip(candidates, _scaled_terms(candidates, weights), strict=True)]
    candidates.sort(key=lambda c: _rank_key(c[0], c[1], c[2], rule))
    remaining = req.count
    chosen: list[SiteDecision] = []
    for rank, (site, dec, room) in enumerate(candidates):
        take = remaining if room is None else min(room, remaining)
        code, why = _rank_reason(site, dec, rank, rule, req.count, duration_s)
        if take > 0:
            fits = "no known limit" if room is None else f"room for {room}"
            chosen.append(replace(dec, count=take, reasons=(*dec.reasons, Reason(code, f"{why}; {fits}"))))
            remaining -= take
        else:
            chosen.append(replace(dec, reasons=(*dec.reasons, Reason(code, f"{why}; not needed"))))

    unplaced_reason = None
    if remaining > 0:
        if candidates:
            full = "; ".join(f"{d.site}: {_binding_limit(site, d.flavor)}" for site, d, _ in candidates
                             if d.flavor is not None)
            unplaced_reason = f"no site has room for the rest ({full})"
        else:
            unplaced_reason = "no site can host this request"
    return Plan(req, tuple(chosen + passed), rule.name if rule else None, unplaced_reason, at, duration_s)


def _binding_limit(site: SiteSnapshot, flavor: Flavor) -> str:
    """The quota line (or host room) that stops `site` from taking more nodes of `flavor`."""
    cap = site.capacity
    if cap is None:
        return "no limit known"
    lines = [(lim.free // per, f"quota {lim.label} {lim.used}/{lim.limit} used")
             for lim, per in ((cap.instances, 1), (cap.cores, flavor.cpus), (cap.ram_mib, flavor.memory_mib))
             if lim.free is not None and per > 0]
    lines += [(max(free, 0) // per, f"hosts have {free} {what} free")
              for free, per, what in ((cap.host_free_cpus, flavor.cpus, "cpus"),
                                      (cap.host_free_memory_mib, flavor.memory_mib, "MiB"))
              if free is not None and per > 0]
    return min(lines)[1] if lines else "no limit known"


def _quota_reason(site: SiteSnapshot, flavor: Flavor) -> Reason:
    cap = site.capacity
    if cap is None:
        return Reason("quota", "no room")
    for lim, per in ((cap.instances, 1), (cap.cores, flavor.cpus), (cap.ram_mib, flavor.memory_mib)):
        if lim.free is not None and lim.free < per:
            return Reason("quota", f"quota: {lim.label} {lim.used}/{lim.limit} used")
    return Reason("hosts_full", "hosts have no room")


def _hours(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _rank_reason(site: SiteSnapshot, dec: SiteDecision, rank: int, rule: Rule | None, count: int,
                 duration_s: float) -> tuple[str, str]:
    if site.tier is Tier.LOCAL:
        return "tier_order", f"rank {rank + 1}: local site"
    order = rule.order if rule is not None else RuleOrder.COST
    if rule is not None and order is RuleOrder.LISTED:
        return "rule_order", f"rank {rank + 1}: listed by rule {rule.name}"
    fp, scaled = dec.footprint, dec.scaled
    run = f"{count} node(s) for {_hours(duration_s)}"
    if order is RuleOrder.CARBON:
        gco2 = "carbon unknown" if fp is None or fp.gco2 is None else f"{fp.gco2:.4g} gCO2"
        return "carbon_order", f"rank {rank + 1}: remote, {gco2} for {run}"
    if order is RuleOrder.WEIGHTED and rule is not None and scaled is not None:
        w = rule.weights
        return "weighted_order", (f"rank {rank + 1}: remote, score {scaled.score:.3f} from scaled cost "
                                  f"{scaled.cost:.2f} x{w.cost:g}, carbon {scaled.carbon:.2f} x{w.carbon:g}, "
                                  f"free room {scaled.free_room:.2f} x{w.free_room:g}")
    if fp is None or not fp.priced:
        return "cost_order", f"rank {rank + 1}: remote, cost {site.cost:g}"
    return "cost_order", f"rank {rank + 1}: remote, cost {fp.cost:.4g} for {run}"
