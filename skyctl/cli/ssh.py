"""ssh, exec, cp, wait: into the nodes.

Register with `ssh.register(app)`: `ssh` and `exec` use RemoteCommand so that the words after
the first `--` reach the node untouched, even when they look like skyctl options.
"""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skyctl.cli import complete
from typer.core import TyperCommand

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

if TYPE_CHECKING:  # pragma: no cover
    import click

_REMOTE = "skyctl.remote_command"

SiteOpt = Annotated[str | None, typer.Option("--site", "-s", autocompletion=complete.sites, help="Only nodes on this site.")]
AcceptOpt = Annotated[bool, typer.Option(
    "--accept-new-host-key", help="Replace a recorded host key that changed (after a node was rebuilt).")]
IdentityOpt = Annotated[str | None, typer.Option(
    "--identity", "-i", metavar="KEY", help="Private key to log in with (default: the key contexts deliver).")]
UserOpt = Annotated[str | None, typer.Option("--user", "-l", help="Login user (default: the site's ssh.user).")]


class RemoteCommand(TyperCommand):
    """Keeps the words after the first `--` apart: they are the command to run on the nodes."""

    def parse_args(self, ctx: "click.Context", args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_REMOTE] = args[cut + 1:]
            args = args[:cut]
        else:
            ctx.meta[_REMOTE] = []
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: "click.Context") -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND...]"]


def register(app: typer.Typer) -> None:
    app.command("ssh", cls=RemoteCommand)(ssh)
    app.command("exec", cls=RemoteCommand)(exec_)
    app.command("cp")(cp)
    app.command("wait")(wait)


# ---------------------------------------------------------------- shared


def _remote_words(ctx: typer.Context) -> list[str]:
    if _REMOTE not in ctx.meta:  # registered without RemoteCommand: the words after -- are lost
        raise RuntimeError("skyctl.cli.ssh commands must be registered with skyctl.cli.ssh.register(app)")
    return list(ctx.meta[_REMOTE])


def _options(sky: Any, *, identity: str | None, user: str | None, accept_new: bool) -> Any:
    from pathlib import Path

    from skyctl.keys import default_ssh_key
    from skyctl.ops.ready import console_reader
    from skyctl.ssh.session import SshOptions

    key: Any = Path(identity).expanduser() if identity else default_ssh_key()
    return SshOptions(key=key, console=console_reader(sky), accept_new_host_key=accept_new, user=user)


def _usable(nodes: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Nodes worth connecting to, and why the others are skipped (stopped, in error...)."""
    from skyctl.errors import Unreachable
    from skyctl.model import NodeState

    ok, skipped = [], {}
    for n in nodes:
        if n.state in (NodeState.RUNNING, NodeState.UNKNOWN):
            ok.append(n)
        else:
            skipped[n.name] = Unreachable(f"{n.name} is {n.state.value}", site=n.site)
    return ok, skipped


def _resolve(sky: Any, targets: list[str], site: str | None) -> tuple[list[Any], dict[str, Any]]:
    from skyctl.errors import NotFound
    from skyctl.ops.inventory import resolve_targets

    nodes, listing = resolve_targets(sky, targets, site=site)
    if not nodes:
        if listing.errors:
            from skyctl.cli.runtime import raise_if_failed

            raise_if_failed(listing.outcome(len(listing.errors)))
        raise NotFound(f"no nodes in {', '.join(targets)}")
    return nodes, dict(listing.errors)


def _exit_for(failed: int, unreachable: dict[str, Any], total: int, site_errors: dict[str, Any]) -> None:
    """0 all good; 1 a command failed; 3 some nodes (or sites) could not be reached at all."""
    from skyctl.errors import EXIT_ERROR, EXIT_PARTIAL

    t = term()
    for name, err in unreachable.items():
        t.error(err.line())
    if unreachable and len(unreachable) == total:
        from skyctl.ops.outcome import first_error

        raise typer.Exit(first_error(unreachable.values()).exit_code)
    if unreachable or site_errors:
        for site in site_errors:
            t.warn(f"site {site} did not answer; its nodes were not included")
        raise typer.Exit(EXIT_PARTIAL)
    if failed:
        raise typer.Exit(EXIT_ERROR)


# ---------------------------------------------------------------- ssh


def ssh(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(metavar="NODE", autocompletion=complete.nodes, help="A node name (see 'skyctl ps').")],
    site: SiteOpt = None,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    accept_new_host_key: AcceptOpt = False,
    local_forward: Annotated[list[str] | None, typer.Option(
        "--local-forward", "-L", metavar="[BIND:]PORT:HOST:HOSTPORT",
        help="Forward a local port to HOST:HOSTPORT as the node sees it (repeatable; as ssh -L).")] = None,
    remote_forward: Annotated[list[str] | None, typer.Option(
        "--remote-forward", "-R", metavar="[BIND:]PORT:HOST:HOSTPORT",
        help="Forward a port on the node to HOST:HOSTPORT here (repeatable; as ssh -R).")] = None,
    no_command: Annotated[bool, typer.Option(
        "--no-command", "-N", help="Only forward ports: run nothing, stay until Ctrl-C (as ssh -N).")] = False,
    ssh_option: Annotated[list[str] | None, typer.Option(
        "--ssh-option", metavar="KEY=VALUE", help="Pass an option to the system ssh (repeatable; as ssh -o). "
        "skyctl's key, known-hosts file and host key checking stay in force.")] = None,
) -> None:
    """Log in to a node, or run one command on it and exit with its exit code.

    Without a command the system ssh takes over, with the right user, key, port, jump host
    and skyctl's own known-hosts file; so it does for port forwards (-L, -R) and --ssh-option,
    with or without a command. The command's words follow the rules of 'skyctl exec'.

    \b
    Examples:
      skyctl ssh web-0
      skyctl ssh web-0 -- sudo journalctl -u htcondor
      skyctl ssh jup-0 -N -L 8888:localhost:8888      # the notebook at localhost:8888
      skyctl ssh web-0 --ssh-option ServerAliveInterval=30
    """
    import os
    import shutil
    import sys

    from skyctl.cli.runtime import open_sky
    from skyctl.errors import Unsupported, UsageError
    from skyctl.ops.inventory import show_node
    from skyctl.keys import split_key
    from skyctl.ssh.target import remote_command, ssh_command, target_for

    words = _remote_words(ctx)
    extra = _ssh_extra(local_forward or [], remote_forward or [], ssh_option or [], no_command)
    if no_command and words:
        raise UsageError("-N runs no command: give either -N or a command after --")
    with open_sky() as sky:
        found = show_node(sky, node, site=site)
        opts = _options(sky, identity=identity, user=user, accept_new=accept_new_host_key)
        cfg = sky.federation.sites[found.site]
        if words and not extra:
            lock = threading.Lock()

            def raw(_node: Any, stream: str, line: str) -> None:
                with lock:
                    (sys.stdout if stream == "stdout" else sys.stderr).write(line + "\n")
                    (sys.stdout if stream == "stdout" else sys.stderr).flush()

            from skyctl.ssh.transfer import run

            result = run(found, cfg, remote_command(words), opts, on_output=raw)
            code = result.exit_code if result.exit_code is not None and 0 <= result.exit_code < 256 else 255
            raise typer.Exit(code)
        target = target_for(found, cfg, user=user)
        # Meet the node once ourselves: its host key is checked (console log, TOFU) and recorded
        # where the system ssh will look, and a refused key fails here with a clear message.
        opts.open(found, cfg).close()
    if shutil.which("ssh") is None:
        raise Unsupported("no ssh client on PATH; run commands with 'skyctl ssh NODE -- COMMAND'")
    key_path, _ = split_key(opts.key)
    argv = ssh_command(target, key_path, opts.known_hosts.path, [remote_command(words)] if words else (),
                       extra=extra)
    term().detail(" ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("ssh", argv)


def _ssh_extra(local: list[str], remote: list[str], options: list[str], no_command: bool) -> list[str]:
    """The system ssh's arguments for forwards and the user's -o options, checked so that none
    can be read as another flag."""
    import re

    from skyctl.errors import UsageError

    spec = re.compile(r"^(?:\[[^\]]+\]:|[^:\s-][^:\s]*:)?\d{1,5}:(?:\[[^\]]+\]|[^:\s]+):\d{1,5}$")
    out: list[str] = []
    for flag, given in (("-L", local), ("-R", remote)):
        for f in given:
            if not spec.fullmatch(f):
                raise UsageError(f"{flag} {f!r}: expected [BIND:]PORT:HOST:HOSTPORT, e.g. 8888:localhost:8888")
            out += [flag, f]
    for o in options:
        key = re.split(r"[=\s]", o.strip(), maxsplit=1)[0]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key) or key == o.strip():
            raise UsageError(f"--ssh-option {o!r}: expected KEY=VALUE, e.g. ServerAliveInterval=30")
        out += ["-o", o.strip()]
    if local or remote:
        out += ["-o", "ExitOnForwardFailure=yes"]   # a port that cannot be forwarded is an error
    if no_command:
        out.append("-N")
    return out


# ---------------------------------------------------------------- exec


def exec_(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(metavar="GROUP|NODE", autocompletion=complete.targets, help="Groups and/or node names.")],
    site: SiteOpt = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", min=1, max=256,
                                          help="Nodes at a time.")] = 16,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    accept_new_host_key: AcceptOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Run a command on every node of groups or nodes, in parallel.

    The words after -- are the command. Several words keep their argv, each quoted for the
    node's shell (as docker exec): -- touch 'my file' makes one file. A single word is a shell
    command line, as in ssh host 'cmd': -- 'grep x log | wc -l' runs a pipeline there.

    On a terminal each output line is prefixed with its node's name; -o json gives a list of
    {node, exit_code, stdout, stderr, error}. Exits 0 only if the command succeeded on every
    node, 1 if it failed on some, 3 if some nodes could not be reached. Ctrl-C stops the
    command on every node (SIGINT, then the session closes) and exits 130.

    \b
    Examples:
      skyctl exec web -- uptime
      skyctl exec web db-0 -o json -- 'df -h / | tail -1'
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.errors import UsageError
    from skyctl.ssh.target import remote_command
    from skyctl.ssh.transfer import ExecResult, run_many

    words = _remote_words(ctx)
    if not words:
        raise UsageError("give the command after --, e.g. skyctl exec web -- uptime")
    t = term()
    stream = output is OutputFormat.table
    with open_sky() as sky:
        nodes, site_errors = _resolve(sky, targets, site)
        live, skipped = _usable(nodes)
        opts = _options(sky, identity=identity, user=user, accept_new=accept_new_host_key)
        width = max(len(n.name) for n in nodes)
        lock = threading.Lock()

        def prefixed(node: Any, which: str, line: str) -> None:
            text = f"{node.name:<{width}} | {line}"
            with lock:
                if which == "stdout":
                    t.emit(text, OutputFormat.table)
                else:
                    t.info(text)

        results = run_many(live, sky.federation.sites, remote_command(words), opts, parallel=parallel,
                           on_output=prefixed if stream else None)
    by_name = {r.node.name: r for r in results}
    ordered = [by_name.get(n.name) or ExecResult(n, None, error=skipped[n.name]) for n in nodes]
    failed = [r for r in ordered if r.exit_code not in (0, None)]
    unreachable = {r.node.name: r.error for r in ordered if r.error is not None}
    if stream:
        for r in failed:
            t.warn(f"{r.node.name}: exit {r.exit_code}")
    else:
        t.emit([r.to_json() for r in ordered], output)
    _exit_for(len(failed), unreachable, len(ordered), site_errors)


# ---------------------------------------------------------------- cp


def cp(
    src: Annotated[str, typer.Argument(metavar="SRC", autocompletion=complete.locations, help="LOCAL, or NODE:PATH (GROUP:PATH: from every node).")],
    dst: Annotated[str, typer.Argument(metavar="DST", autocompletion=complete.locations, help="NODE:PATH or GROUP:PATH (every node), or LOCAL.")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Copy directories.")] = False,
    site: SiteOpt = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", min=1, max=256, help="Nodes at a time.")] = 16,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    accept_new_host_key: AcceptOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Copy files to or from nodes over SFTP (relative paths are in the login user's home).

    Missing directories on the node are made (as mkdir -p). From a group, each node's copy
    lands in DST/<node>/.

    \b
    Examples:
      skyctl cp input.dat web-0:data/in/       # makes data/in/ if missing
      skyctl cp -r config/ web:app/config      # to every node of the group
      skyctl cp web-0:results.csv .
      skyctl cp web:results.csv out/           # out/web-0/results.csv, out/web-1/...
    """
    from pathlib import Path

    from skyctl.cli.runtime import open_sky
    from skyctl.errors import NotFound, UsageError
    from skyctl.ssh.target import split_location
    from skyctl.errors import SkyError
    from skyctl.ssh.transfer import get, get_many, put_many

    (src_name, src_path), (dst_name, dst_path) = split_location(src), split_location(dst)
    if (src_name is None) == (dst_name is None):
        raise UsageError("one side of cp must be NODE:PATH (or GROUP:PATH) and the other a local path")
    t = term()
    gather = False
    with open_sky() as sky:
        if dst_name is not None:  # upload, to one node or every node of a group
            local = Path(src_path).expanduser()
            if not local.exists():
                raise NotFound(f"{local}: no such file or directory")
            if local.is_dir() and not recursive:
                raise UsageError(f"{local} is a directory (use -r)")
            nodes, site_errors = _resolve(sky, [dst_name], site)
            live, skipped = _usable(nodes)
            opts = _options(sky, identity=identity, user=user, accept_new=accept_new_host_key)
            copied = put_many(live, sky.federation.sites, local, dst_path, opts, recursive=recursive,
                              parallel=parallel)
            outcome: dict[str, Any] = dict(zip((n.name for n in live), copied))
            outcome.update(skipped)
        else:
            assert src_name is not None
            nodes, site_errors = _resolve(sky, [src_name], site)
            opts = _options(sky, identity=identity, user=user, accept_new=accept_new_host_key)
            gather = not (len(nodes) == 1 and nodes[0].name == src_name)
            if not gather:   # one node: to DST itself, as scp does
                found = nodes[0]
                files = get(found, sky.federation.sites[found.site], src_path, Path(dst_path).expanduser(), opts,
                            recursive=recursive)
                outcome = {found.name: [str(p) for p in files]}
            else:            # a group: each node's copy in DST/<node>/
                into = Path(dst_path).expanduser()
                if into.exists() and not into.is_dir():
                    raise UsageError(f"{into} is not a directory; copying from the group {src_name} "
                                     "gathers into DIR/<node>/")
                live, skipped = _usable(nodes)
                fetched = get_many(live, sky.federation.sites, src_path, into, opts, recursive=recursive,
                                   parallel=parallel)
                outcome = {n.name: r if isinstance(r, SkyError) else [str(p) for p in r]
                           for n, r in zip(live, fetched)}
                outcome.update(skipped)
    from skyctl.errors import SkyError

    rows = [{"node": n.name, "files": [] if isinstance(outcome[n.name], SkyError) else outcome[n.name],
             "error": outcome[n.name].line() if isinstance(outcome[n.name], SkyError) else None} for n in nodes]
    errors = {n.name: outcome[n.name] for n in nodes if isinstance(outcome[n.name], SkyError)}
    if output is OutputFormat.table:
        done = [r for r in rows if r["error"] is None]
        count = sum(len(r["files"]) for r in done)
        if done:
            where = (f"from {len(done)} node(s) into {dst_path}/<node>/" if src_name and gather
                     else "from " + done[0]["node"] if src_name else f"to {len(done)} node(s)")
            t.info(f"copied {count} file(s) {where}")
    else:
        t.emit(rows, output)
    _exit_for(0, errors, len(rows), site_errors)


# ---------------------------------------------------------------- wait


class _WaitProgress:
    """Where each node stands: a bar with stage counts on a terminal, lines with -v, quiet when piped."""

    def __init__(self, total: int) -> None:
        self.t = term()
        self.total = total
        self.stages: dict[str, str] = {}
        self.lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        if self.t.err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.t.err, transient=True)
            self._task = self._progress.add_task("waiting", total=total)
            self._progress.start()

    def _update(self, node: Any, stage: str) -> None:
        with self.lock:
            self.stages[node.name] = stage
            if self._progress is not None:
                counts: dict[str, int] = {}
                for s in self.stages.values():
                    counts[s] = counts.get(s, 0) + 1
                waiting = ", ".join(f"{s} {c}" for s, c in counts.items() if s != "ready") or "done"
                self._progress.update(self._task, completed=counts.get("ready", 0), description=f"waiting: {waiting}")
        self.t.detail(f"{node.name}: {stage}")

    def node_stage(self, node: Any, stage: str) -> None:
        self._update(node, stage)

    def node_ready(self, node: Any) -> None:
        self._update(node, "ready")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def wait(
    targets: Annotated[list[str], typer.Argument(metavar="GROUP|NODE", autocompletion=complete.targets, help="Groups and/or node names.")],
    site: SiteOpt = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", "-t", min=0.1, help="Seconds to wait (default: each site's ready_timeout).")] = None,
    user: UserOpt = None,
    identity: IdentityOpt = None,
    accept_new_host_key: AcceptOpt = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Wait until nodes are ready: an address, SSH login with the key, context applied.

    Never waits forever: each site's ready_timeout (or --timeout) bounds it, and the message
    names each node still waiting and the stage it is stuck at.
    """
    from skyctl.cli.nodes import node_table
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.inventory import prepare_access
    from skyctl.ops.ready import wait_ready

    with open_sky() as sky:
        nodes, site_errors = _resolve(sky, targets, site)
        opts = _options(sky, identity=identity, user=user, accept_new=accept_new_host_key)
        nodes = prepare_access(sky, nodes)
        progress = _WaitProgress(len(nodes))
        try:
            ready = wait_ready(sky, nodes, opts, reporter=progress, timeout=timeout)
        finally:
            progress.stop()
    term().emit([n.to_json() for n in ready], output, table=node_table)
    term().info(f"{len(ready)} node(s) ready")
    if site_errors:
        from skyctl.cli.runtime import exit_partial

        exit_partial(site_errors)
