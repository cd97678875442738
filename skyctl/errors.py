"""The error tree. Errors carry decision data (site, resource, retryable...), not only text.

Two families side by side under SkyError: DriverError (the cloud said no) and GuestError
(the node itself said no, over SSH).

The CLI maps each error to one line and one exit code; nothing else prints errors.
Exit codes (documented in README and `skyctl --help`):
  0 ok, 1 error, 2 usage/config error, 3 partial success, 4 no capacity anywhere,
  5 authentication failed, 6 no site answered, 130 interrupted.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_NO_CAPACITY = 4
EXIT_AUTH = 5
EXIT_UNREACHABLE = 6
EXIT_INTERRUPTED = 130


class SkyError(Exception):
    """Base of every error skyctl reports on purpose. `str()` is the one-line message."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, site: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.site = site
        self.hint = hint

    def line(self) -> str:
        """One line, always: clouds put newlines and tracebacks in their messages."""
        return f"{self.site}: {self.reason()}" if self.site else self.reason()

    def reason(self) -> str:
        """`line()` without the site, for where the site is already named ("web-1 on home failed: ...")."""
        message = self.message
        if self.site and message.startswith(f"{self.site}:"):
            message = message[len(self.site) + 1:]
        text = " ".join(message.split())
        return f"{text} ({self.hint})" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.line(), "site": self.site}


class UsageError(SkyError):
    exit_code = EXIT_USAGE


class ConfigError(SkyError):
    """Invalid federation file, rules, context profile... `path` is the field path."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path: str | None = None, source: str | None = None,
                 hint: str | None = None) -> None:
        self.path = path
        self.source = source
        prefix = f"{path}: " if path else ""
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{prefix}{message}", hint=hint)


class ContextError(ConfigError):
    """A context profile that cannot be rendered (missing variable, bad template...)."""


class StateError(SkyError):
    """The local state database is unusable (newer schema, corrupt file)."""


class NoCapacity(SkyError):
    """No site can host any of the requested nodes."""

    exit_code = EXIT_NO_CAPACITY


class Interrupted(SkyError):
    exit_code = EXIT_INTERRUPTED


class SiteSilent(SkyError):
    """A site stopped answering while skyctl waited for its nodes: the wait ends early and
    says which nodes exist (`.nodes`), instead of running out the whole ready_timeout."""

    exit_code = EXIT_PARTIAL
    nodes: list[Any]

    def line(self) -> str:
        return self.reason()  # the message already begins with the site


# A site whose API failed this many polling rounds in a row (each call already retried) has
# stopped answering: a wait ends early, naming it and the nodes that exist.
SILENT_ROUNDS = 3


def site_silent(site: str, cause: SkyError, nodes: list[Any], *, shown: int = 20) -> SiteSilent:
    """'cc did not answer (connection refused) while waiting; the nodes that exist: ...'."""
    def one(n: Any) -> str:
        return f"{n.name} ({n.site}{', not answering' if n.site == site else ''})"

    listed = ", ".join(one(n) for n in nodes[:shown]) + (f", and {len(nodes) - shown} more" if len(nodes) > shown else "")
    err = SiteSilent(f"{site} did not answer ({cause.message}) while waiting, so the wait ended early; "
                     f"the nodes that exist: {listed or 'none'}", site=site,
                     hint="they are kept; 'skyctl ps' shows them, 'skyctl wait' waits again once the site answers")
    err.nodes = list(nodes)
    return err


class NoSiteAnswered(SkyError):
    """Every site asked failed to answer (down, unreachable, overloaded): try again later."""

    exit_code = EXIT_UNREACHABLE


class ImageListError(SkyError):
    """An image list that cannot be trusted: bad signature, wrong signer, expired, malformed.
    Nothing is imported when it is raised."""


class ImageCheckFailed(SkyError):
    """An image's bytes do not hash to what the endorsed list (or skyctl's record) says."""


# ---------------------------------------------------------------- driver errors
# Every driver converts its SDK's exceptions into exactly one of these, at its edge.


class DriverError(SkyError):
    retryable = False
    site_full = False  # tells ops to stop placing on this site for the current run


class AuthError(DriverError):
    exit_code = EXIT_AUTH


class NotFound(DriverError):
    pass


class QuotaExceeded(DriverError):
    site_full = True

    def __init__(self, message: str, *, site: str | None = None, resource: str | None = None,
                 requested: int | None = None, used: int | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message, site=site)
        self.resource = resource
        self.requested = requested
        self.used = used
        self.limit = limit


class CapacityUnavailable(DriverError):
    """The quota allows it but the cloud has no host for it (Nova 'No valid host')."""

    site_full = True


class Transient(DriverError):
    """5xx, resets, timeouts: safe to retry (creates only after a label lookup)."""

    retryable = True


class DriverTimeout(DriverError):
    """A wait ran out (node never became active/ready)."""


class InvalidRequest(DriverError):
    def __init__(self, message: str, *, site: str | None = None, field: str | None = None) -> None:
        super().__init__(message, site=site)
        self.field = field


class Unsupported(DriverError):
    pass


# ---------------------------------------------------------------- guest errors
# What skyctl.ssh and the readiness wait raise: the cloud did its part, the node did not.


class GuestError(SkyError):
    exit_code = EXIT_ERROR
    retryable = False


class SshAuthError(GuestError):
    """The node (or jump host) refused the key, or the key itself cannot be used."""

    exit_code = EXIT_AUTH


class Unreachable(GuestError):
    """No SSH session could be opened: no address, refused, timed out, handshake failed."""

    exit_code = EXIT_ERROR
    retryable = True  # sshd not up yet, a network blip: the readiness wait tries again


class CommandTimeout(GuestError):
    """A command on the node was still running when its time ran out."""

    exit_code = EXIT_ERROR


class HostKeyError(GuestError):
    """A node presented a host key that skyctl must not trust."""

    exit_code = EXIT_ERROR


class HostKeyChanged(HostKeyError):
    pass


class HostKeyNotInConsole(HostKeyError):
    pass


class ContextFailed(GuestError):
    """The node's contextualisation finished with errors (cloud-init status: error)."""

    exit_code = EXIT_ERROR


class NotReady(GuestError):
    """A readiness wait ran out. Raised for the whole wait, it carries `.ready` and
    `.failures`: which nodes made it and which did not."""

    exit_code = EXIT_ERROR
    ready: list[Any]
    failures: dict[str, SkyError]


def with_site(err: DriverError, site: str) -> DriverError:
    """Attach the site to an error raised without one (drivers usually set it themselves)."""
    if err.site is None:
        err.site = site
    return err
