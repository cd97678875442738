"""Process-wide settings from the global options, and the way commands open the sky."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.config import Federation
    from skyctl.ops.sky import Sky

CONFIG_PATH: str | None = None
ACTING_FOR: str | None = None  # --owner: act on someone else's nodes (said on stderr)


def load_federation() -> Federation:
    """The federation file named by --config / SKYCTL_CONFIG / the XDG default."""
    from skyctl import config
    from skyctl.cli.terminal import term

    path, why = config.config_source(CONFIG_PATH)
    term().detail(f"federation file: {path} ({why})")
    return config.load(path)


def open_sky(reporter: Any = None) -> Sky:
    from skyctl.cli.progress import TerminalReporter
    from skyctl.cli.terminal import term
    from skyctl.logsafe import fold_third_party
    from skyctl.ops.sky import Sky

    t = term()
    if reporter is None:  # a command's own run (burst watch routes library logs as its events)
        fold_third_party(t.warn, debug=t.debug)  # keystoneauth, paramiko...: one line per site and kind

    sky = Sky(load_federation(), reporter=reporter or TerminalReporter(), acting_for=ACTING_FOR)
    if ACTING_FOR:
        from skyctl.cli.terminal import term

        term().warn(f"acting for owner {sky.owner(sky.site_names[0])} (--owner), not as yourself")
    return sky


def raise_if_failed(outcome: Any) -> None:
    """An ops Outcome of AUTH or FAILED: the deciding error is the result (its line, its code)."""
    if outcome.error is not None:
        raise outcome.error


def exit_partial(errors: dict[str, Any], what: str = "answer") -> None:
    """Some sites failed but others answered: warn naming them and exit 3."""
    if not errors:
        return
    import typer

    from skyctl.cli.terminal import term
    from skyctl.errors import EXIT_PARTIAL

    names = ", ".join(sorted(errors))
    term().warn(f"partial result: {names} did not {what}")
    raise typer.Exit(EXIT_PARTIAL)
