"""Launch across the sky: snapshot -> plan -> parallel creates -> failover -> (wait).

The decisions are the pure `skyctl.policy.placement.place`; this module does the I/O around
it. A site that answers QuotaExceeded / CapacityUnavailable (or any other failure) during the
launch is marked unusable for the rest of it and the nodes it could not take are placed again
on the others, with the reason recorded. Every create is written to the intent log first, so
`reconcile` can account for a launch that was interrupted.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from skyctl.errors import (SILENT_ROUNDS, DriverError, DriverTimeout, Interrupted, NoCapacity, NotFound, SkyError,
                           Transient, site_silent, with_site)
from skyctl.logsafe import site_scope
from skyctl.model import (CAPACITY_FAULT, SCHEDULING, Capability, GroupSpec, ImageRef, Node, NodeSpec, NodeState,
                          RenderedContext, Resources, node_labels)
from skyctl.ops import sizing
from skyctl.ops.grouplock import group_lock
from skyctl.ops.inventory import delete_nodes, prepare_access
from skyctl.ops.outcome import Outcome, classify_launch, raise_if_none_answered
from skyctl.ops.request import ContextFor
from skyctl.ops.sizing import group_size
from skyctl.ops.sky import Sky, retrying
from skyctl.polling import iterate_timeout, remaining
from skyctl.policy.placement import Catalog, Plan, Request, SiteDecision, SiteSnapshot, consume, place, volume_gib

_CREATE_ATTEMPTS = 4
SNAPSHOT_ATTEMPTS = 8
# Nodes on one site that may fail with Transient errors (after their own retries) before the
# site stops taking nodes for the rest of the launch.
_SITE_TRANSIENT_LIMIT = 3


@dataclass
class Failure:
    site: str
    name: str
    error: DriverError

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "name": self.name, "error": type(self.error).__name__,
                "message": self.error.line()}


@dataclass
class LaunchResult:
    group: str
    launch_id: str
    requested: int
    plans: list[Plan] = field(default_factory=list)
    created: list[Node] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    full_sites: dict[str, str] = field(default_factory=dict)   # site -> why it stopped taking nodes
    site_errors: dict[str, DriverError] = field(default_factory=dict)  # sites that did not answer
    transient: dict[str, int] = field(default_factory=dict)  # site -> nodes that failed flakily
    unplaced_reason: str | None = None
    existing: list[str] = field(default_factory=list)  # the group's nodes before this launch

    @property
    def missing(self) -> int:
        return self.requested - len(self.created)

    def outcome(self) -> Outcome:
        by_site = {**{f.site: f.error for f in self.failures}, **self.site_errors}
        considered = len(self.plans[0].decisions) if self.plans else 0
        return classify_launch(self.requested, len(self.created), by_site, considered)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "launch_id": self.launch_id,
            "requested": self.requested,
            "existing": list(self.existing),
            "created": len(self.created),
            "missing": self.missing,
            "missing_reason": self.unplaced_reason,
            "nodes": [n.to_json() for n in self.created],
            "failures": [f.to_json() for f in self.failures],
            "full_sites": dict(self.full_sites),
            "plan": [p.to_json() for p in self.plans],
        }


def catalog_of(sky: Sky) -> Catalog:
    from skyctl.ops.images import endorsements, mapped_images

    fed = sky.federation
    return Catalog(images=mapped_images(fed),
                   sizes={k: Resources(v.cpus, v.memory_mib) for k, v in fed.sizes.items()},
                   endorsed=endorsements(fed))


def snapshot(sky: Sky, sites: list[str] | None = None,
             errors: dict[str, DriverError] | None = None) -> list[SiteSnapshot]:
    """What every site offers and has free, asked of all sites at once. Sites that fail are
    kept (with their error) so the plan can say why they were passed over."""

    def look(driver: Any) -> SiteSnapshot:
        cfg = driver.site
        custom = Capability.CUSTOM_SIZES in driver.capabilities
        # capacity() first: it authenticates; then images and flavors side by side. Each
        # read is retried on its own (retrying the three together multiplies the odds of a
        # flaky cloud failing one of them), and more patiently than other reads: a site
        # missing from the snapshot is lost to the whole launch, and the first call carries
        # authentication and version discovery too.
        capacity = retrying(driver.capacity, SNAPSHOT_ATTEMPTS)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot") as pool:
            images = pool.submit(retrying, driver.images, SNAPSHOT_ATTEMPTS)
            flavors = () if custom else tuple(retrying(driver.flavors, SNAPSHOT_ATTEMPTS))
            return SiteSnapshot(name=cfg.name, driver=cfg.driver, tier=cfg.tier, cost=cfg.cost,
                                capacity=capacity, flavors=flavors, images=tuple(images.result()),
                                custom_sizes=custom, energy=sky.federation.energy.get(cfg.name),
                                receives_images=bool({Capability.IMAGE_UPLOAD, Capability.IMAGE_FROM_URL}
                                                     & driver.capabilities))

    from skyctl.ops.images import with_recorded
    from skyctl.images.store import recorded_hashes

    names = list(sites) if sites is not None else sky.site_names
    found, failed = sky.gather(look, names, retry=False)
    recorded = recorded_hashes()
    found = {n: replace(s, images=with_recorded(n, s.images, recorded)) for n, s in found.items()}  # `look` retries each read itself
    if errors is not None:
        errors.update(failed)
    out: list[SiteSnapshot] = []
    for name in names:
        if name in failed:
            cfg = sky.federation.sites[name]
            out.append(SiteSnapshot(name=name, driver=cfg.driver, tier=cfg.tier, cost=cfg.cost,
                                    error=failed[name].line(), energy=sky.federation.energy.get(name)))
        else:
            out.append(found[name])
    return out


def plan_launch(sky: Sky, request: Request, snaps: list[SiteSnapshot] | None = None, *,
                at: float | None = None, duration_s: float | None = None) -> Plan:
    """`at` fixes the clock prices and carbon are read at (default: now)."""
    if snaps is None:
        errors: dict[str, DriverError] = {}
        snaps = snapshot(sky, [request.site] if request.site else None, errors)
        raise_if_none_answered(errors, len(snaps))
    return place(request, snaps, sky.federation.rules, catalog_of(sky),
                 at=time.time() if at is None else at, duration_s=duration_s)


def _create_one(driver: Any, spec: NodeSpec, name: str, ctx: RenderedContext) -> Node:
    """Create with retries on Transient; before each retry look the node up by its labels,
    so a create that did land but whose answer was lost is never repeated."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    first = True
    for attempt in Retrying(stop=stop_after_attempt(_CREATE_ATTEMPTS), reraise=True,
                            retry=retry_if_exception_type(Transient),
                            wait=wait_random_exponential(multiplier=0.2, max=3.0)):
        with attempt:
            if not first:
                listed = retrying(lambda: driver.list({"group": spec.group, "launch": spec.labels["launch"]}))
                found = [n for n in listed if n.name == name]
                if found:
                    return found[0]
            first = False
            return driver.create(spec, name, ctx)
    raise AssertionError("unreachable")  # pragma: no cover


def launch(sky: Sky, request: Request, *, context_for: ContextFor, group_spec: GroupSpec,
           wait_ready: bool = False, launch_id: str | None = None, names: list[str] | None = None,
           size_to: bool = False, min_count: int = 0, bounded: bool = True,
           confirm: Callable[[Plan], bool] | None = None) -> LaunchResult:
    """Launch `request.count` more nodes named GROUP-INDEX (fresh indices), or exactly `names`
    when the caller names them (Slurm's node names), holding the group's lock throughout.

    `size_to`: `request.count` is the size the group should have; only the missing nodes are
    created (none when it has them already). `min_count` (in the same units as
    `request.count`): fewer than that and the launch is undone (what it created is deleted)
    and NoCapacity raised. `bounded` (all but a move home, which replaces a node): the group's
    size stays within its rule's `groups.NAME.min/max`; named nodes beyond the maximum are not
    created (the rest are). `confirm(plan)` sees the first plan before anything is created
    (the CLI shows its cost and may ask); False cancels the launch."""
    with group_lock(request.group, say=sky.reporter.message, sky=sky):
        return _launch(sky, request, context_for=context_for, group_spec=group_spec, wait_ready=wait_ready,
                       launch_id=launch_id, names=names, size_to=size_to, min_count=min_count, bounded=bounded,
                       confirm=confirm)


def _launch(sky: Sky, request: Request, *, context_for: ContextFor, group_spec: GroupSpec,
            wait_ready: bool, launch_id: str | None, names: list[str] | None, size_to: bool,
            min_count: int, bounded: bool, confirm: Callable[[Plan], bool] | None) -> LaunchResult:
    state = sky.state
    launch_id = launch_id or uuid.uuid4().hex[:12]
    owner = sky.owner
    # Counted inside the lock: what the group has now is what this launch builds on.
    size = group_size(sky, request.group)
    if size.errors and (size_to or bounded):
        sky.reporter.warning(f"{', '.join(sorted(size.errors))} did not answer: {request.group}'s nodes there are "
                             f"counted from local state ({len(size.guessed)})")
    at_least = 0
    if state.group_spec(request.group) is None:
        # New to this state (first launch, or the state was emptied): your nodes of this
        # group may still be on the clouds, and their names must not come again.
        at_least = max((int(n.labels.get("index", "-1")) for n in size.nodes
                        if str(n.labels.get("index", "")).isdigit()), default=-1) + 1
    capped: str | None = None
    if names is not None:
        free = sizing.room(sky, request.group, size.count) if bounded else None
        if free is not None and len(names) > free:
            capped = sizing.max_reason(sky, request.group)
            names = names[:free]
        request = replace(request, count=len(names))
    elif bounded or size_to:
        want = request.count
        count = sizing.to_create(sky, request.group, want, add=not size_to, has=size.count) if bounded \
            else max(0, want - size.count)
        request = replace(request, count=count)
    floor = max(0, min_count - size.count) if size_to else min_count
    result = LaunchResult(request.group, launch_id, request.count, existing=size.names)
    if capped:
        result.unplaced_reason = capped
    if request.count == 0:
        state.ensure_group(request.group, group_spec)
        if wait_ready and size_to and size.live:
            _wait_for_ssh(sky, [n for n in size.live if n.state is NodeState.RUNNING])
        return result
    snaps = snapshot(sky, [request.site] if request.site else None, result.site_errors)
    if floor or confirm is not None:  # before any name is taken: a refused launch leaves no trace
        first = place(request, snaps, sky.federation.rules, catalog_of(sky), at=time.time())
        if first.placed < floor:
            # All or nothing, known before anything is created: create nothing.
            result.plans.append(first)
            raise NoCapacity(f"{request.group}: only {first.placed} of the {floor} node(s) required "
                             f"(--min-count {min_count}) can be placed ({first.unplaced_reason or 'no room'}); "
                             "nothing was created")
        if confirm is not None and first.placed and not confirm(first):
            raise SkyError(f"launch of {request.group} cancelled: nothing was created")
    state.ensure_group(request.group, group_spec)
    if names is not None:
        pending = list(names)
    else:
        pending = [f"{request.group}-{i}"
                   for i in state.reserve_indices(request.group, request.count, at_least=at_least)]
    rep = sky.reporter
    rep.create_started(request.count)
    try:
        while pending:
            before = {n.id for n in result.created}
            pending = _place_and_create(sky, request, pending, snaps, result, context_for, owner, launch_id)
            fresh = [n for n in result.created if n.id not in before]
            # Always until the cloud has placed them (Nova checks quota and hosts after its
            # 202); with --wait until they run.
            faulted = _wait_and_drop_faulted(sky, fresh, launch_id, result, running=wait_ready) if fresh else []
            if not faulted:
                break
            # Nodes the cloud accepted but could not host: their sites are full for this
            # launch, and the same names are placed again elsewhere.
            pending = sorted(pending + faulted, key=_name_order)
        if floor and len(result.created) < floor:
            _undo(sky, result, floor, min_count)
        if wait_ready:
            result.created = _wait_for_ssh(sky, result.created)
    finally:
        rep.finished()
    if capped and not result.missing:
        result.unplaced_reason = capped
    return result


def _undo(sky: Sky, result: LaunchResult, floor: int, min_count: int) -> None:
    """Fewer than --min-count: delete what this launch created, then say why (exit 4)."""
    why = "; ".join(f"{s}: {w}" for s, w in result.full_sites.items()) or result.unplaced_reason or "no room"
    made = list(result.created)
    errors = delete_nodes(sky, made) if made else {}
    result.created = [n for n in made if n.site in errors]
    left = f"; could not delete {', '.join(n.name for n in result.created)} ({', '.join(errors)})" if errors else ""
    raise NoCapacity(f"{result.group}: only {len(made)} of the {floor} node(s) required "
                     f"(--min-count {min_count}) could be created ({why}); deleted the {len(made) - len(result.created)} "
                     f"this launch created{left}")


def _place_and_create(sky: Sky, request: Request, pending: list[str], snaps: list[SiteSnapshot],
                      result: LaunchResult, context_for: ContextFor, owner: Callable[[str], str],
                      launch_id: str) -> list[str]:
    """Rounds of plan -> parallel creates until every name is created or nothing more fits.
    Returns the names left over."""
    while pending:
        # What this launch already put on each site is no longer free there.
        landed: dict[str, int] = {}
        for n in result.created:
            landed[n.site] = landed.get(n.site, 0) + 1
        flavor_of = {d.site: d.flavor for p in result.plans for d in p.placements if d.flavor}
        gib_of = {d.site: volume_gib(request, d.flavor, d.image) for p in result.plans for d in p.placements
                  if d.flavor}
        now = [s if s.name not in result.full_sites else _mark_full(s, result.full_sites[s.name]) for s in snaps]
        now = [consume(s, landed.get(s.name, 0), flavor_of[s.name].cpus, flavor_of[s.name].memory_mib,
                       gib_of[s.name]) if s.name in flavor_of else s for s in now]
        plan = place(_with_count(request, len(pending)), now, sky.federation.rules, catalog_of(sky), at=time.time())
        result.plans.append(plan)
        sky.reporter.plan_ready(plan)
        if _replicate_first(sky, plan, snaps, result):
            continue   # the copies are mapped now: plan again with them
        if plan.placed == 0:
            result.unplaced_reason = plan.unplaced_reason
            break
        pending = _run_round(sky, plan, pending, result, context_for, owner, launch_id)
        if pending and plan.unplaced and not _any_new_full(result, plan):
            result.unplaced_reason = plan.unplaced_reason
            break
    return pending


def _wait_for_ssh(sky: Sky, nodes: list[Node]) -> list[Node]:
    """Running is not ready: wait until SSH login works with the delivered key and the
    context has finished (sites with ssh.check_ready: false are taken as they are)."""
    sites = sky.federation.sites
    nodes = prepare_access(sky, nodes)
    check = [n for n in nodes if sites[n.site].ssh.check_ready]
    if not check:
        return nodes
    from skyctl.keys import default_ssh_key
    from skyctl.ops.ready import console_reader, wait_ready
    from skyctl.ssh.session import SshOptions

    ready = wait_ready(sky, check, SshOptions(key=default_ssh_key(), console=console_reader(sky)))
    by_id = {n.id: n for n in ready}
    return [by_id.get(n.id, n) for n in nodes]


def _wait_and_drop_faulted(sky: Sky, fresh: list[Node], launch_id: str, result: LaunchResult, *,
                           running: bool) -> list[str]:
    """Wait until `fresh` are placed (or run). Nodes that went to error are deleted and their
    names returned (to be placed again); their sites take no more nodes in this launch. The
    cloud could not host them (no host, quota found used up after the create was accepted):
    the site is full. Any other fault: a failure with the cloud's message, and the launch goes on."""
    running_nodes, faulted = wait_nodes(sky, fresh, launch_id, until=_running if running else _placed)
    by_id = {n.id: n for n in running_nodes}
    result.created = [by_id.get(n.id, n) for n in result.created if n.id not in {f.id for f in faulted}]
    if not faulted:
        return []
    for n in faulted:
        if n.extra.get(CAPACITY_FAULT):
            why = str(n.extra.get("fault") or "no host could take the node")
            if n.site not in result.full_sites:
                result.full_sites[n.site] = why
                sky.reporter.site_full(n.site, why)
            continue
        err = DriverError(f"node {n.name} went to error: {n.extra.get('fault') or 'no reason given'}", site=n.site)
        result.failures.append(Failure(n.site, n.name, err))
        sky.reporter.node_failed(n.site, n.name, err)
        if n.site not in result.full_sites:
            result.full_sites[n.site] = err.reason()
            sky.reporter.site_error(n.site, err)
    delete_nodes(sky, faulted)
    return [n.name for n in faulted]


def _with_count(req: Request, n: int) -> Request:
    return replace(req, count=n)


def _mark_full(s: SiteSnapshot, why: str) -> SiteSnapshot:
    return replace(s, full=why)


def _replicate_first(sky: Sky, plan: Plan, snaps: list[SiteSnapshot], result: LaunchResult) -> bool:
    """Copy the endorsed image to every placement the plan marked `replicate` (a bursting rule
    with `replicate: auto`); a site whose copy fails is marked full with the reason. True when
    anything was attempted (the caller plans again)."""
    from skyctl.errors import SkyError
    from skyctl.ops.replicate import replicate
    from skyctl.policy.placement import REPLICATE

    todo = [d for d in plan.placements if d.image is not None and d.image.extra.get(REPLICATE)]
    for dec in todo:
        sky.reporter.message(f"replicating image {plan.request.image} to {dec.site} before placing nodes there")
        try:
            info = replicate(sky, plan.request.image, dec.site)
        except SkyError as e:
            result.full_sites[dec.site] = f"could not replicate image {plan.request.image}: {e.reason()}"
            sky.reporter.site_full(dec.site, result.full_sites[dec.site])
            continue
        copy = ImageRef(info["id"], info["name"], extra={"sha512": info["sha512"]})
        for i, s in enumerate(snaps):
            if s.name == dec.site:
                snaps[i] = replace(s, images=(*s.images, copy))
    return bool(todo)


def _any_new_full(result: LaunchResult, plan: Plan) -> bool:
    return any(d.site in result.full_sites for d in plan.placements)


def _run_round(sky: Sky, plan: Plan, names: list[str], result: LaunchResult, context_for: ContextFor,
               owner: Callable[[str], str], launch_id: str) -> list[str]:
    """Create the plan's nodes in parallel (bounded per site). Returns the names not created
    because their site turned out full or broken (to be placed again)."""
    state, rep = sky.state, sky.reporter
    queue = list(names)
    jobs: list[tuple[SiteDecision, str]] = []
    for dec in plan.placements:
        for _ in range(dec.count):
            jobs.append((dec, queue.pop(0)))
    unplaced = queue  # what the plan could not place at all
    back: list[str] = []
    lock = threading.Lock()
    gates = {d.site: threading.Semaphore(sky.federation.sites[d.site].max_parallel) for d in plan.placements}
    stopping = threading.Event()

    def one(dec: SiteDecision, name: str) -> None:
        site = dec.site
        with gates[site]:
            with lock:
                if site in result.full_sites or stopping.is_set():  # full, or Ctrl-C: send nothing more
                    back.append(name)
                    return
            assert dec.image is not None and dec.flavor is not None
            index = _name_order(name)[0]
            ctx = context_for(name)
            spec = NodeSpec(group=plan.request.group, site=site, image=dec.image, flavor=dec.flavor,
                            labels=node_labels(plan.request.group, launch_id, owner(site), index, name,
                                               ctx.login_user),
                            image_name=plan.request.image, size_name=plan.request.size or dec.flavor.name,
                            disk_gib=plan.request.disk_gib)
            intent = state.begin(launch_id, "create", plan.request.group, name, site)
            try:
                with site_scope(site):
                    node = _create_one(sky.driver(site), spec, name, ctx)
            except DriverError as e:
                with_site(e, site)
                state.finish(intent, "failed", e.line())
                with lock:
                    back.append(name)  # the node is placed again, here or elsewhere
                    if not e.site_full:
                        result.failures.append(Failure(site, name, e))
                    flaky = e.retryable and not e.site_full
                    if flaky:
                        # A flaky answer that outlasted the retries: give the site a few more
                        # chances before it is written off for this launch.
                        result.transient[site] = result.transient.get(site, 0) + 1
                    if site not in result.full_sites and (not flaky or result.transient[site] >= _SITE_TRANSIENT_LIMIT):
                        result.full_sites[site] = e.reason()
                        if e.site_full:
                            rep.site_full(site, e.reason())
                        else:
                            rep.site_error(site, e)
                rep.node_failed(site, name, e)
                return
            state.finish(intent, "done", node.id)
            state.record_node(name, plan.request.group, site, node.id, launch_id)
            with lock:
                result.created.append(node)
            rep.node_created(node)

    workers = sum(min(d.count, sky.federation.sites[d.site].max_parallel) for d in plan.placements)
    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="create")
    futures: set[Future[None]] = set()
    try:
        # Submitted inside the try: on a loaded machine the first creates can be on the wire
        # while later jobs are still being handed to threads, and Ctrl-C may land then.
        for dec, name in jobs:
            futures.add(pool.submit(one, dec, name))
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
    except KeyboardInterrupt:
        # Stop submitting; let the creates already on the wire finish so nothing is lost.
        stopping.set()
        in_flight = [f for f in futures if not f.cancel()]
        if in_flight:
            rep.message(f"interrupted: waiting for {len(in_flight)} create(s) already sent, so none is lost")
        pool.shutdown(wait=True, cancel_futures=True)  # also a job queued but not yet in `futures`
        raise Interrupted(f"interrupted: {len(result.created)} node(s) of group {plan.request.group!r} were "
                          f"created and are kept (see 'skyctl ps {plan.request.group}', "
                          f"'skyctl delete {plan.request.group}')") from None
    pool.shutdown(wait=True)
    result.created.sort(key=lambda n: _name_order(n.name))
    # Nodes not created go back in their original order.
    order = {n: i for i, n in enumerate(names)}
    return sorted(back + unplaced, key=order.__getitem__)


def _name_order(name: str) -> tuple[int, str]:
    """A node's index (its trailing number: GROUP-7, or a given name such as sky-b007) and name."""
    digits = re.search(r"(\d+)$", name)
    return (int(digits.group(1)) if digits else 0, name)


def _running(node: Node) -> bool:
    return node.state is NodeState.RUNNING


def _placed(node: Node) -> bool:
    return not node.extra.get(SCHEDULING)


def wait_running(sky: Sky, nodes: list[Node], launch_id: str, *, poll: float = 0.5) -> list[Node]:
    """Wait until every node runs; a node in error (for whatever reason) raises."""
    running, faulted = wait_nodes(sky, nodes, launch_id, poll=poll)
    if faulted:
        n = faulted[0]
        raise DriverError(f"node {n.name} went to error: {n.extra.get('fault') or 'no reason given'}", site=n.site)
    return running


# Polls a node may be missing from its site's list before it counts as gone (Nova's paging
# can skip a server while others are being created).
_MISSING_POLLS = 3


def wait_nodes(sky: Sky, nodes: list[Node], launch_id: str, *, until: Callable[[Node], bool] = _running,
               poll: float = 0.5) -> tuple[list[Node], list[Node]]:
    """Poll each site's list by the launch's labels (one request per site per round) until
    `until(node)` holds for every node. Returns (nodes, faulted): faulted are the nodes that
    went to an error state (`extra["capacity_fault"]` when the cloud could not host them,
    `extra["fault"]` says why). A site's ready_timeout running out raises naming the nodes."""
    deadline: dict[str, float] = {}
    current: dict[str, Node] = {n.id: n for n in nodes}
    faulted: dict[str, Node] = {}
    missing: dict[str, int] = {}
    silent: dict[str, int] = {}  # site -> rounds in a row it did not answer
    group = nodes[0].group if nodes else None
    # What create returned is not yet what the cloud says: always look at least once.
    waiting: dict[str, set[str]] = {}
    for n in nodes:
        waiting.setdefault(n.site, set()).add(n.id)
        deadline[n.site] = time.monotonic() + sky.federation.sites[n.site].ready_timeout
    # Each site has its own deadline (sites.X.ready_timeout), checked below.
    for _ in iterate_timeout(None, "nodes to start", interval=poll):
        if not waiting:
            break
        listed = sky.fanout(lambda d: d.list({"group": group, "launch": launch_id}), list(waiting))
        for site, res in listed.items():
            if isinstance(res, DriverError):
                if not res.retryable:
                    raise res
                silent[site] = silent.get(site, 0) + 1  # a site that stopped answering ends the wait early
                if silent[site] >= SILENT_ROUNDS:
                    raise site_silent(site, res, list(current.values())) from None
                continue
            silent.pop(site, None)
            seen = {n.id: n for n in res}
            for node_id in waiting[site]:
                if node_id not in seen:
                    missing[node_id] = missing.get(node_id, 0) + 1
                    if missing[node_id] >= _MISSING_POLLS:
                        raise NotFound(f"node {current[node_id].name} disappeared while starting", site=site)
                    continue
                missing.pop(node_id, None)
                node = current[node_id] = seen[node_id]
                if node.extra.get(CAPACITY_FAULT) or node.state is NodeState.ERROR:
                    faulted[node_id] = node
                sky.reporter.node_stage(node, node.state.value)
        waiting = {s: left for s, ids in waiting.items()
                   if (left := {i for i in ids if i not in faulted and (i in missing or not until(current[i]))})}
        for site, ids in waiting.items():
            if remaining(deadline[site]) == 0:
                stuck = sorted(current[i].name for i in ids)
                raise DriverTimeout(f"{', '.join(stuck)} not ready after "
                                    f"{sky.federation.sites[site].ready_timeout:g}s "
                                    f"(sites.{site}.ready_timeout)", site=site)
    return [current[n.id] for n in nodes if n.id not in faulted], list(faulted.values())
