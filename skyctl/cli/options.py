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
CostYesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before placing nodes on sites that cost "
                                          "money (asked only on a terminal; a pipeline is never asked: it goes "
                                          "ahead and the cost line is printed on stderr).")]

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


def cost_gate(yes: bool):  # type: ignore[no-untyped-def]
    """For ops.launch's `confirm`: say what the plan's nodes cost per hour on the sites that
    charge; ask on a terminal unless `yes`. Never blocks a pipeline (not a terminal: go ahead)."""

    def gate(plan) -> bool:  # type: ignore[no-untyped-def]
        from skyctl.cli.terminal import term

        costs = plan.hourly_cost()
        if not costs:
            return True
        t = term()
        count = {d.site: d.count for d in plan.placements}
        each = ", ".join(f"{count[s]} on {s} {c:.4g}/h" for s, c in costs.items())
        t.info(f"{plan.request.group}: expected cost {sum(costs.values()):.4g} per hour ({each}; the sites' "
               "price or cost per core-hour)")
        if yes or not t.interactive:
            return True
        return bool(t.confirm("Go ahead?"))

    return gate
