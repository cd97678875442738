"""stop, start, reboot and the console log: what a node's cloud can do to it besides create and
delete, where its driver declares the capability (Capability.STOP_START, REBOOT, CONSOLE_LOG).

Nodes are grouped per site, one driver call per site, sites in parallel. A site whose driver
lacks the capability answers Unsupported for its nodes; the other sites still act.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skyctl.errors import DriverError, DriverTimeout, Unsupported
from skyctl.model import Capability, Node, NodeState
from skyctl.ops.sky import Sky, retrying

# action -> (capability it needs, the state it leads to, safe to repeat on a Transient error)
ACTIONS: dict[str, tuple[Capability, NodeState, bool]] = {
    "stop": (Capability.STOP_START, NodeState.STOPPED, True),
    "start": (Capability.STOP_START, NodeState.RUNNING, True),
    "reboot": (Capability.REBOOT, NodeState.RUNNING, False),   # twice would reboot twice
}

# What a site without a console log offers instead, per driver (said in the Unsupported hint).
NO_CONSOLE_HINT = "read the guest's own log with 'skyctl logs NODE --cloud-init'"


@dataclass
class PowerOutcome:
    done: list[Node] = field(default_factory=list)            # the cloud accepted the action
    errors: dict[str, DriverError] = field(default_factory=dict)   # per site
    failed: list[Node] = field(default_factory=list)          # on those sites


def power(sky: Sky, nodes: Sequence[Node], action: str, *, hard: bool = False) -> PowerOutcome:
    """Ask each node's cloud to `action` ("stop", "start", "reboot") it. Already there is
    success (the drivers say so); a state the cloud cannot act from is its own refusal."""
    capability, _, repeatable = ACTIONS[action]
    per_site: dict[str, list[Node]] = {}
    for n in nodes:
        per_site.setdefault(n.site, []).append(n)
    out = PowerOutcome()
    able: list[str] = []
    for site in per_site:
        driver_cls = type(sky.driver(site))
        if capability in driver_cls.capabilities:
            able.append(site)
        else:
            out.errors[site] = Unsupported(f"the {driver_cls.name} driver cannot {action} nodes", site=site)

    def run(driver: Any) -> int:
        ids = [n.id for n in per_site[driver.site_name]]
        if action == "reboot":
            driver.reboot(ids, hard=hard)
        else:
            getattr(driver, action)(ids)
        return len(ids)

    # fanout, not gather: the refusals are this command's result, said once by the caller
    answers = sky.fanout(run, able, retry=repeatable) if able else {}
    done = {site for site, res in answers.items() if not isinstance(res, DriverError)}
    out.errors.update({site: res for site, res in answers.items() if isinstance(res, DriverError)})
    for site, batch in per_site.items():
        (out.done if site in done else out.failed).extend(batch)
    return out


def wait_state(sky: Sky, nodes: Sequence[Node], want: NodeState, timeout: float) -> list[Node]:
    """The nodes once each is in `want` (one listing per site per poll), or DriverTimeout
    naming those that are not and the state they are in."""
    from skyctl.polling import Expired, iterate_timeout

    wanted = {(n.site, n.id) for n in nodes}
    sites = sorted({n.site for n in nodes})
    current: dict[tuple[str, str], Node] = {(n.site, n.id): n for n in nodes}
    try:
        for _ in iterate_timeout(timeout, f"nodes to be {want.value}", interval=0.5):
            answers, _errors = sky.gather(lambda d: d.list(None), sites)
            for site, listed in answers.items():
                for n in listed:
                    if (site, n.id) in wanted:
                        current[(site, n.id)] = n
            if all(current[k].state == want for k in wanted):
                break
    except Expired:
        late = [n for k, n in current.items() if n.state != want]
        each = ", ".join(f"{n.name} is {n.state.value}" for n in late)
        raise DriverTimeout(f"not {want.value} after {timeout:g} s: {each}", site=late[0].site if len(
            {n.site for n in late}) == 1 else None) from None
    return [current[(n.site, n.id)] for n in nodes]


def console_log(sky: Sky, node: Node, *, lines: int | None = None) -> str:
    """The node's console output as its cloud keeps it (the last `lines` lines)."""
    driver = sky.driver(node.site)
    if Capability.CONSOLE_LOG not in type(driver).capabilities:
        err = Unsupported(f"the {driver.name} driver offers no console log", site=node.site)
        try:
            driver.console_log(node.id)   # the driver's own words, when it has them
        except Unsupported as e:
            err = e
        err.hint = err.hint or NO_CONSOLE_HINT
        raise err
    text = retrying(lambda: driver.console_log(node.id))
    if lines is not None:
        text = "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
    return text


CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"   # cloud-init's `output: all` default
ONE_CONTEXT_LOG = "/var/log/one-context.log"         # OpenNebula's one-context packages
