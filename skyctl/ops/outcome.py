"""What an operation came to, in one word the CLI turns into an exit code: ok, partial, no
capacity, auth, unreachable, or failed (with the error that decides it).

One place for "every site failed: the first authentication error is the outcome; if none
answered at all, that is the outcome", so a credentials problem is exit 5 and a sky that
does not answer is exit 6 whichever command met it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skyctl.errors import EXIT_AUTH, DriverTimeout, NoSiteAnswered, SkyError, Unreachable


class Kind(str, enum.Enum):
    OK = "ok"
    PARTIAL = "partial"            # some of it was done; the rest is named
    NO_CAPACITY = "no_capacity"    # nothing could be placed or created anywhere
    AUTH = "auth"                  # every site refused the credentials
    UNREACHABLE = "unreachable"    # no site answered at all (down, unreachable, overloaded)
    FAILED = "failed"              # every site failed for another reason


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    error: SkyError | None = None   # the deciding error, for AUTH and FAILED


def _is_auth(error: SkyError) -> bool:
    """A cloud refusing the credentials, or a node refusing the key."""
    return error.exit_code == EXIT_AUTH


def _no_answer(error: SkyError) -> bool:
    """The site did not answer usefully: connection refused, reset, timed out, 5xx."""
    return bool(getattr(error, "retryable", False)) or isinstance(error, (DriverTimeout, Unreachable))


def first_error(errors: Iterable[SkyError]) -> SkyError:
    """The error to report when all failed: an authentication error if there is one."""
    errs = list(errors)
    return next((e for e in errs if _is_auth(e)), errs[0])


def _all_failed(errors: Mapping[str, SkyError]) -> Outcome:
    err = first_error(errors.values())
    if _is_auth(err):
        return Outcome(Kind.AUTH, err)
    if all(_no_answer(e) for e in errors.values()):
        each = "; ".join(f"{site}: {e.reason()}" for site, e in sorted(errors.items()))
        return Outcome(Kind.UNREACHABLE, NoSiteAnswered(
            f"no site answered ({each})", hint="check the network and the sites' status, then try again"))
    return Outcome(Kind.FAILED, err)


def raise_if_none_answered(errors: Mapping[str, SkyError], asked: int) -> None:
    """Before acting on a listing or snapshot: when all `asked` sites failed, the deciding
    error (auth 5, no answer 6, else the first) is the result, never "not found" or "full"."""
    if errors and len(errors) >= asked:
        outcome = _all_failed(errors)
        assert outcome.error is not None
        raise outcome.error


def classify_reads(errors: Mapping[str, SkyError], asked: int, answered_anything: bool) -> Outcome:
    """A read across `asked` sites (ps, sites, resolving names): failed only if none answered."""
    if errors and len(errors) >= asked and not answered_anything:
        return _all_failed(errors)
    return Outcome(Kind.PARTIAL if errors else Kind.OK)


def classify_launch(requested: int, created: int, errors: Mapping[str, SkyError], considered: int) -> Outcome:
    """A launch: `errors` are what each site answered (refusals and failures), `considered` how
    many sites the first plan looked at."""
    if created == 0:
        if len(errors) >= considered > 0 and all(_is_auth(e) or _no_answer(e) for e in errors.values()):
            return _all_failed(errors)
        return Outcome(Kind.NO_CAPACITY)
    return Outcome(Kind.PARTIAL if created < requested else Kind.OK)
