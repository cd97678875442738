"""The CLI's reporter: one line per notable event on stderr; a progress bar on a terminal."""

from __future__ import annotations

from typing import Any

from skyctl.cli.terminal import term
from skyctl.errors import SkyError
from skyctl.ops.reporter import Reporter


def _reason(error: Exception) -> str:
    """What went wrong, for a line that already names the site."""
    return error.reason() if isinstance(error, SkyError) else str(error)


class TerminalReporter(Reporter):
    def __init__(self) -> None:
        self.t = term()
        self._progress: Any = None
        self._task: Any = None

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

    def node_stage(self, node: Any, stage: str) -> None:
        self.t.detail(f"{getattr(node, 'name', node)}: {stage}")

    # -- progress bar for creates (only on a terminal; quiet when piped)
    def create_started(self, total: int) -> None:
        if not self.t.err.is_terminal or total <= 1:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.t.err, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("creating", total=total)

    def node_created(self, node: Any) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)
        self.t.detail(f"created {node.name} on {node.site} ({node.id})")

    def node_deleted(self, node: Any) -> None:
        self.t.detail(f"deleted {node.name} on {node.site}")

    def finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
