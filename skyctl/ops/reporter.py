"""Progress events out of the ops layer. The CLI subclasses this; tests record events.

Ops never prints: it tells the reporter what happened, and the reporter decides how (a
progress bar on a terminal, nothing when piped).
"""

from __future__ import annotations

from typing import Any


class Reporter:
    def site_error(self, site: str, error: Exception) -> None:
        """A site could not be reached or refused a request; the others go on."""

    def plan_ready(self, plan: Any) -> None: ...

    def create_started(self, total: int) -> None: ...

    def node_created(self, node: Any) -> None: ...

    def node_failed(self, site: str, name: str, error: Exception) -> None: ...

    def site_full(self, site: str, reason: str) -> None: ...

    def node_ready(self, node: Any) -> None: ...

    def node_stage(self, node: Any, stage: str) -> None: ...

    def node_deleted(self, node: Any) -> None: ...

    def message(self, text: str) -> None: ...

    def warning(self, text: str) -> None:
        """Something the user should fix, though the operation goes on."""

    def finished(self) -> None: ...
