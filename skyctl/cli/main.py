"""Top-level typer app: global options, command registration, error -> exit code mapping.

Command modules import only typer at module level so `skyctl --help` stays fast; each command
imports what it needs (config, ops, drivers) when it runs.
"""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

import sys
from typing import Annotated, Any

import typer

from skyctl import __version__
from skyctl.cli import runtime
from skyctl.cli.terminal import term

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 error, 2 usage or config error, 3 partial success (some sites or nodes "
    "failed), 4 no capacity anywhere, 5 authentication failed, 6 no site answered, 130 interrupted."
)

app = typer.Typer(
    name="skyctl",
    help="Launch contextualised VMs across federated OpenStack and OpenNebula clouds, see them as "
    "one sky, and burst to remote clouds when the local site fills.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"skyctl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    # No envvar= here: config.config_source reads SKYCTL_CONFIG itself, so -v can say which it was.
    config: Annotated[str | None, typer.Option("--config", "-c", metavar="PATH",
                                               help="Federation file (default: $SKYCTL_CONFIG, then "
                                               "~/.config/skyctl/sky.yaml, then the running sandbox's; "
                                               "-v says which was loaded and why).")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr.")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and driver requests.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (also NO_COLOR=1).")] = False,
    owner: Annotated[str | None, typer.Option("--owner", metavar="NAME",
                                              help="Act on the nodes of this owner (a colleague's, as "
                                              "'ps --all-owners' shows it), not your own.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    runtime.CONFIG_PATH = config
    runtime.ACTING_FOR = owner
    t = term()
    t.verbose = verbose + (2 if debug else 0)
    t.debug = debug
    t.no_color = t.no_color or no_color
    if debug or verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
        from skyctl.logsafe import install_redaction

        install_redaction()


def _register() -> None:
    from skyctl.cli import commands

    commands.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn every outcome into an exit code."""
    from skyctl.errors import EXIT_ERROR, EXIT_INTERRUPTED, SkyError

    t = term()
    try:
        command = typer.main.get_command(app)
        args = hoist_global_options(command, list(sys.argv[1:] if argv is None else argv))
        rc = command.main(args=args, standalone_mode=False, prog_name="skyctl")
    except SkyError as e:
        if t.debug:
            import traceback

            traceback.print_exc()
        t.error(e.line())
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        from skyctl.cli.interrupts import kept_line

        t.error(kept_line(sys.argv[1:] if argv is None else argv))  # one line: what Ctrl-C kept
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        from skyctl.cli.interrupts import kept_line

        t.error(kept_line(sys.argv[1:] if argv is None else argv).replace("interrupted", "aborted", 1))
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors come here too
        if _is_click_error(e):
            ctx = getattr(e, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            t.error(f"{e.format_message().replace('Value error, ', '')}{where}")  # type: ignore[attr-defined]
            sys.exit(getattr(e, "exit_code", 2))
        if t.debug:
            raise
        t.error(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        sys.exit(EXIT_ERROR)
    if rc == EXIT_INTERRUPTED:  # typer turns a KeyboardInterrupt into a silent Exit(130)
        from skyctl.cli.interrupts import kept_line

        t.error(kept_line(sys.argv[1:] if argv is None else argv))  # one line: what Ctrl-C kept
    sys.exit(rc if isinstance(rc, int) else 0)


def _is_click_error(e: Exception) -> bool:
    """Typer vendors click in recent releases (typer._click); older ones use click itself."""
    classes = []
    try:
        from typer._click.exceptions import ClickException as Vendored  # type: ignore[import-not-found]

        classes.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        classes.append(ClickException)
    except ImportError:
        pass
    return isinstance(e, tuple(classes))


# The app's own options (name -> takes a value); they may come before or after the command.
GLOBAL_OPTIONS = {"--config": True, "-c": True, "--verbose": False, "-v": False, "--debug": False,
                  "--no-color": False, "--owner": True}
OUTPUT_OPTIONS = ("-o", "--output")


def hoist_global_options(root: Any, args: list[str]) -> list[str]:
    """`skyctl ps --config f -v` as `skyctl --config f -v ps`, and `skyctl -o json ps` as
    `skyctl ps -o json`: the app's options work on either side of the command, and so does
    a command's -o. A command's own option of the same name keeps it; nothing after `--` (the
    words for the node) and no option's value is touched."""
    before: list[str] = []
    i = 0
    output: list[str] = []
    while i < len(args):   # the app's options and a stray -o before the command
        a = args[i]
        name = a.split("=", 1)[0]
        if name in GLOBAL_OPTIONS or _is_count_flag(a):
            before.append(a)
            if GLOBAL_OPTIONS.get(name) and "=" not in a and i + 1 < len(args):
                before.append(args[i + 1])
                i += 1
        elif name in OUTPUT_OPTIONS or (a.startswith("-o") and len(a) > 2 and not a.startswith("--")):
            output.append(a)
            if a in OUTPUT_OPTIONS and i + 1 < len(args):
                output.append(args[i + 1])
                i += 1
        elif a.startswith("-") and a not in ("--",):
            before.append(a)   # --help, --version...: click's to judge
        else:
            break
        i += 1
    path: list[str] = []
    cmd = root
    # duck-typed: typer vendors click in recent releases (typer._click), older ones use click
    while i < len(args) and isinstance(getattr(cmd, "commands", None), dict) and not args[i].startswith("-"):
        sub = cmd.commands.get(args[i])
        if sub is None:
            break
        path.append(args[i])
        cmd = sub
        i += 1
    if cmd is root:
        return args
    own: dict[str, bool] = {}
    for param in getattr(cmd, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            for opt in (*param.opts, *param.secondary_opts):
                own[opt] = not (param.is_flag or param.count)
    rest: list[str] = []
    tail = args[i:]
    j = 0
    while j < len(tail):
        a = tail[j]
        if a == "--":
            rest += tail[j:]
            break
        name = a.split("=", 1)[0]
        if name in own or (a.startswith("-") and not a.startswith("--") and a[:2] in own):
            rest.append(a)   # the command's own option, with its value
            if own.get(name) and "=" not in a and j + 1 < len(tail):
                rest.append(tail[j + 1])
                j += 1
        elif name in GLOBAL_OPTIONS or _is_count_flag(a):
            before.append(a)
            if GLOBAL_OPTIONS.get(name) and "=" not in a and j + 1 < len(tail):
                before.append(tail[j + 1])
                j += 1
        else:
            rest.append(a)
        j += 1
    if output:
        cut = rest.index("--") if "--" in rest else len(rest)
        rest = rest[:cut] + output + rest[cut:]
    return [*before, *path, *rest]


def _is_count_flag(arg: str) -> bool:
    """-v, -vv, -vvv."""
    return len(arg) >= 2 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) == {"v"}
