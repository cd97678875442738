"""Options shared by every command. Import only typer here: this module loads for --help."""

from __future__ import annotations

from typing import Annotated

import typer

from skyctl.cli.terminal import OutputFormat

OutputOpt = Annotated[
    OutputFormat,
    typer.Option("-o", "--output", help="Output format: table for people, json or yaml for scripts.",
                 case_sensitive=False),
]

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", metavar="K=V", help="Set a context variable (repeatable)."),
]


def global_config_path() -> str | None:
    """The --config given to the top-level command, if any."""
    from skyctl.cli import runtime

    return runtime.CONFIG_PATH
