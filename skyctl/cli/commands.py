"""Which commands exist. One module per command group; all light at import."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from skyctl.cli import context, sandbox

    app.add_typer(context.app, name="context")
    app.add_typer(sandbox.app, name="sandbox")
