"""slurm: skyctl as Slurm's ResumeProgram / SuspendProgram / ResumeFailProgram, the slurm.conf
lines for the federation, and reconcile for a timer."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

app = typer.Typer(help="Slurm power saving: slurmctld calls these to start and stop cloud nodes.",
                  no_args_is_help=True)

HostlistArg = Annotated[str, typer.Argument(metavar="HOSTLIST", help="Slurm node names, e.g. sky-[001-032].")]


def _open(echo: bool = True) -> Any:
    import os

    from skyctl.cli.runtime import open_sky
    from skyctl.ops.reporter import Reporter
    from skyctl.ops.slurmlog import SlurmLog, log_path

    sky = open_sky(reporter=Reporter())
    quiet = os.environ.get("SKYCTL_SLURM_QUIET") == "1"   # the programs: stderr goes to a file
    return sky, SlurmLog(log_path(sky.federation), echo=echo and not quiet)


@app.command()
def resume(
    hostlist: HostlistArg,
    wait: Annotated[bool, typer.Option("--wait", help="Work in the foreground until every node is created "
                                       "(default: return at once, the work goes on detached).")] = False,
    detached: Annotated[bool, typer.Option("--detached", hidden=True)] = False,
) -> None:
    """Start the VMs behind Slurm nodes (slurm.conf: ResumeProgram).

    Reads SLURM_RESUME_FILE at once, returns to slurmctld within a second and launches the nodes
    detached, through normal placement and bursting. One log line per node, with site and reason.
    A group another command is changing is waited for at most half of ResumeTimeout; then its
    nodes go back to POWER_DOWN. Exits 2 for names skyctl does not own, nodes not created or an
    unreadable resume file (the nodes it owns are still launched).
    """
    import os

    # No pydantic plugin is wanted here, and looking for them costs an entry-point scan.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from skyctl import config
    from skyctl.cli import runtime
    from skyctl.errors import UsageError
    from skyctl.ops import slurmlog as slurm
    from skyctl.policy.slurm import map_nodes

    # slurmctld waits for this part: the federation without loading the drivers (their SDKs take
    # most of a second to import), no cloud asked; the launch itself runs detached.
    fed = config.load(runtime.CONFIG_PATH, validate_drivers=False)
    quiet = os.environ.get("SKYCTL_SLURM_QUIET") == "1"
    log = slurm.SlurmLog(slurm.log_path(fed), echo=not (detached or quiet))
    names = slurm.expand(hostlist)
    problems: list[str] = []
    if not detached:
        try:
            data = slurm.read_resume_file(os.environ.get("SLURM_RESUME_FILE"))
            for job in (data or {}).get("jobs", []):
                log.line("resume-for-job", str(job.get("nodes", "?")), None, f"job {job.get('job_id')}")
        except UsageError as e:
            problems.append(e.line())
            log.line("resume-file", hostlist, None, e.line())
    mapped = map_nodes(names, slurm.node_sets(fed))
    for name in mapped.unknown:
        log.line("resume-refused", name, None, "not a skyctl node (no slurm.groups entry owns it)")
    if mapped.unknown:
        problems.append(f"not a skyctl node: {slurm.collect_hostlist(mapped.unknown)}")
    ours = [n for ns in mapped.by_group.values() for n in ns]
    if ours and not (wait or detached):
        _detach(fed, slurm.collect_hostlist(ours), log.path)
        for name in ours:
            log.line("resume-started", name, None, "launching detached")
    elif ours:
        from skyctl.ops.slurm import resume as do_resume

        sky, log = _open(echo=not detached)
        with sky:
            report = do_resume(sky, ours, log)
        if report.failed and not detached:
            problems.append(f"{len(report.failed)} node(s) not created: "
                            f"{slurm.collect_hostlist(sorted(report.failed))}")
    if problems:
        raise UsageError("; ".join(problems))


def _detach(fed: Any, hostlist: str, log_path: Any) -> None:
    """`skyctl slurm resume --detached HOSTLIST` in its own session; its stray output goes to
    LOG.stderr beside the log (a traceback is never lost)."""
    import subprocess
    import sys

    config = ["--config", str(fed.source)] if fed.source else []
    with open(f"{log_path}.stderr", "a", encoding="utf-8") as out:
        subprocess.Popen([sys.executable, "-m", "skyctl", *config, "slurm", "resume", "--detached", hostlist],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                         close_fds=True)


@app.command()
def suspend(hostlist: HostlistArg) -> None:
    """Delete the VMs behind Slurm nodes (slurm.conf: SuspendProgram). Safe to repeat.

    A group another command is changing is waited for at most half of SuspendTimeout, then it
    exits 1 naming the holder (`slurm reconcile` deletes what is left).
    """
    from skyctl.errors import EXIT_PARTIAL
    from skyctl.ops import slurm

    sky, log = _open()
    with sky:
        report = slurm.suspend(sky, slurm.expand(hostlist), log)
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("resume-fail")
def resume_fail(hostlist: HostlistArg) -> None:
    """Delete what a failed resume left and put the nodes back to POWER_DOWN, never DOWN
    (slurm.conf: ResumeFailProgram). Waits for a busy group as suspend does."""
    from skyctl.errors import EXIT_PARTIAL
    from skyctl.ops import slurm

    sky, log = _open()
    with sky:
        report = slurm.resume_fail(sky, slurm.expand(hostlist), log)
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done; do nothing.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Bring the clouds in line with Slurm (for a timer): delete VMs behind nodes Slurm shows
    powered down, put nodes left DOWN (a failed resume, a VM that died) back to POWER_DOWN.
    Holds the locks of the groups it changes (waiting up to SKYCTL_LOCK_WAIT)."""
    from skyctl.ops import slurm

    sky, log = _open(echo=False)
    with sky:
        actions = slurm.reconcile(sky, log, dry_run=dry_run)
    data = [{"node": a.node, "action": a.action, "why": a.why, "done": not dry_run} for a in actions]
    term().emit(data, output, table=lambda d: term().table(["NODE", "ACTION", "WHY"],
                                                           [(a["node"], a["action"], a["why"]) for a in d],
                                                           title=f"slurm reconcile: {len(d)} action(s)"))


@app.command()
def config(
    write_programs: Annotated[bool, typer.Option("--write-programs", help="Also write the resume, suspend and "
                                                 "resume-fail programs into slurm.programs_dir.")] = False,
) -> None:
    """Print the slurm.conf lines for the federation's cloud nodes and skyctl's programs."""
    import os
    import sys
    from pathlib import Path

    from skyctl.cli.runtime import load_federation
    from skyctl.ops import slurm

    fed = load_federation()
    lines = slurm.conf(fed)
    if write_programs:
        exe = Path(sys.executable).with_name("skyctl")
        skyctl = [str(exe)] if exe.exists() else [sys.executable, "-m", "skyctl"]
        for path in slurm.write_programs(fed, skyctl, dict(os.environ)):
            term().info(f"wrote {path}")
    sys.stdout.write("\n".join(lines) + "\n")
