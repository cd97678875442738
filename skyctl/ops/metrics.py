"""Prometheus metrics of `burst watch`: what each tick saw (nodes, burst nodes, sites that
answered) and did (moves home, overflows noticed, errors, duration).

prometheus_client is the optional extra `skyctl[metrics]`, imported only when metrics are
asked for; without it, `WatchMetrics()` raises a ConfigError that says what to install.
"""

from __future__ import annotations

from typing import Any

from skyctl.errors import ConfigError
from skyctl.model import L_OWNER, Tier
from skyctl.ops.watch import TickReport

INSTALL_HINT = "pip install 'skyctl[metrics]' (or pip install prometheus_client)"


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("--metrics-port needs the prometheus_client package, which is not installed",
                          hint=INSTALL_HINT) from None
    return prometheus_client


class WatchMetrics:
    """The families, in a registry of their own (no process/platform collectors)."""

    def __init__(self) -> None:
        pc = _client()
        self._pc = pc
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.nodes = pc.Gauge("skyctl_nodes", "Nodes seen by the last tick, by site, group, state and owner",
                              ["site", "group", "state", "owner"], registry=r)
        self.burst_nodes = pc.Gauge("skyctl_burst_nodes", "Burst nodes (on remote sites) each rule covers",
                                    ["rule"], registry=r)
        self.burst_by_site = pc.Gauge("skyctl_burst_nodes_by_site", "Nodes of skyctl groups on remote sites",
                                      ["site", "group"], registry=r)
        self.moves = pc.Counter("skyctl_moves_home", "Burst nodes moved home (result ok or failed)",
                                ["rule", "from_site", "to_site", "result"], registry=r)
        self.overflows = pc.Counter("skyctl_overflows", "Burst nodes that appeared on a remote site since the "
                                    "watch started (load that overflowed the local site)",
                                    ["site", "group"], registry=r)
        self.ticks = pc.Counter("skyctl_ticks", "Ticks run (result ok, or failed as a whole)", ["result"],
                                registry=r)
        self.tick_duration = pc.Histogram("skyctl_tick_duration_seconds", "How long one tick took",
                                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r)
        self.last_tick = pc.Gauge("skyctl_last_tick_timestamp_seconds", "When the last tick started (unix time)",
                                  registry=r)
        self.site_up = pc.Gauge("skyctl_site_up", "1 if the site answered the last tick, else 0", ["site"],
                                registry=r)
        self.site_errors = pc.Counter("skyctl_site_errors", "Ticks in which the site did not answer", ["site"],
                                      registry=r)
        self._seen_burst: set[tuple[str, str]] | None = None  # (site, node id); None until the first tick

    def observe(self, report: TickReport) -> None:
        self.ticks.labels(result="ok" if report.ok else "failed").inc()
        self.tick_duration.observe(report.duration)
        self.last_tick.set(report.started)
        result = report.result
        if result is None:
            return  # nothing was seen: keep the last tick's gauges rather than zeroing them
        for site in report.tiers:
            self.site_errors.labels(site=site)  # every site's series exists, at 0 until it fails
            up = site not in result.site_errors
            self.site_up.labels(site=site).set(1 if up else 0)
            if not up:
                self.site_errors.labels(site=site).inc()
        self.nodes.clear()
        counts: dict[tuple[str, str, str, str], int] = {}
        burst: dict[tuple[str, str], int] = {}
        now_burst: set[tuple[str, str]] = set()
        for n in result.nodes:
            key = (n.site, n.group or "", n.state.value, n.labels.get(L_OWNER, ""))
            counts[key] = counts.get(key, 0) + 1
            if n.group and report.tiers.get(n.site) is Tier.REMOTE:
                burst[(n.site, n.group)] = burst.get((n.site, n.group), 0) + 1
                now_burst.add((n.site, n.id))
                if self._seen_burst is not None and (n.site, n.id) not in self._seen_burst:
                    self.overflows.labels(site=n.site, group=n.group).inc()
        answered = {s for s in report.tiers if s not in result.site_errors}
        # A site that did not answer keeps its nodes in the "seen" set: they are not new when it is back.
        kept = {k for k in (self._seen_burst or set()) if k[0] not in answered}
        self._seen_burst = now_burst | kept
        for (site, group, state, owner), count in counts.items():
            self.nodes.labels(site=site, group=group, state=state, owner=owner).set(count)
        self.burst_by_site.clear()
        for (site, group), count in burst.items():
            self.burst_by_site.labels(site=site, group=group).set(count)
        for tick in result.rules:
            self.burst_nodes.labels(rule=tick.rule).set(tick.burst_nodes)
        rule_of = {m.node: t.rule for t in result.rules for m in t.moves}
        for o in result.outcomes:
            self.moves.labels(rule=rule_of.get(o.move.node, ""), from_site=o.move.from_site,
                              to_site=o.move.to_site, result="ok" if o.ok else "failed").inc()

    def text(self) -> str:
        return self._pc.generate_latest(self.registry).decode()

    def serve(self, port: int, address: str = "127.0.0.1") -> Any:
        """Serve /metrics on address:port in a background thread; returns the server (shutdown())."""
        try:
            started = self._pc.start_http_server(port, addr=address, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {address}:{port}: {e.strerror or e}") from None
        return started[0] if isinstance(started, tuple) else None
