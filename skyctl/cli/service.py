"""`burst watch` run as a service: events on stderr as text or one JSON object per line,
Prometheus metrics on a port, and SIGTERM (what systemd sends) as a clean stop."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from skyctl.cli.terminal import term
from skyctl.errors import SkyError
from skyctl.ops.reporter import Reporter


class EventLog:
    """Where the watch says what happens: lines for people, or JSON objects for a log stack."""

    def __init__(self, fmt: str) -> None:
        self.json = fmt == "json"

    def __call__(self, event: str, message: str, *, level: str = "info", **fields: Any) -> None:
        if self.json:
            record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1000):03d}Z",
                      "level": level, "event": event, "message": message, **fields}
            sys.stderr.write(json.dumps(record, default=str) + "\n")
            sys.stderr.flush()
        elif level in ("warning", "error"):
            term().warn(message)
        elif level == "debug":
            term().detail(message)
        else:
            term().info(message)


class _JsonLogging:
    """Library log records (keystoneauth, paramiko...) as events too, so that with
    --log-format json every line on stderr is one JSON object."""

    def __init__(self, log: EventLog) -> None:
        import logging

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    log("log", record.getMessage(), level=record.levelname.lower(), logger=record.name)
                except Exception:  # noqa: BLE001 - logging must never break the watch
                    self.handleError(record)

        self.handler = Handler(level=logging.WARNING)
        self.root = logging.getLogger()
        self.saved = list(self.root.handlers)

    def __enter__(self) -> None:
        for h in self.saved:
            self.root.removeHandler(h)
        self.root.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        self.root.removeHandler(self.handler)
        for h in self.saved:
            self.root.addHandler(h)


class EventReporter(Reporter):
    """What the ops layer reports during a tick, as events."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def site_error(self, site: str, error: Exception) -> None:
        reason = error.reason() if isinstance(error, SkyError) else str(error)
        self.log("site_error", f"{site}: {reason}", level="warning", site=site, error=reason)

    def site_full(self, site: str, reason: str) -> None:
        self.log("site_full", f"{site} is full: {reason}", site=site, reason=reason)

    def message(self, text: str) -> None:
        self.log("message", text)

    def warning(self, text: str) -> None:
        self.log("warning", text, level="warning")

    def node_created(self, node: Any) -> None:
        if self.log.json:
            self.log("node_created", f"created {node.name} on {node.site}", node=node.name, site=node.site,
                     id=node.id)

    def node_deleted(self, node: Any) -> None:
        if self.log.json:
            self.log("node_deleted", f"deleted {node.name} on {node.site}", node=node.name, site=node.site,
                     id=node.id)


def run_watch(*, interval: float, ticks: int, metrics_port: int | None, metrics_address: str,
              log_format: str) -> int:
    """The watch loop with its signals, log and metrics; returns the number of ticks run."""
    import signal

    from skyctl.cli.runtime import open_sky
    from skyctl.cli.runtime import load_federation
    from skyctl.ops.watch import Watch, tick_event, watch_interval

    log = EventLog(log_format)
    try:
        interval = watch_interval(interval, load_federation().rules)
    except SkyError:
        pass  # the first tick says what is wrong with the file, and the watch goes on
    metrics = server = None
    if metrics_port is not None:
        from skyctl.ops.metrics import WatchMetrics

        metrics = WatchMetrics()
        server = metrics.serve(metrics_port, metrics_address)
        port = server.server_port if server is not None else metrics_port
        log("metrics", f"serving metrics on http://{metrics_address}:{port}/metrics", address=metrics_address,
            port=port)

    def on_tick(report: Any) -> None:
        if metrics is not None:
            metrics.observe(report)
        event = tick_event(report)
        if not report.ok:
            log("tick", f"tick {report.number} failed: {report.error}", level="error", **_rest(event))
            return
        result = report.result
        text = f"tick {report.number}: {event['moves']} move(s)"
        if result.site_errors:
            text += f"; sites not answering: {', '.join(result.site_errors)}"
        log("tick", text, level="warning" if result.site_errors else "info", **_rest(event))
        for o in result.outcomes:
            fields = {"node": o.move.node, "group": o.move.group, "from": o.move.from_site, "to": o.move.to_site,
                      "ok": o.ok, "new_node": o.new_node, "error": o.error}
            if o.ok:
                log("move", f"moved {o.move.node} from {o.move.from_site} to {o.move.to_site} as {o.new_node}",
                    **fields)
            else:
                log("move", f"could not move {o.move.node} to {o.move.to_site}: {o.error}", level="warning",
                    **fields)
        for d in result.demand:
            data = d.to_json()
            if d.error:
                log("demand", d.error, level="warning", **data)
            else:
                tick = d.tick
                log("demand", f"{d.rule}: {tick.pending_cores if tick else 0} cores pending, target "
                    f"{tick.target if tick else '?'}, +{len(d.created)} -{len(d.deleted)}"
                    + (f", kept {', '.join(d.kept)}" if d.kept else ""),
                    level="warning" if (d.kept or d.failed) else "info", **data)

    reporter = EventReporter(log)
    watch = Watch(lambda: open_sky(reporter), interval=interval, ticks=ticks, on_tick=on_tick,
                  on_start=lambda n: log("tick_started", f"tick {n} started", level="debug", tick=n))
    stopped_by: list[str] = []

    def on_term(signum: int, _frame: Any) -> None:
        stopped_by.append(signal.Signals(signum).name)
        watch.stop()  # the tick in progress finishes; no new one starts

    previous = signal.signal(signal.SIGTERM, on_term)
    log("started", f"watching: a tick every {interval:g}s", interval=interval)
    try:
        if log.json:
            with _JsonLogging(log):
                watch.run()
        else:
            watch.run()
    except KeyboardInterrupt:
        stopped_by.append("SIGINT")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.shutdown()
    why = f" ({stopped_by[0]})" if stopped_by else ""
    log("stopped", f"stopped after {watch.done} tick(s){why}", ticks=watch.done,
        signal=stopped_by[0] if stopped_by else None)
    if stopped_by and stopped_by[0] == "SIGINT":  # Ctrl-C is an interruption (130); SIGTERM a clean stop (0)
        from skyctl.cli.interrupts import kept_line
        from skyctl.errors import Interrupted

        raise Interrupted(kept_line(["burst", "watch"]).replace(": ", f": after {watch.done} tick(s), ", 1))
    return watch.done


def _rest(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "event"}
