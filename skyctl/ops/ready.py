"""The one readiness wait: address -> ssh (login with the key) -> context (cloud-init done) -> ready.

`launch --wait` and `skyctl wait` both come through `wait_ready`; it asks the cloud for the
addresses nodes still lack (retrying flaky reads) and reads console logs for host-key checks.
`poll_ready` is the loop itself, with the cloud passed in as a `refresh` callable.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skyctl.errors import (CommandTimeout, ContextFailed, DriverError, NotFound, NotReady, SkyError, SshAuthError,
                           Unreachable, SILENT_ROUNDS, site_silent)
from skyctl.model import Capability, Node, NodeState
from skyctl.ops.sky import Sky, retrying
from skyctl.polling import iterate_timeout, remaining
from skyctl.ssh.session import ConsoleReader, Session, SshOptions

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.site import SiteConfig

# Where a node stands on its way to ready, in order.
STAGE_ADDRESS, STAGE_SSH, STAGE_CONTEXT, STAGE_READY = "address", "ssh", "context", "ready"

Refresh = Callable[[list[Node]], list[Node]]  # the cloud's current view of these nodes
Probe = Callable[[Node], object]  # ask a node's site about it; raises a DriverError if the site does not answer


def console_reader(sky: Sky) -> ConsoleReader:
    """Console logs through a Sky's drivers, for the sites that offer them (OpenStack)."""

    def read(node: Node) -> str | None:
        try:
            driver = sky.driver(node.site)
            if Capability.CONSOLE_LOG not in driver.capabilities:
                return None
            return driver.console_log(node.id)
        except DriverError:
            return None  # no console today: fall back to trusting the first key

    return read


def wait_ready(sky: Sky, nodes: Sequence[Node], opts: SshOptions, *, reporter: Any = None,
               timeout: float | None = None) -> list[Node]:
    """Wait until every node is ready (see `poll_ready`), asking the sky's drivers for the
    addresses nodes still lack. `timeout` overrides every site's ready_timeout; progress goes
    to `reporter` (default: the sky's)."""

    def refresh(ns: list[Node]) -> list[Node]:
        return [retrying(lambda n=n: sky.driver(n.site).get(n.id)) for n in ns]

    return poll_ready(nodes, sky.federation.sites, opts, reporter=sky.reporter if reporter is None else reporter,
                      refresh=refresh, timeout_for=(lambda _site: timeout) if timeout else None,
                      timeout_name="--timeout" if timeout else None,
                      probe=lambda n: retrying(lambda: sky.driver(n.site).get(n.id)))


def context_probe(run_dir: str = "/run/cloud-init") -> str:
    """The command each readiness round runs in the guest. `cloud-init status` is a Python
    program: under software emulation one call cost a loaded guest 15 s of its only CPU (a
    minute of wall time; 2.9 s on an idle host), so polling it slowed the very boot it waited
    for. The shell answers itself while cloud-init is enabled (its generator wrote `enabled`)
    and has not written `result.json` (the end of its final stage): `status: running`; and
    when that file lists no errors (`"errors": []`, as cloud-init's json.dumps writes it):
    `status: done`. Otherwise cloud-init answers (error with its detail, disabled, or absent:
    exit 127)."""
    result = f"{run_dir}/result.json"
    return (f"if [ -e {run_dir}/enabled ] && [ ! -e {result} ]; then echo 'status: running'; "
            f"elif grep -qF '\"errors\": []' {result} 2>/dev/null; then echo 'status: done'; "
            "else cloud-init status --long; fi")


CONTEXT_PROBE = context_probe()


def cloud_init_state(exit_code: int, stdout: str, stderr: str) -> str:
    """'done', 'error', 'absent' (no cloud-init on the image), or what to keep waiting on."""
    m = re.search(r"^\s*status:\s*([a-z][a-z ]*?)\s*$", stdout, re.MULTILINE)
    if m:
        status = m.group(1)
        if status in ("done", "disabled"):  # disabled: nothing will run, nothing to wait for
            return "done"
        return "error" if status == "error" else status
    if exit_code == 127 or "not found" in stderr:
        return "absent"
    first = (stdout.strip() or stderr.strip() or f"exit {exit_code}").splitlines()[0]
    return f"unknown ({first[:60]})"


def cloud_init_detail(stdout: str, limit: int = 300) -> str:
    """The guest's own error from `cloud-init status --long`: its 'detail:' lines, on one line."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "detail:" or line.startswith("detail: "):
            rest = [line.removeprefix("detail:").strip(), *(ln.strip() for ln in lines[i + 1:])]
            text = " | ".join(x for x in rest if x)
            # A failed command's own words first: "('package-update-upgrade-install',
            # ProcessExecutionError(...Stderr: E: Package 'htcondor' has no installation candidate"
            # (cloud-init 22.4 may put the data source or "errors:" before it: searched, not matched)
            module = re.search(r"\('([\w-]+)', \w+\(", text)
            stderr = re.search(r"Stderr: (.+?)(?:\\n|\"\)|'\)|$)", text)
            if stderr and stderr.group(1).strip() not in ("", "-"):
                head = f"{module.group(1)}: " if module else ""
                text = f"{head}{stderr.group(1).strip()} | {text}"
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return ""


# ---------------------------------------------------------------- the loop


@dataclass
class _Progress:
    node: Node
    deadline: float
    stage: str = STAGE_ADDRESS
    problem: str | None = None
    session: Session | None = None
    error: SkyError | None = None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def give_up(self) -> None:
        self.close()
        why = f" ({self.problem})" if self.problem else ""
        self.error = NotReady(f"{self.node.name} stuck at stage '{self.stage}'{why}", site=self.node.site)


def _step(p: _Progress, sites: Mapping[str, SiteConfig], opts: SshOptions, keep_open: bool,
          report: Callable[[_Progress], None]) -> None:
    """Move one node as far as it can go now; never blocks past its deadline."""
    node = p.node

    def left() -> float:  # a probe near the deadline still gets a fair chance (a loaded host handshakes slowly)
        return max(2.0, remaining(p.deadline) or 0.0)

    if p.stage == STAGE_ADDRESS:
        if not node.addresses:
            p.problem = "no address yet"
            return
        p.stage = STAGE_SSH
        report(p)
    if p.stage in (STAGE_SSH, STAGE_CONTEXT) and p.session is None:
        try:
            p.session = opts.open(node, sites[node.site], timeout=min(opts.timeout_for(sites[node.site]), left()))
        except (Unreachable, SshAuthError) as e:
            p.problem = _without_where(e.message, node)  # sshd not up, or the key not there yet: retry
            return
        if p.stage == STAGE_SSH:
            p.stage, p.problem = STAGE_CONTEXT, None
            report(p)
    if p.stage == STAGE_CONTEXT and p.session is not None:
        try:
            code, out, err = p.session.exec(CONTEXT_PROBE,
                                            timeout=min(max(30.0, opts.timeout_for(sites[node.site])), left()))
        except (Unreachable, CommandTimeout) as e:
            p.close()
            p.stage, p.problem = STAGE_SSH, _without_where(e.message, node)  # lost it (a reboot?)
            report(p)
            return
        state = cloud_init_state(code, out, err)
        if state in ("done", "absent"):  # absent: an image without cloud-init is ready once SSH works
            p.stage, p.problem = STAGE_READY, None
            p.close()
        elif state == "error":
            said = _guest_log_errors(p.session)
            p.close()
            detail = " | ".join(x for x in (said, cloud_init_detail(out)) if x)
            raise ContextFailed(f"{node.name}: its context failed in the guest (cloud-init status: error)"
                                + (f": {detail}" if detail else "")
                                + f"; see 'skyctl ssh {node.name} -- sudo tail /var/log/cloud-init-output.log'",
                                site=node.site)
        else:
            p.problem = f"cloud-init status: {state}"
            if not keep_open:
                p.close()  # reconnects on its next turn, still at the context stage


GUEST_LOG = "/var/log/cloud-init-output.log"
_ERROR_LINE = re.compile(r"^(E: |Error: |ERROR[: ]|FATAL[: ])")


def log_errors(text: str, most: int = 2) -> list[str]:
    """The last error lines a failing command printed in the guest's cloud-init output log
    (apt's 'E: ...' among them): cloud-init runs package installs without capturing their
    output, so its own status carries only the exit code."""
    return [line.strip() for line in text.splitlines() if _ERROR_LINE.match(line.strip())][-most:]


def _guest_log_errors(session: Session) -> str:
    """Best effort: what the guest's log says went wrong ('' when it cannot be read)."""
    try:
        _, out, _ = session.exec(f"sudo -n tail -n 300 {GUEST_LOG} 2>/dev/null || tail -n 300 {GUEST_LOG}",
                                 timeout=30.0)
    except (Unreachable, CommandTimeout):
        return ""
    return " | ".join(log_errors(out))


def _without_where(message: str, node: Node) -> str:
    """'web-0 (cloud-user@10.0.0.5:22): connection refused' -> 'connection refused'."""
    head, sep, rest = message.partition("): ")
    return rest if sep and head.startswith(f"{node.name} (") else message


def poll_ready(nodes: Sequence[Node], sites: Mapping[str, SiteConfig], opts: SshOptions, *,
               timeout_for: Callable[[str], float] | None = None, reporter: Any = None,
               refresh: Refresh | None = None, poll: float = 1.0,
               parallel: int = 32, hold_connections: int = 64, timeout_name: str | None = None,
               probe: Probe | None = None) -> list[Node]:
    """Wait until every node is ready: address -> ssh (TCP + auth with the key) -> context
    (cloud-init status: done) -> ready. Per-site timeouts (site.ready_timeout by default).

    Raises NotReady (naming each stuck node and its stage), ContextFailed, or a HostKeyError;
    the error carries `.ready` and `.failures` for callers that go on partially; it names
    `timeout_name` (the option that set `timeout_for`) as the limit, else each site's
    ready_timeout. Up to
    `hold_connections` waiting nodes keep their SSH session between polls; beyond that each
    poll reconnects, so a big group does not hold a connection and a thread per node.

    With `probe`, each round asks every site that still has nodes pending about one of them;
    a site that fails SILENT_ROUNDS rounds in a row ends the wait early with SiteSilent
    (exit 3), listing the nodes that exist, instead of waiting out its ready_timeout.
    """
    start = time.monotonic()
    timeouts = {s: (timeout_for(s) if timeout_for else sites[s].ready_timeout) for s in {n.site for n in nodes}}
    progress = [_Progress(n, start + timeouts[n.site]) for n in nodes]
    reported: dict[str, str] = {}
    lock = threading.Lock()

    def report(p: _Progress) -> None:
        with lock:
            if reporter is not None and reported.get(p.node.name) != p.stage:
                reported[p.node.name] = p.stage
                if p.stage == STAGE_READY:
                    reporter.node_ready(p.node)
                else:
                    reporter.node_stage(p.node, p.stage)

    for p in progress:
        report(p)
    pending = list(progress)

    def nap(seconds: float) -> None:
        # One probe per node per round; big groups poll less often to stay cheap. Never past
        # the first deadline still pending: that node gets its last probe on time.
        first = min(p.deadline for p in pending)
        time.sleep(max(0.0, min(seconds, max(poll, 0.02 * len(pending)), first - time.monotonic())))

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes))), thread_name_prefix="wait") as pool:
            # No overall timeout: every node has its own deadline (its site's ready_timeout),
            # checked after each round, so the rounds end when no node is pending.
            silent: dict[str, int] = {}
            for _ in iterate_timeout(None, "nodes to be ready", interval=max(poll, 0.02 * len(nodes)), sleep=nap):
                if probe is not None:
                    _probe_sites(pending, probe, silent, [p.node for p in progress])
                pending = _round(pending, sites, opts, pool, refresh, report,
                                 keep_open=len(pending) <= hold_connections)
                if not pending:
                    break
    finally:
        for p in progress:
            p.close()
    failures = {p.node.name: p.error for p in progress if p.error is not None}
    ready = [p.node for p in progress if p.stage == STAGE_READY]
    if failures:
        raise _not_ready(progress, failures, ready, timeouts, timeout_name)
    return ready


def _probe_sites(pending: list[_Progress], probe: Probe, silent: dict[str, int], nodes: list[Node]) -> None:
    """One question per site with nodes pending; SiteSilent once a site failed SILENT_ROUNDS
    rounds in a row. Refusals that are answers (auth, not found) are not silence."""
    first: dict[str, Node] = {}
    for p in pending:
        first.setdefault(p.node.site, p.node)
    for site, node in first.items():
        try:
            probe(node)
        except DriverError as e:
            if not e.retryable:
                silent.pop(site, None)
                continue
            silent[site] = silent.get(site, 0) + 1
            if silent[site] >= SILENT_ROUNDS:
                raise site_silent(site, e, nodes) from None
            continue
        silent.pop(site, None)


def _round(pending: list[_Progress], sites: Mapping[str, SiteConfig], opts: SshOptions, pool: ThreadPoolExecutor,
           refresh: Refresh | None, report: Callable[[_Progress], None], *, keep_open: bool) -> list[_Progress]:
    """One step for every pending node; returns those still waiting."""
    if refresh is not None:
        _refresh_addresses(pending, refresh)

    def one(p: _Progress) -> None:
        try:
            _step(p, sites, opts, keep_open, report)
        except SkyError as e:
            p.error = e
            p.close()

    try:
        list(pool.map(one, pending))
    except KeyboardInterrupt:
        opts.cancel()
        raise
    now = time.monotonic()
    still: list[_Progress] = []
    for p in pending:
        report(p)
        if p.error is not None or p.stage == STAGE_READY:
            continue
        if now >= p.deadline:
            p.give_up()
            continue
        still.append(p)
    return still


def _refresh_addresses(pending: list[_Progress], refresh: Refresh) -> None:
    lacking = [p for p in pending if p.stage == STAGE_ADDRESS and not p.node.addresses]
    if not lacking:
        return
    try:
        fresh = {(n.site, n.id): n for n in refresh([p.node for p in lacking])}
    except SkyError as e:
        for p in lacking:
            p.problem = e.line()
        return
    for p in lacking:
        n = fresh.get((p.node.site, p.node.id))
        if n is None:
            p.error = NotFound(f"{p.node.name} disappeared while waiting for it", site=p.node.site)
        elif n.state is NodeState.ERROR:
            p.error = ContextFailed(f"{p.node.name} went to state error", site=p.node.site)
        else:
            p.node = n


def _not_ready(progress: list[_Progress], failures: dict[str, SkyError], ready: list[Node],
               timeouts: Mapping[str, float], timeout_name: str | None) -> SkyError:
    hard = [e for e in failures.values() if not isinstance(e, NotReady)]
    if hard:
        err: SkyError = hard[0]
        if len(failures) > 1:
            err.message += f" (and {len(failures) - 1} more node(s) not ready)"
    else:
        by_site: dict[str, list[str]] = {}
        for p in progress:
            if p.node.name in failures:
                by_site.setdefault(p.node.site, []).append(failures[p.node.name].message)
        parts = []
        for site, lines in by_site.items():
            shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
            limit = timeout_name or f"sites.{site}.ready_timeout"
            parts.append(f"{site}: {shown}: not ready after {timeouts[site]:g}s ({limit})")
        first = next(iter(by_site))
        msg = " | ".join(parts)
        err = NotReady(msg.removeprefix(f"{first}: ") if len(parts) == 1 else msg, site=first)
    err.ready = ready  # type: ignore[attr-defined]
    err.failures = failures  # type: ignore[attr-defined]
    return err
