"""The one object that owns the terminal: stdout for results, stderr for everything else.

Every command prints through `term()`. With `-o json|yaml` stdout carries only the document;
progress, warnings and errors always go to stderr. Colour follows --no-color / NO_COLOR and
whether stderr is a terminal.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


# Columns whose cells are never folded: ids and names are copied and grepped whole.
WHOLE_COLUMNS = ("ID", "NAME", "NODE", "NEW NODE")


class Terminal:
    def __init__(self) -> None:
        self.verbose = 0
        self.debug = False
        self.no_color = bool(os.environ.get("NO_COLOR"))
        self._out = None
        self._err = None

    # rich is imported on first output, not at start-up
    @property
    def out(self):  # type: ignore[no-untyped-def]
        if self._out is None:
            from rich.console import Console

            # Piped output is for grep and friends: never fold a row at 80 columns.
            width = None if sys.stdout.isatty() else 10_000
            self._out = Console(no_color=self.no_color, highlight=False, soft_wrap=False, width=width)
        return self._out

    @property
    def err(self):  # type: ignore[no-untyped-def]
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, no_color=self.no_color, highlight=False, soft_wrap=True)
        return self._err

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty() and sys.stdin.isatty()

    # ---------------------------------------------------------------- messages (stderr)
    # Messages carry text clouds and nodes chose (names, addresses, fault messages): never
    # markup, and control characters are shown escaped, not obeyed.
    def info(self, msg: str) -> None:
        self.err.print(printable(msg, lines=True), markup=False)

    def detail(self, msg: str) -> None:
        """Shown with -v."""
        if self.verbose:
            self.err.print(printable(msg, lines=True), markup=False, style="dim")

    def warn(self, msg: str) -> None:
        self.err.print(f"warning: {printable(msg, lines=True)}", markup=False, style="yellow")

    def error(self, msg: str) -> None:
        self.err.print(f"error: {printable(msg, lines=True)}", markup=False, style="bold red")

    # ---------------------------------------------------------------- results (stdout)
    def emit(self, data: Any, fmt: OutputFormat, *, table: Callable[[Any], Any] | None = None) -> None:
        """Print a command's result: a document for json/yaml, a rich renderable for table."""
        if fmt == OutputFormat.json:
            import json  # here, not at the top: --help and table output never need it

            sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        elif fmt == OutputFormat.yaml:
            import yaml

            sys.stdout.write(yaml.dump(_plain(data), Dumper=_block_dumper(), sort_keys=False, allow_unicode=True))
        else:
            renderable = table(data) if table else data
            if isinstance(renderable, str):
                sys.stdout.write(renderable if renderable.endswith("\n") else renderable + "\n")
            elif renderable is not None:
                self.out.print(renderable)
        sys.stdout.flush()

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,  # type: ignore[no-untyped-def]
              whole: Iterable[str] = WHOLE_COLUMNS):
        """Cells fold onto more lines when the terminal is narrow, except in the `whole`
        columns (ids, names): an id split over two lines cannot be copied or grepped."""
        from rich.table import Table
        from rich.text import Text

        keep = set(whole)
        cells = [[Text("" if v is None else printable(str(v))) for v in r] for r in rows]
        t = Table(title=title, box=None, pad_edge=False, header_style="bold")
        for i, c in enumerate(columns):
            if c in keep:
                widest = max([len(c), *(r[i].cell_len for r in cells if i < len(r))])
                t.add_column(c, no_wrap=True, overflow="ignore", min_width=widest)
            else:
                t.add_column(c, overflow="fold")
        for r in cells:  # Text, not str: a cell's `[bold]` is shown, not interpreted
            t.add_row(*r)
        return t

    def confirm(self, question: str) -> bool:
        if not self.interactive:
            return False
        from rich.prompt import Confirm

        return Confirm.ask(question, console=self.err, default=False)


# C0 and C1 controls (ESC starts terminal sequences, CR rewrites a line), DEL, and the
# invisible direction marks and overrides that make text read differently than it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """`text` safe to print on a terminal: controls and bidi overrides written as escapes
    (`\\x1b`, `\\u202e`); newlines kept only with `lines` (a message, never a table cell)."""
    return (_UNPRINTABLE_BUT_NEWLINE if lines else _UNPRINTABLE).sub(_escaped, text)


def _block_dumper() -> Any:
    """A safe YAML dumper that writes multi-line text (user-data, scripts) as `|` blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value and not any(c in value for c in "\t\r") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def _plain(data: Any) -> Any:
    """YAML-safe copy (enums and other objects become strings)."""
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    if isinstance(data, enum.Enum):
        return data.value
    if data is None or isinstance(data, (str, int, float, bool)):
        return data
    return str(data)


_TERM = Terminal()


def term() -> Terminal:
    return _TERM
