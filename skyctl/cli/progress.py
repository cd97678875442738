"""The CLI's reporter: one line per notable event on stderr; live stages on a terminal.

On a terminal a launch shows one row per stage a node goes through (creating, booting, ssh,
context), each with how many nodes are past it and its own timer, which runs while nodes are
in that stage and stops when the last one leaves it; a single node shows too. When piped it is
quiet. With -v each node's changes of stage are printed once each (not every poll).
"""

from __future__ import annotations

import threading
from typing import Any

from skyctl.cli.terminal import term
from skyctl.errors import SkyError
from skyctl.ops.reporter import Reporter

# The rows, in the order a node passes them; a node's stage names the row it is in.
ROWS = ("creating", "booting", "ssh", "context")
# What each reported stage means for the node: the rows it has finished (their count).
_DONE = {"created": 1, "pending": 1, "unknown": 1, "running": 2, "stopped": 2,
         "address": 2, "ssh": 2, "context": 3, "ready": 4}


def _reason(error: Exception) -> str:
    """What went wrong, for a line that already names the site."""
    return error.reason() if isinstance(error, SkyError) else str(error)


class TerminalReporter(Reporter):
    def __init__(self) -> None:
        self.t = term()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._total = 0
        self._done: dict[str, int] = {}      # node name -> rows finished
        self._said: dict[str, str] = {}      # node name -> last stage printed with -v
        self._lock = threading.Lock()

    def site_error(self, site: str, error: Exception) -> None:
        self.t.warn(f"{site}: {_reason(error)}")

    def site_full(self, site: str, reason: str) -> None:
        self.t.info(f"{site} is full, placing the rest elsewhere: {reason}")

    def node_failed(self, site: str, name: str, error: Exception) -> None:
        self.t.detail(f"{name} on {site} failed: {_reason(error)}")

    def message(self, text: str) -> None:
        self.t.info(text)

    def warning(self, text: str) -> None:
        self.t.warn(text)

    # -- stages
    def create_started(self, total: int) -> None:
        with self._lock:
            self._total = total
            if not self.t.err.is_terminal or total < 1 or self._progress is not None:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.t.err, transient=True)
            self._progress.start()
            self._row("creating")

    def _row(self, name: str) -> Any:
        """The row's task, added (its timer started) when the first node reaches it."""
        task = self._tasks.get(name)
        if task is None and self._progress is not None:
            task = self._tasks[name] = self._progress.add_task(name, total=self._total)
        return task

    def _advance(self, node: Any, stage: str) -> None:
        name = getattr(node, "name", str(node))
        done = _DONE.get(stage)
        with self._lock:
            if self._said.get(name) != stage:
                self._said[name] = stage
                self.t.detail(f"{name}: {stage}")
            if done is None or done <= self._done.get(name, 0):
                return
            self._done[name] = done
            if self._progress is None:
                return
            for row in ROWS[:done + 1]:  # the rows it finished, and the one it is in now
                self._row(row)
            for row in ROWS[:done]:
                finished = sum(1 for d in self._done.values() if d > ROWS.index(row))
                self._progress.update(self._tasks[row], completed=finished)

    def node_created(self, node: Any) -> None:
        self.t.detail(f"created {node.name} on {node.site} ({node.id})")
        with self._lock:
            self._said[node.name] = "created"
        self._advance(node, "created")

    def node_stage(self, node: Any, stage: str) -> None:
        self._advance(node, stage)

    def node_ready(self, node: Any) -> None:
        self._advance(node, "ready")

    def node_deleted(self, node: Any) -> None:
        self.t.detail(f"deleted {node.name} on {node.site}")

    def finished(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                self._tasks.clear()
