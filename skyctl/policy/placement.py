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

from skyctl.model import (EXTRA_SPECS, FLAVOR_UNUSABLE, SPECIAL_HARDWARE, Capacity, Flavor, ImageRef, Limit, OwnedName,
                          Resources, Tier, boot_volume_gib)
from skyctl.policy.energy import EnergyModel, Footprint, footprint
from skyctl.policy.images import Endorsed, refusal
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
    receives_images: bool = False     # its driver can take a replicated image (upload or URL import)


def consume(site: SiteSnapshot, count: int, cpus: int, memory_mib: int, volume_gib: int = 0) -> SiteSnapshot:
    """The snapshot after `count` more nodes of this size landed on the site (with boot volumes
    of `volume_gib` each, when they boot from one)."""
    cap = site.capacity
    if cap is None or count == 0:
        return site

    def use(lim: Limit, n: int) -> Limit:
        return replace(lim, used=lim.used + n)

    need = Resources(cpus, memory_mib, volume_gib=volume_gib)
    others = tuple(replace(lim, used=lim.used + count * per + once, once=0) if per or once else lim
                   for lim, per, once in cap.lines(need)[3:])
    return replace(site, capacity=replace(cap, instances=use(cap.instances, count),
                                          cores=use(cap.cores, count * cpus),
                                          ram_mib=use(cap.ram_mib, count * memory_mib), others=others))


@dataclass(frozen=True, slots=True)
class Request:
    group: str
    count: int
    cpus: int
    memory_mib: int
    image: str                        # a logical image, or a site's own name/id when pinned
    size: str | None = None           # a logical size or, when pinned, a site's own flavor
    site: str | None = None           # --site: only this site
    disk_gib: int = 0                 # the size's root disk (0: any)
    extra_specs: tuple[tuple[str, str], ...] = ()   # flavor extra specs the size asks for


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a site was chosen or passed over: a stable `code` for scripts, a `text` for people.

    Codes: no_answer, marked_full, not_in_rule, no_image, no_flavor, quota, hosts_full,
    overflow_line (the rule keeps room free on a local site), image_mismatch, image_unverified,
    image_unsigned (images.policy, see skyctl.policy.images), replicate (the image is copied
    there first), flavors_passed_over (smaller flavors that did not suit the image or the size,
    and why), and the rank of a candidate:
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
                "image_id": (self.image.id or None) if self.image else None,
                "replicate": bool(self.image and self.image.extra.get(REPLICATE)),
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

    def hourly_cost(self) -> dict[str, float]:
        """What the nodes placed on each site that charges cost per hour there (its `price` or
        static `cost` per core-hour, averaged over the expected duration); free sites left out."""
        hours = self.duration_s / 3600.0
        out: dict[str, float] = {}
        for d in self.placements:
            fp = d.footprint
            if fp is not None and fp.cost and self.request.count and hours > 0:
                out[d.site] = fp.cost * d.count / self.request.count / hours
        return out

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
    endorsed: Mapping[str, Endorsed] = field(default_factory=dict)   # logical image -> its endorsement


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


REPLICATE = "replicate"   # ImageRef.extra key of a planned image that is to be replicated first


def _replicate_here(req: Request, site: SiteSnapshot, catalog: Catalog, rule: Rule | None,
                    why: Reason | None) -> Reason | None:
    """Under a rule with `replicate: auto`, a target that lacks the endorsed image (or holds a
    copy the policy refuses) becomes a candidate: the image is copied there before placing."""
    end = catalog.endorsed.get(req.image)
    if rule is None or rule.replicate != "auto" or site.name not in rule.to_sites or end is None \
            or end.sha512 is None or not site.receives_images or req.image not in catalog.images:
        return None
    had = f" ({why.text})" if why is not None else ""
    return Reason(REPLICATE, f"image {req.image!r} will be replicated here first from list {end.list}{had}")


def flavor_problem(req: Request, flavor: Flavor, image: ImageRef | None, *, pinned: bool = False) -> str | None:
    """Why `flavor` cannot take a node of `req` booting `image` (None: it can). A flavor the
    user named (`pinned`) may have special hardware without the size asking for it."""
    if flavor.extra.get(FLAVOR_UNUSABLE):
        return str(flavor.extra[FLAVOR_UNUSABLE])
    special = dict(flavor.extra.get(SPECIAL_HARDWARE) or {})
    asked = dict(req.extra_specs)
    if special and not pinned:
        unasked = sorted(k for k, v in special.items() if asked.get(k) != v)
        if unasked:
            return "special hardware (" + ", ".join(f"{k}={special[k]}" for k in unasked) + \
                ") the size does not ask for"
    specs = dict(flavor.extra.get(EXTRA_SPECS) or {})
    missing = sorted(k for k, v in asked.items() if specs.get(k) != v)
    if missing:
        return "lacks the size's extra specs " + ", ".join(f"{k}={asked[k]}" for k in missing)
    if image is not None and image.min_ram_mib and flavor.memory_mib < image.min_ram_mib:
        return f"{flavor.memory_mib} MiB RAM, image {image.name} needs min_ram {image.min_ram_mib} MiB"
    if not flavor.boot_volume:
        if image is not None and image.min_disk_gib and flavor.disk_gib < image.min_disk_gib:
            return f"disk {flavor.disk_gib} GiB, image {image.name} needs min_disk {image.min_disk_gib} GiB"
        if req.disk_gib and flavor.disk_gib < req.disk_gib:
            return f"disk {flavor.disk_gib} GiB, the size asks for {req.disk_gib} GiB"
    return None


def volume_gib(req: Request, flavor: Flavor, image: ImageRef | None) -> int:
    """The boot volume a node of `flavor` gets (0: it boots from the flavor's disk)."""
    if not flavor.boot_volume or image is None:
        return 0
    return boot_volume_gib(req.disk_gib, image)


def pick_flavor(req: Request, site: SiteSnapshot, catalog: Catalog,
                image: ImageRef | None = None) -> tuple[Flavor | None, Reason | None]:
    """The flavor for `req` on `site`, or why there is none. When smaller flavors were passed
    over (the image's min_ram/min_disk, the size's disk or extra specs, special hardware),
    the reason returned next to the flavor says which and why."""
    if req.size and req.size not in catalog.sizes and req.site == site.name:
        # A site's own flavor name or id, allowed when the site is pinned.
        for f in site.flavors:
            if req.size in (f.id, f.name):
                problem = flavor_problem(req, f, image, pinned=True)
                if problem:
                    return _no_flavor(f"flavor {f.name}: {problem}")
                return f, None
        return _no_flavor(f"site has no flavor {req.size!r}")
    if site.custom_sizes:
        return Flavor("custom", f"{req.cpus}cpu-{req.memory_mib}mib", req.cpus, req.memory_mib), None
    # Smallest first: fewest cpus, then least memory, then one with its own disk before one that
    # needs a boot volume (no volume quota used, nothing more to make), then disk, then name.
    fitting = sorted((f for f in site.flavors if f.fits(req.cpus, req.memory_mib)),
                     key=lambda f: (f.cpus, f.memory_mib, f.boot_volume, f.disk_gib, f.name))
    passed: list[str] = []
    for f in fitting:
        problem = flavor_problem(req, f, image)
        if problem is None:
            why = Reason("flavors_passed_over", "passed over: " + "; ".join(passed[:3])) if passed else None
            return f, why
        passed.append(f"{f.name}: {problem}")
    if passed:
        return _no_flavor(f"no usable flavor fits {req.cpus} cpu / {req.memory_mib} MiB ({'; '.join(passed[:3])})")
    return _no_flavor(f"no flavor fits {req.cpus} cpu / {req.memory_mib} MiB")


def room_on(site: SiteSnapshot, flavor: Flavor, rule: Rule | None,
            volume_gib: int = 0) -> tuple[int | None, Reason | None]:
    """How many nodes of `flavor` fit, honouring the rule's overflow line on a local site
    (the reason is set when that line, not the quota, is what limits the room)."""
    cap = site.capacity
    if cap is None:
        return None, None
    room = cap.fits_count(Resources(flavor.cpus, flavor.memory_mib, volume_gib=volume_gib))
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
        refused = refusal(image, req.image, catalog.endorsed.get(req.image)) if image is not None else None
        replicating = None
        if image is None or refused is not None:
            replicating = _replicate_here(req, site, catalog, rule, no_image if image is None else Reason(*refused))
            if replicating is None:
                skip((no_image or Reason("no_image", "no image")) if image is None else Reason(*refused))
                continue
            image = ImageRef(id="", name=req.image, extra={REPLICATE: True})
        flavor, flavor_why = pick_flavor(req, site, catalog, image)
        if flavor is None:
            skip(flavor_why or Reason("no_flavor", "no flavor"))
            continue
        gib = volume_gib(req, flavor, image)
        room, limit_why = room_on(site, flavor, rule, gib)
        if room == 0:
            passed.append(SiteDecision(site.name, 0, (limit_why or _quota_reason(site, flavor, gib),),
                                       image, flavor, 0))
            continue
        reasons = tuple(r for r in (replicating, flavor_why, limit_why) if r)
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
            full = "; ".join(f"{d.site}: {_binding_limit(site, d.flavor, volume_gib(req, d.flavor, d.image))}"
                             for site, d, _ in candidates if d.flavor is not None)
            unplaced_reason = f"no site has room for the rest ({full})"
        else:  # every site was passed over: say why each was (the quota line of a full site)
            unplaced_reason = "; ".join(f"{d.site}: {d.reasons[0].text}" for d in passed if d.reasons) \
                or "no site can host this request"
    return Plan(req, tuple(chosen + passed), rule.name if rule else None, unplaced_reason, at, duration_s)


def _binding_limit(site: SiteSnapshot, flavor: Flavor, gib: int = 0) -> str:
    """The quota line (or host room) that stops `site` from taking more nodes of `flavor`."""
    cap = site.capacity
    if cap is None:
        return "no limit known"
    lines = [(max(lim.free - once, 0) // per if per else 0, f"quota {lim.label} {lim.used}/{lim.limit} used")
             for lim, per, once in cap.lines(Resources(flavor.cpus, flavor.memory_mib, volume_gib=gib))
             if lim.free is not None and (per > 0 or once > lim.free)]
    lines += [(max(free, 0) // per, f"hosts have {free} {what} free")
              for free, per, what in ((cap.host_free_cpus, flavor.cpus, "cpus"),
                                      (cap.host_free_memory_mib, flavor.memory_mib, "MiB"))
              if free is not None and per > 0]
    return min(lines)[1] if lines else "no limit known"


def _quota_reason(site: SiteSnapshot, flavor: Flavor, gib: int = 0) -> Reason:
    cap = site.capacity
    if cap is None:
        return Reason("quota", "no room")
    for lim, per, once in cap.lines(Resources(flavor.cpus, flavor.memory_mib, volume_gib=gib)):
        if lim.free is not None and (per > 0 or once > 0) and lim.free - once < per:
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
