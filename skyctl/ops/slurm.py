"""skyctl as Slurm's cloud provisioner: resume (launch the named nodes through normal placement
and bursting), suspend (delete them), resume-fail (delete, then back to POWER_DOWN), reconcile
(the clouds against Slurm's view), and the talk with slurmctld through `scontrol`.

Every call writes one line per node to the Slurm log (slurm.log in skyctl's state directory,
or `slurm.log` of the federation file) with the site and the reason: nothing fails silently.

Each call that changes a group holds its group lock (skyctl.ops.grouplock), like launch, scale
and delete do. slurmctld gives its programs a deadline (ResumeTimeout, SuspendTimeout), so they
wait for a busy group at most half of it (`lock_wait`), then give up with a logged line.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyctl.config import Federation
from skyctl.errors import DriverError, Interrupted, SkyError, UsageError
from skyctl.model import Node, NodeState
from skyctl.ops.cloudlock import LeaseBusy
from skyctl.ops.grouplock import GroupBusy, group_lock, group_locks
from skyctl.ops.inventory import delete_nodes, list_nodes
from skyctl.ops.sky import Sky
# expand, log_path and read_resume_file are this module's API too (the CLI's other verbs use them).
from skyctl.ops.slurmlog import SlurmLog, collect_hostlist, expand, log_path, node_sets, read_resume_file, slurm_of  # noqa: F401
from skyctl.polling import remaining
from skyctl.policy.slurm import NodeMap, Programs, ReconcileAction, conf_lines, map_nodes, reconcile_actions

# A group another command (or machine) is changing, and it did not come free in time.
BUSY = (GroupBusy, LeaseBusy)


class SlurmctldUnreachable(SkyError):
    exit_code = 1


def owned(fed: Federation, names: list[str]) -> NodeMap:
    """Names sorted by skyctl group; a name no group owns is an error naming it."""
    mapped = map_nodes(names, node_sets(fed))
    if mapped.unknown:
        raise UsageError(f"not a skyctl node: {collect_hostlist(mapped.unknown)} (slurm.groups in "
                         f"{fed.source or 'the federation file'} owns {collect_hostlist(all_names(fed))})")
    return mapped


def all_names(fed: Federation) -> list[str]:
    return [n for s in node_sets(fed) for n in s.names]


PROGRAMS = ("resume", "suspend", "resume-fail")


def lock_wait(fed: Federation, program: str) -> float:
    """How long `program` waits for a group another command is changing: half of slurmctld's
    deadline for it (ResumeTimeout for resume; SuspendTimeout for suspend and resume-fail,
    which delete: past it Slurm may resume the node again), so the rest is left for the work
    itself; never longer than SKYCTL_LOCK_WAIT."""
    slurm = slurm_of(fed)
    return (slurm.resume_timeout if program == "resume" else slurm.suspend_timeout) / 2


def _waiting(log: SlurmLog, names: list[str]) -> Callable[[str], None]:
    """The lock's `say`: the wait for a busy group is a line of the Slurm log, and on stderr."""
    return lambda text: log.line("lock-wait", collect_hostlist(sorted(set(names))), None, text, echo=True)


def programs_dir(fed: Federation) -> Path:
    return Path(slurm_of(fed).programs_dir).expanduser()


def conf(fed: Federation) -> list[str]:
    slurm = slurm_of(fed)
    d = programs_dir(fed)
    progs = Programs(resume=str(d / "resume"), suspend=str(d / "suspend"), resume_fail=str(d / "resume-fail"),
                     suspend_time=slurm.suspend_time, suspend_timeout=slurm.suspend_timeout,
                     resume_timeout=slurm.resume_timeout)
    return conf_lines(node_sets(fed), progs, collect=collect_hostlist)


def write_programs(fed: Federation, skyctl: list[str], environ: dict[str, str]) -> list[Path]:
    """The three programs slurmctld runs. slurmctld execs a program path with the hostlist as
    its one argument and an almost empty environment, so each is a small script that sets
    what skyctl needs (federation file, HOME, PATH), reads DIR/env if present (secrets such as
    SKYCTL_VAR_munge_key, kept 0600 by the admin), and execs `skyctl slurm VERB`."""
    import shlex

    if fed.source is None:
        raise UsageError("the programs need the federation file's path (pass --config)")
    d = programs_dir(fed)
    d.mkdir(parents=True, exist_ok=True)
    keep = {k: environ[k] for k in ("HOME", "PATH", "SKYCTL_HOME") if k in environ}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items())
    out = []
    for verb in PROGRAMS:
        path = d / verb
        path.write_text(
            "#!/bin/sh\n"
            f"# written by 'skyctl slurm config --write-programs': slurmctld's {verb} program\n"
            f"export {exports} SKYCTL_CONFIG={shlex.quote(str(fed.source.resolve()))} SKYCTL_SLURM_QUIET=1\n"
            f"[ -r {shlex.quote(str(d / 'env'))} ] && set -a && . {shlex.quote(str(d / 'env'))} && set +a\n"
            # slurmctld closes every fd: stray output (a traceback) goes to DIR/programs.out
            f"exec {' '.join(shlex.quote(a) for a in skyctl)} slurm {verb} \"$@\" "
            f"</dev/null >>{shlex.quote(str(d / 'programs.out'))} 2>&1\n", encoding="utf-8")
        path.chmod(0o755)
        out.append(path)
    return out


# --- slurmctld --------------------------------------------------------------------------------

def scontrol(*args: str, timeout: float = 30) -> str:
    """Run scontrol ($SKYCTL_SCONTROL if set); an unreachable slurmctld is one clear error."""
    try:
        proc = subprocess.run([os.environ.get("SKYCTL_SCONTROL", "scontrol"), *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SlurmctldUnreachable("scontrol not found (install slurm-client)") from None
    except subprocess.TimeoutExpired:
        raise SlurmctldUnreachable(f"scontrol {' '.join(args)}: no answer in {timeout:g}s") from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SlurmctldUnreachable(f"scontrol {' '.join(args)}: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout


def node_states(names: list[str] | None = None) -> dict[str, set[str]]:
    """Slurm node name -> its state words (IDLE, CLOUD, POWERED_DOWN...)."""
    out = scontrol("-o", "show", "nodes", *([collect_hostlist(names)] if names else []))
    states: dict[str, set[str]] = {}
    for line in out.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "NodeName" in fields:
            states[fields["NodeName"]] = set(fields.get("State", "").split("+"))
    return states


def power_down(names: list[str], why: str) -> None:
    """Back to POWER_DOWN (idle~), never left DOWN: ready for the next resume."""
    scontrol("update", f"NodeName={collect_hostlist(names)}", "State=POWER_DOWN_FORCE", f"Reason=skyctl: {why}")


# --- resume, suspend, resume-fail -------------------------------------------------------------

@dataclass
class ResumeReport:
    created: dict[str, str] = field(default_factory=dict)    # node -> site
    kept: dict[str, str] = field(default_factory=dict)       # node -> site (its VM already ran)
    failed: dict[str, str] = field(default_factory=dict)     # node -> why

    def to_json(self) -> dict[str, Any]:
        return {"created": self.created, "kept": self.kept, "failed": self.failed}


def _vms(sky: Sky, groups: list[str]) -> tuple[dict[str, Node], dict[str, DriverError]]:
    nodes: dict[str, Node] = {}
    errors: dict[str, DriverError] = {}
    for group in groups:
        listing = list_nodes(sky, group=group)
        errors.update(listing.errors)
        nodes.update({n.name: n for n in listing.nodes})
    return nodes, errors


def _recorded_vms(sky: Sky, names: list[str]) -> dict[str, Node]:
    """The VMs that already run behind `names`. Only the sites where skyctl's state records one
    of these names are asked (a resume of nodes skyctl never started asks no cloud: slurmctld
    waits for this work)."""
    wanted = set(names)
    records = [r for r in sky.state.nodes() if r.name in wanted]
    out: dict[str, Node] = {}
    for site in sorted({r.site for r in records if r.site in sky.federation.sites}):
        groups = sorted({r.group for r in records if r.site == site})
        for group in groups:
            listing = list_nodes(sky, group=group, site=site)
            out.update({n.name: n for n in listing.nodes if n.name in wanted})
    return out


def resume(sky: Sky, names: list[str], log: SlurmLog, *, power_down_failed: bool = True) -> ResumeReport:
    """Launch exactly `names` through normal placement and bursting, one launch per group, each
    under its group's lock. A node whose VM already runs is kept; nodes that could not be
    created (or whose group stayed busy past `lock_wait`) are logged with the reason and
    (unless told otherwise) put back to POWER_DOWN at once instead of waiting for ResumeTimeout."""
    fed = sky.federation
    report = ResumeReport()
    mapped = owned(fed, names)
    deadline = time.monotonic() + lock_wait(fed, "resume")
    for group, group_names in mapped.by_group.items():   # one group's lock at a time: no circle
        try:
            with group_lock(group, say=_waiting(log, group_names), sky=sky, wait=remaining(deadline)):
                _resume_group(sky, group, group_names, report, log)
        except BUSY as e:   # nothing created for the group: its nodes go back to POWER_DOWN below
            for name in group_names:
                report.failed[name] = e.line()
                log.line("resume-failed", name, None, e.line())
    if report.failed and power_down_failed:
        try:
            power_down(sorted(report.failed), "resume failed")
            for name in report.failed:
                log.line("power-down", name, None, "back to POWER_DOWN after the failed resume")
        except SkyError as e:
            for name in report.failed:
                log.line("power-down-failed", name, None, e.line())
    return report


def _resume_group(sky: Sky, group: str, group_names: list[str], report: ResumeReport, log: SlurmLog) -> None:
    """One group's part of `resume`, under its lock: what already runs is seen under it too."""
    from skyctl.ops import request as rq
    from skyctl.ops.launch import launch

    fed = sky.federation
    nodeset = slurm_of(fed).groups[group]
    running = _recorded_vms(sky, group_names)
    todo = []
    for name in group_names:
        if name in running:
            report.kept[name] = running[name].site
            log.line("resume", name, running[name].site, "its VM already runs; kept")
        else:
            todo.append(name)
    if not todo:
        return
    try:
        req = rq.resolve(fed, group, len(todo), image=nodeset.image, size=nodeset.size)
        variables = {k: _var(v) for k, v in nodeset.variables.items()}
        ctx = rq.build_group_context(nodeset.contexts, variables, clouds=rq.clouds_for(fed, req),
                                     reporter=sky.reporter)
        spec = rq.group_spec_for(req, nodeset.contexts, variables, ctx.secret_variables)
        result = launch(sky, req, context_for=ctx.context_for, group_spec=spec, names=todo)
    except Interrupted:
        raise  # Ctrl-C: exit 130 saying what was created and kept, no power-down of the rest
    except SkyError as e:
        for name in todo:
            report.failed[name] = e.line()
            log.line("resume-failed", name, None, e.line())
        return
    for node in result.created:
        report.created[node.name] = node.site
        log.line("resume", node.name, node.site, f"created ({_why_site(result, node.site)})")
    made = {n.name for n in result.created}
    why = result.unplaced_reason or "; ".join(f"{s}: {w}" for s, w in result.full_sites.items()) \
        or "no site could create it"
    for name in todo:
        if name not in made:
            report.failed[name] = why
            log.line("resume-failed", name, None, why)


def _var(v: str | int | bool) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _why_site(result: Any, site: str) -> str:
    """The plan's reasons for `site`, and the sites that stopped taking nodes before it."""
    texts: list[str] = []
    for plan in reversed(result.plans):
        for d in plan.decisions:
            if d.site == site and d.count:
                texts = [r.text for r in d.reasons]
                break
        if texts:
            break
    full = [f"{s} stopped taking nodes: {w}" for s, w in result.full_sites.items() if s != site]
    return "; ".join(texts + full) or "placed"


@dataclass
class DeleteReport:
    deleted: dict[str, str] = field(default_factory=dict)    # node -> site
    absent: list[str] = field(default_factory=list)          # no VM (already gone): fine
    failed: dict[str, str] = field(default_factory=dict)     # node -> why

    def to_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "absent": self.absent, "failed": self.failed}


def suspend(sky: Sky, names: list[str], log: SlurmLog, *, verb: str = "suspend") -> DeleteReport:
    """Delete the VMs behind `names`; a name without a VM is already done (safe to repeat).
    Holds the locks of their groups (sorted); a group still busy after `lock_wait` raises
    GroupBusy/LeaseBusy with each node logged: Slurm shows them powered down anyway, and
    `slurm reconcile` deletes what is left behind them."""
    mapped = owned(sky.federation, names)
    try:
        with group_locks(mapped.by_group, say=_waiting(log, names), sky=sky,
                         wait=lock_wait(sky.federation, "suspend")):
            return _suspend(sky, mapped, names, log, verb)
    except BUSY as e:
        for name in names:
            log.line(f"{verb}-failed", name, None, f"{e.line()}; its VM is left to `skyctl slurm reconcile`")
        raise


def _suspend(sky: Sky, mapped: NodeMap, names: list[str], log: SlurmLog, verb: str) -> DeleteReport:
    vms, errors = _vms(sky, list(mapped.by_group))
    report = DeleteReport()
    doomed = [vms[n] for n in names if n in vms]
    failed_sites = delete_nodes(sky, doomed) if doomed else {}
    for name in names:
        node = vms.get(name)
        if node is None:
            if errors:
                why = "no VM found, but " + ", ".join(sorted(errors)) + " did not answer"
                report.failed[name] = why
                log.line(f"{verb}-failed", name, None, why)
            else:
                report.absent.append(name)
                log.line(verb, name, None, "no VM (already gone)")
        elif node.site in failed_sites:
            report.failed[name] = failed_sites[node.site].line()
            log.line(f"{verb}-failed", name, node.site, failed_sites[node.site].line())
        else:
            report.deleted[name] = node.site
            log.line(verb, name, node.site, "VM deleted")
    return report


def resume_fail(sky: Sky, names: list[str], log: SlurmLog) -> DeleteReport:
    """Delete what is left of a failed resume, then POWER_DOWN: the node never stays DOWN (not
    even when its group stayed busy: then `slurm reconcile` deletes its VM later)."""
    try:
        report = suspend(sky, names, log, verb="resume-fail")
    except BUSY:
        power_down(names, "resume failed; its VM is left to skyctl slurm reconcile")
        for name in names:
            log.line("power-down", name, None, "back to POWER_DOWN (its VM is left to slurm reconcile)")
        raise
    power_down(names, "resume failed; VM deleted")
    for name in names:
        log.line("power-down", name, report.deleted.get(name), "back to POWER_DOWN")
    return report


# --- reconcile --------------------------------------------------------------------------------

def _reconcile_plan(sky: Sky) -> tuple[list[ReconcileAction], dict[str, Node]]:
    fed = sky.federation
    names = all_names(fed)
    states = node_states(names)
    vms, errors = _vms(sky, list(slurm_of(fed).groups))
    if errors:
        raise DriverError(f"{', '.join(sorted(errors))} did not answer: reconcile deletes nothing on a partial view")
    dead = [n for n, v in vms.items() if v.state is NodeState.ERROR]
    return reconcile_actions(states, {n: v.site for n, v in vms.items()}, names, dead), vms


def reconcile(sky: Sky, log: SlurmLog, *, dry_run: bool = False) -> list[ReconcileAction]:
    """Bring the clouds in line with Slurm: VMs behind powered-down nodes deleted, nodes DOWN
    after a failed resume back to POWER_DOWN. The actions are planned, then the groups they
    touch are locked (sorted) and they are planned again under the locks: a resume, scale or
    launch that was running meanwhile is seen finished, and only the locked groups are acted on."""
    actions, _ = _reconcile_plan(sky)
    if dry_run or not actions:
        return actions
    fed = sky.federation
    locked = {g for a in actions if (g := _group(fed, a.node))}
    with group_locks(locked, say=_waiting(log, [a.node for a in actions]), sky=sky):
        actions, vms = _reconcile_plan(sky)
        actions = [a for a in actions if _group(fed, a.node) in locked]  # the others: next time
        _reconcile_act(sky, log, actions, vms)
    return actions


def _group(fed: Federation, node: str) -> str | None:
    return next(iter(map_nodes([node], node_sets(fed)).by_group), None)


def _reconcile_act(sky: Sky, log: SlurmLog, actions: list[ReconcileAction], vms: dict[str, Node]) -> None:
    failing = [a.node for a in actions if a.action == "resume-fail"]
    if failing:
        for a in actions:
            if a.action == "resume-fail":
                log.line("reconcile resume-fail", a.node, vms[a.node].site if a.node in vms else None, a.why)
        # DOWN first: slurmctld then ends the jobs there at once (requeued where they may be),
        # instead of waiting SlurmdTimeout for a dead slurmd to confirm; POWER_DOWN follows.
        scontrol("update", f"NodeName={collect_hostlist(failing)}", "State=DOWN", "Reason=skyctl: its VM is gone")
        resume_fail(sky, failing, log)
    doomed = [vms[a.node] for a in actions if a.action == "delete-vm"]
    failed = delete_nodes(sky, doomed) if doomed else {}
    downs = [a.node for a in actions if a.action == "power-down"]
    if downs:
        power_down(downs, "reconcile: node was DOWN")
    for a in actions:
        site = vms[a.node].site if a.node in vms else None
        if a.action == "resume-fail":
            continue   # logged above, and by resume-fail itself
        if a.action == "delete-vm" and site in failed:
            log.line("reconcile-failed", a.node, site, failed[site].line())
        else:
            log.line(f"reconcile {a.action}", a.node, site, a.why)


# --- drain (before skyctl deletes a node itself: a move home, a demand scale-in) ---------------

_BUSY = {"ALLOCATED", "MIXED", "COMPLETING"}


def _slurm_owned(sky: Sky, node: Node) -> bool:
    fed = sky.federation
    if fed.slurm is None or node.group not in fed.slurm.groups:
        return False
    return not map_nodes([node.name], node_sets(fed)).unknown


def drain_slurm_node(sky: Sky, node: Node, *, timeout: float, poll: float = 2.0) -> str | None:
    """For a node a `slurm:` group owns: `scontrol update NodeName=X State=DRAIN`, then wait
    until its jobs are done (DRAINED, not DRAINING). None when it may be deleted (or it is no
    Slurm node), else why not. Anything but a drained node keeps its VM."""
    if not _slurm_owned(sky, node):
        return None
    from skyctl.polling import Expired, iterate_timeout

    try:
        scontrol("update", f"NodeName={node.name}", "State=DRAIN", "Reason=skyctl: before deleting its VM")
        for _ in iterate_timeout(timeout, f"Slurm to drain {node.name}", interval=poll):
            words = node_states([node.name]).get(node.name, set())
            if not words & _BUSY:
                return None
    except SkyError as e:
        return f"Slurm drain of {node.name}: {e.line()}"
    except Expired:
        return f"Slurm drain of {node.name}: jobs still running after {timeout:g}s (drain_timeout)"
    return None


def release_slurm_node(sky: Sky, node: Node, *, moved: bool) -> str | None:
    """After the drained node's VM is gone: RESUME when a replacement of the same name takes
    over (a move home), else back to POWER_DOWN. None, or why it failed."""
    if not _slurm_owned(sky, node):
        return None
    try:
        if moved:
            scontrol("update", f"NodeName={node.name}", "State=RESUME")
        else:
            power_down([node.name], "drained and deleted by skyctl")
    except SkyError as e:
        return e.line()
    return None
