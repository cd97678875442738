"""Demand-driven groups: run a rule's demand command, decide (pure, skyctl.policy.bursting),
then grow through placement or drain and delete idle nodes; and the drain every deletion by a
rule goes through (scale-in, moves home).

The demand command is run without a shell, with a timeout; what it printed is parsed by the
policy, and anything wrong (not found, a non-zero exit, a timeout, bad JSON) is one line naming
the rule and the command. Nodes that went away without skyctl deleting them (or went to error)
are early deaths when they lived less than `early_death.within`: they are written to the burst
log (`died:RULE`) so the site's back-off outlives the process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from skyctl.errors import SkyError
from skyctl.model import Node, NodeState
from skyctl.ops.grouplock import group_lock
from skyctl.ops.inventory import Listing, delete_nodes
from skyctl.ops.launch import catalog_of, launch
from skyctl.ops.request import context_of_group, request_for
from skyctl.ops.sky import Sky
from skyctl.ops.slurm import drain_slurm_node, release_slurm_node
from skyctl.policy.bursting import Death, DemandReading, DemandTick, GroupNode, decide_demand, parse_reading
from skyctl.policy.placement import SiteSnapshot
from skyctl.policy.rules import DrainPolicy, Rule


class DemandError(SkyError):
    """The demand command could not be read (exit 1)."""


def _shown(argv: tuple[str, ...] | list[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 80 else text[:77] + "..."


def read_demand(rule: Rule) -> DemandReading:
    """Run the rule's demand command and parse what it printed."""
    policy = rule.demand
    assert policy is not None
    what = f"bursting rule {rule.name}: demand command {_shown(policy.command)}"
    try:
        proc = subprocess.run(list(policy.command), capture_output=True, text=True, timeout=policy.timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise DemandError(f"{what}: not found") from None
    except PermissionError:
        raise DemandError(f"{what}: not executable") from None
    except subprocess.TimeoutExpired:
        raise DemandError(f"{what}: no answer in {policy.timeout_s:g}s (demand.timeout)") from None
    except OSError as e:
        raise DemandError(f"{what}: {e.strerror or e}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DemandError(f"{what}: exited {proc.returncode}" + (f": {last[-1][:200]}" if last else ""))
    try:
        return parse_reading(proc.stdout)
    except ValueError as e:
        raise DemandError(f"{what}: {e}") from None


def run_drain(drain: DrainPolicy, node: Node) -> str | None:
    """The rule's drain_command for one node; None when it drained, else why not (one line)."""
    argv = drain.argv(node.name, node.site, node.group or "")
    env = {**os.environ, "SKYCTL_NODE": node.name, "SKYCTL_SITE": node.site, "SKYCTL_GROUP": node.group or ""}
    what = f"drain_command {_shown(argv)}"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=drain.timeout_s, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return f"{what}: not found"
    except subprocess.TimeoutExpired:
        return f"{what}: not drained after {drain.timeout_s:g}s (drain_timeout)"
    except OSError as e:
        return f"{what}: {e.strerror or e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return f"{what}: exited {proc.returncode}" + (f": {last[-1][:200]}" if last else "")
    return None


def drain_before_delete(sky: Sky, rule: Rule | None, node: Node) -> str | None:
    """Everything that must let go of `node` before skyctl deletes it: the rule's drain_command,
    then, for a node a `slurm:` group owns, Slurm's own drain. None when it may go."""
    if rule is not None and rule.drain is not None:
        why = run_drain(rule.drain, node)
        if why:
            return why
    return drain_slurm_node(sky, node, timeout=rule.drain.timeout_s if rule and rule.drain else 600.0)


# --- deaths -----------------------------------------------------------------------------------

def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _logged_deaths(sky: Sky, rule: Rule, now: float) -> list[Death]:
    policy = rule.demand
    assert policy is not None
    out = []
    for at, action in sky.state.burst_events(f"died:{rule.name}", since=now - policy.pause_s):
        try:
            d = json.loads(action)
            out.append(Death(str(d["site"]), str(d["node"]), at, float(d["lived_s"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _new_deaths(sky: Sky, group: str, listing: Listing, now: float) -> tuple[list[Death], list[Node], list[str]]:
    """Nodes of `group` gone since skyctl recorded them (on sites that answered), and nodes in
    error. Returns (deaths, nodes in error to delete, records to forget)."""
    answered = set(sky.site_names) - set(listing.errors)
    seen = {(n.name, n.site) for n in listing.nodes if n.group == group}
    deaths: list[Death] = []
    forget: list[str] = []
    for rec in sky.state.nodes(group):
        # Recorded after the listing (a launch running meanwhile): not seen yet, not dead.
        if rec.created_at < now and rec.site in answered and (rec.name, rec.site) not in seen:
            deaths.append(Death(rec.site, rec.name, now, max(now - rec.created_at, 0.0)))
            forget.append(rec.name)
    broken = [n for n in listing.nodes if n.group == group and n.state is NodeState.ERROR]
    for n in broken:
        started = _epoch(n.created_at)
        deaths.append(Death(n.site, n.name, now, max(now - started, 0.0) if started else 0.0))
    return deaths, broken, forget


# --- one rule, one tick -----------------------------------------------------------------------

@dataclass
class DemandResult:
    rule: str
    group: str
    tick: DemandTick | None = None
    error: str | None = None
    reading: DemandReading | None = None
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)      # node -> why it was not deleted (drain)
    failed: dict[str, str] = field(default_factory=dict)    # site -> why its new nodes were not made
    died: list[str] = field(default_factory=list)           # nodes seen gone early this tick

    @property
    def ok(self) -> bool:
        return self.error is None and not self.kept and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "group": self.group, "error": self.error,
                "reading": self.reading.to_json() if self.reading else None,
                "decision": self.tick.to_json() if self.tick else None,
                "created": self.created, "deleted": self.deleted, "kept": self.kept, "failed": self.failed,
                "died": self.died}


def due(sky: Sky, rule: Rule, now: float) -> bool:
    """Whether `every` has passed since the rule's demand command last ran (a watch tick that
    comes a little early still counts)."""
    assert rule.demand is not None
    last = sky.state.last_burst(f"demand:{rule.name}")
    return last is None or now - last >= rule.demand.every_s * 0.9


def assess_demand(sky: Sky, rule: Rule, snaps: list[SiteSnapshot], listing: Listing, *, now: float,
                  record: bool = False) -> tuple[DemandResult, list[Node], list[str]]:
    """Read the demand and decide (no change on the clouds). With `record`, the run and new early
    deaths go to the burst log. Returns the result, nodes in error and records to forget."""
    policy = rule.demand
    assert policy is not None
    group = policy.group
    out = DemandResult(rule.name, group)
    spec = sky.state.group_spec(group)
    if spec is None:
        out.error = (f"bursting rule {rule.name}: group {group!r} is not known here; launch it once "
                     f"(skyctl launch {group} --count 1 --image ... --size ...) so skyctl knows its image, size "
                     "and context")
        return out, [], []
    try:
        out.reading = read_demand(rule)
    except DemandError as e:
        out.error = e.line()
        return out, [], []
    finally:
        if record:
            sky.state.log_burst(f"demand:{rule.name}", "ran")
    deaths, broken, forget = _new_deaths(sky, group, listing, now)
    early = [d for d in deaths if d.lived_s < policy.died_within_s]
    out.died = [d.node for d in early]
    if record:
        for d in early:
            sky.state.log_burst(f"died:{rule.name}", json.dumps({"site": d.site, "node": d.node, "lived_s": d.lived_s}))
    past = _logged_deaths(sky, rule, now)
    nodes = [GroupNode(n.name, n.site, n.state.value, _epoch(n.created_at), _index(n))
             for n in listing.nodes if n.group == group]
    known = {(d.site, d.node, round(d.lived_s)) for d in past}
    all_deaths = past + [d for d in early if (d.site, d.node, round(d.lived_s)) not in known]
    out.tick = decide_demand(rule, out.reading, nodes, snaps, cpus=spec.cpus, memory_mib=spec.memory_mib,
                             image=spec.image, size=spec.size, deaths=all_deaths, now=now, catalog=catalog_of(sky),
                             bounds=rule.groups.get(group))
    return out, broken, forget


def _index(n: Node) -> int:
    try:
        return int(n.labels.get("index", n.name.rsplit("-", 1)[-1]))
    except ValueError:
        return 0


def apply_demand(sky: Sky, rule: Rule, snaps: list[SiteSnapshot], listing: Listing, *,
                 now: float | None = None) -> DemandResult:
    """One demand tick for `rule`: read, decide, grow or drain-and-shrink."""
    now = time.time() if now is None else now
    out, broken, forget = assess_demand(sky, rule, snaps, listing, now=now, record=True)
    for name in forget:
        sky.state.forget_node(name)
    if broken:
        delete_nodes(sky, broken)   # a node in error holds quota: clear it (its death is logged)
    tick = out.tick
    if tick is None:
        return out
    spec = sky.state.group_spec(tick.group)
    assert spec is not None
    if tick.grow:
        context_for = context_of_group(spec, reporter=sky.reporter)
        for site, count in tick.grow.items():
            try:
                res = launch(sky, request_for(tick.group, spec, count, site=site), context_for=context_for,
                             group_spec=spec)
            except SkyError as e:
                out.failed[site] = e.line()
                continue
            out.created += [n.name for n in res.created]
            if res.missing:
                out.failed[site] = res.full_sites.get(site) or res.unplaced_reason or f"{res.missing} not created"
    if tick.shrink:
        with group_lock(tick.group, say=sky.reporter.message, sky=sky):   # one writer per group, as scale
            _shrink(sky, rule, tick, listing, out)
    return out


def _shrink(sky: Sky, rule: Rule, tick: DemandTick, listing: Listing, out: DemandResult) -> None:
    """Drain, then delete, each idle node the decision let go; a node that does not drain stays."""
    by_name = {n.name: n for n in listing.nodes if n.group == tick.group}
    for name in tick.shrink:
        node = by_name[name]
        why = drain_before_delete(sky, rule, node)
        if why:
            out.kept[name] = why
            continue
        errors = delete_nodes(sky, [node])
        if errors:
            out.kept[name] = errors[node.site].line()
            continue
        out.deleted.append(name)
        why = release_slurm_node(sky, node, moved=False)
        if why:
            sky.reporter.warning(f"{name} deleted, but Slurm was not told: {why}")
