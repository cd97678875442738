"""From a pydantic ValidationError to the one field path, message and hint a ConfigError shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

# Parts pydantic adds to a location that name a validator, not a field.
_VALIDATOR_PARTS = ("function-after", "function-before")
# pydantic ends the location of a bad dict key with this marker, after the key itself.
_KEY_MARKER = "[key]"


class FieldProblem(ValueError):
    """Raised inside a validator when pydantic cannot place or word the problem itself.

    `path` replaces the whole field path; `below` extends the location pydantic knows (the key
    or index inside the value being validated); `hint` is shown after the message.
    """

    def __init__(self, message: str, *, path: str | None = None, below: Sequence[str | int] = (),
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.below = tuple(below)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Problem:
    path: str      # "" for the value as a whole
    message: str
    hint: str | None = None
    more: int = 0  # how many further problems pydantic found


def field_path(loc: Sequence[Any], *, at: str = "", brackets: bool = False) -> str:
    """('sites', 'home', 'ssh', 'port') -> 'sites.home.ssh.port', after `at` if given.

    With `brackets`, list indices read `[0]` and a bad dict key is named like any key
    (`groups.1`, not `groups.1.[key]`); without, every part is dotted (`bursting.0`), as the
    federation file's own errors have always read.
    """
    parts = [p for p in loc if p not in _VALIDATOR_PARTS]
    if brackets and len(parts) >= 2 and parts[-1] == _KEY_MARKER:
        parts.pop()
        key = parts.pop()
        base = field_path(parts, at=at, brackets=True)
        return f"{base}.{key}" if base else str(key)
    out = at
    for part in parts:
        if brackets and isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def first_problem(err: ValidationError, *, at: str = "", brackets: bool = False) -> Problem:
    """The first problem pydantic found, in the house words (see FieldProblem, field_path)."""
    errors = err.errors(include_url=False)
    first = errors[0]
    more = len(errors) - 1
    raised = (first.get("ctx") or {}).get("error")
    if isinstance(raised, FieldProblem):
        if raised.path is not None:
            return Problem(raised.path, str(raised), raised.hint, more)
        return Problem(field_path((*first["loc"], *raised.below), at=at, brackets=brackets), str(raised),
                       raised.hint, more)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    return Problem(field_path(first["loc"], at=at, brackets=brackets), message, None, more)
