"""`skyctl burst watch` as a service against the sandbox: Prometheus metrics read over HTTP
show a burst, a site going down and a move home; JSON logs; SIGTERM finishes the tick in
progress and exits 0."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL, SkyCli

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory, skyctl_sandbox: Any) -> Iterator[SkyCli]:
    with skyctl_sandbox(tmp_path_factory.mktemp("service-home"), boot_delay=0.1) as s:
        yield s


class Service:
    """`skyctl burst watch` in the background, its JSON events read as they come."""

    def __init__(self, sky: SkyCli, *args: str) -> None:
        self.proc = subprocess.Popen([SKYCTL, "burst", "watch", "--log-format", "json", *args], env=sky.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                self._q.put(json.loads(line))
            except ValueError:
                self._q.put({"event": "NOT JSON", "raw": line, "level": "error", "ts": "Z"})

    def wait_event(self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
        for _ in iterate_timeout(timeout, what, interval=0.05):
            while not self._q.empty():
                event = self._q.get()
                self.events.append(event)
                if match(event):
                    return event
            assert self.proc.poll() is None or not self._q.empty(), "".join(self.raw)
        raise AssertionError("unreachable")

    def metrics(self, port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=120)
        self.wait_event(lambda e: e["event"] == "stopped", "the stopped event", timeout=10)
        return rc


def _value(m: dict[Any, float], name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def _until(svc: Service, port: int, what: str, check: Callable[[dict[Any, float]], bool]) -> dict[Any, float]:
    for _ in iterate_timeout(90, what, interval=0.2):
        m = svc.metrics(port)
        if check(m):
            return m
        assert svc.proc.poll() is None, "".join(svc.raw)
    raise AssertionError("unreachable")


def test_metrics_show_a_burst_a_site_down_and_a_move_home(sky: SkyCli) -> None:
    svc = Service(sky, "--interval", "1", "--metrics-port", "0")
    try:
        port = svc.wait_event(lambda e: e["event"] == "metrics", "the metrics port")["port"]
        sky.run("launch", "pin", "--count", "8", "--site", "home")
        sky.run("launch", "g", "--count", "3")  # home is full: all three burst to cc
        assert sky.sites_of("g") == {"cc": 3}
        m = _until(svc, port, "3 burst nodes", lambda m: _value(m, "skyctl_burst_nodes", rule="overflow-home") == 3
                   and _value(m, "skyctl_overflows_total", site="cc", group="g") == 3)
        owner = sky.nodes("g")[0]["labels"]["owner"]  # owners come from each site's identity
        home_owner = sky.nodes("pin")[0]["labels"]["owner"]
        assert _value(m, "skyctl_nodes", site="cc", group="g", state="running", owner=owner) == 3
        assert _value(m, "skyctl_nodes", site="home", group="pin", state="running", owner=home_owner) == 8
        assert _value(m, "skyctl_burst_nodes_by_site", site="cc", group="g") == 3
        assert _value(m, "skyctl_site_up", site="sara") == 1 and _value(m, "skyctl_site_errors_total", site="sara") == 0

        sky.run("sandbox", "fault", "sara", "--down")
        try:
            m = _until(svc, port, "sara down", lambda m: _value(m, "skyctl_site_up", site="sara") == 0)
            ticks = _value(m, "skyctl_ticks_total", result="ok") or 0
            m = _until(svc, port, "more ticks with sara down",
                       lambda m: (_value(m, "skyctl_ticks_total", result="ok") or 0) >= ticks + 2)
            assert (_value(m, "skyctl_site_errors_total", site="sara") or 0) >= 2
            assert _value(m, "skyctl_site_up", site="home") == 1
        finally:
            sky.run("sandbox", "fault", "sara", "--up")
        _until(svc, port, "sara back", lambda m: _value(m, "skyctl_site_up", site="sara") == 1)

        sky.run("delete", "pin", "--yes")  # home has room: the watch moves g home
        m = _until(svc, port, "3 moves home", lambda m: _value(
            m, "skyctl_moves_home_total", rule="overflow-home", from_site="cc", to_site="home", result="ok") == 3
            and _value(m, "skyctl_burst_nodes", rule="overflow-home") == 0)
        assert _value(m, "skyctl_nodes", site="home", group="g", state="running", owner=home_owner) == 3
        assert _value(m, "skyctl_nodes", site="cc", group="g", state="running", owner=owner) is None
        assert _value(m, "skyctl_overflows_total", site="cc", group="g") == 3  # moving home is no overflow
        assert (_value(m, "skyctl_tick_duration_seconds_count") or 0) >= 3
        assert sky.sites_of("g") == {"home": 3}
    finally:
        rc = svc.stop()
    assert rc == 0, "".join(svc.raw)
    assert not [e for e in svc.events if e["event"] == "NOT JSON"], "".join(svc.raw)
    moves = [e for e in svc.events if e["event"] == "move"]
    assert len(moves) == 3 and all(e["ok"] and e["from"] == "cc" and e["to"] == "home" for e in moves)
    assert {e["level"] for e in svc.events} <= {"debug", "info", "warning", "error"}
    assert all(isinstance(e["ts"], str) and e["ts"].endswith("Z") for e in svc.events)
    sky.run("delete", "g", "--yes")


def test_sigterm_finishes_the_tick_in_progress_and_exits_0(sky: SkyCli) -> None:
    sky.run("sandbox", "fault", "home", "--latency", "3000")  # every tick now takes 3 s or more
    try:
        svc = Service(sky, "--interval", "1")
        svc.wait_event(lambda e: e["event"] == "tick_started", "tick 1 to start")
        svc.proc.send_signal(signal.SIGTERM)
        rc = svc.proc.wait(timeout=120)
        stopped = svc.wait_event(lambda e: e["event"] == "stopped", "the stopped event", timeout=10)
    finally:
        sky.run("sandbox", "fault", "home", "--latency", "0")
    assert rc == 0, "".join(svc.raw)
    ticks = [e for e in svc.events if e["event"] == "tick"]
    assert [t["tick"] for t in ticks] == [1] and ticks[0]["ok"] and ticks[0]["duration_s"] >= 2.9
    assert stopped["signal"] == "SIGTERM" and stopped["ticks"] == 1


def test_metrics_without_prometheus_client_say_what_to_install(sky: SkyCli, tmp_path: Any) -> None:
    # A prometheus_client that cannot be imported, first on the path.
    fake = tmp_path / "fake"
    (fake / "prometheus_client").mkdir(parents=True)
    (fake / "prometheus_client" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = dict(sky.env, PYTHONPATH=str(fake))
    proc = subprocess.run([SKYCTL, "burst", "watch", "--metrics-port", "0", "--ticks", "1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "skyctl[metrics]" in proc.stderr and "Traceback" not in proc.stderr
