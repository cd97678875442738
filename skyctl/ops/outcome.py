"""What an operation came to, in one word the CLI turns into an exit code: ok, partial, no
capacity, auth, or failed (with the error that decides it).

One place for "every site failed: the first authentication error is the outcome", so a
credentials problem is reported as exit 5 whichever command met it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skyctl.errors import EXIT_AUTH, SkyError


class Kind(str, enum.Enum):
    OK = "ok"
    PARTIAL = "partial"            # some of it was done; the rest is named
    NO_CAPACITY = "no_capacity"    # nothing could be placed or created anywhere
    AUTH = "auth"                  # every site refused the credentials
    FAILED = "failed"              # every site failed for another reason


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    error: SkyError | None = None   # the deciding error, for AUTH and FAILED


def _is_auth(error: SkyError) -> bool:
    """A cloud refusing the credentials, or a node refusing the key."""
    return error.exit_code == EXIT_AUTH


def first_error(errors: Iterable[SkyError]) -> SkyError:
    """The error to report when all failed: an authentication error if there is one."""
    errs = list(errors)
    return next((e for e in errs if _is_auth(e)), errs[0])


def _all_failed(errors: Mapping[str, SkyError]) -> Outcome:
    err = first_error(errors.values())
    return Outcome(Kind.AUTH if _is_auth(err) else Kind.FAILED, err)


def classify_reads(errors: Mapping[str, SkyError], asked: int, answered_anything: bool) -> Outcome:
    """A read across `asked` sites (ps, sites, resolving names): failed only if none answered."""
    if errors and len(errors) >= asked and not answered_anything:
        return _all_failed(errors)
    return Outcome(Kind.PARTIAL if errors else Kind.OK)


def classify_launch(requested: int, created: int, errors: Mapping[str, SkyError], considered: int) -> Outcome:
    """A launch: `errors` are what each site answered (refusals and failures), `considered` how
    many sites the first plan looked at."""
    if created == 0:
        if len(errors) >= considered > 0 and all(_is_auth(e) for e in errors.values()):
            return _all_failed(errors)
        return Outcome(Kind.NO_CAPACITY)
    return Outcome(Kind.PARTIAL if created < requested else Kind.OK)
