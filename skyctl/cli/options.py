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

VarFileOpt = Annotated[
    list[str] | None,
    typer.Option("--var-file", metavar="FILE", help="YAML file of NAME: value context variables (repeatable)."),
]


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    """--var NAME=VALUE pairs as a dict. The error names only the NAME part: values may be secret."""
    from skyctl.errors import UsageError

    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--var {pair.split('=')[0]!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out
