"""Keep secrets out of logs: a logging filter that masks known secret values and auth headers."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from skyctl.model import MASK

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_HEADER_RE = re.compile(r"(X-Auth-Token|X-Subject-Token|Authorization|password)(['\"]?\s*[:=]\s*['\"]?)([^'\",}\s]+)",
                        re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Remember a value that must never be printed (passwords, session strings, tokens)."""
    if value and len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return _HEADER_RE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - a broken log call must not crash skyctl
            return True
        record.msg, record.args = redact(msg), None
        return True


def install_redaction() -> None:
    f = RedactingFilter()
    root = logging.getLogger()
    for h in root.handlers:
        h.addFilter(f)


# ---------------------------------------------------------------- third-party noise
#
# keystoneauth warns once per endpoint and request that its version discovery failed
# ("Failed to contact the endpoint at ... for discovery. Fallback to using that endpoint as the
# base url."), paramiko logs every connection at INFO. Unless --debug, each library's messages
# are folded: one line per library, site and kind of message; repeats are counted, not printed.

NOISY = ("keystoneauth", "keystoneauth1", "openstack", "paramiko", "urllib3", "stevedore", "pyone", "requests")
_site = threading.local()
_VARYING = re.compile(r"\S+://\S+|\d+")


@contextmanager
def site_scope(site: str) -> Iterator[None]:
    """Log records made in this block (in this thread) belong to `site`."""
    before = getattr(_site, "name", None)
    _site.name = site
    try:
        yield
    finally:
        _site.name = before


def current_site() -> str | None:
    return getattr(_site, "name", None)


class FoldingHandler(logging.Handler):
    """Says the first record of each (library, site, message template) through `say`, on one
    line, secrets masked; counts the rest (`repeats`)."""

    def __init__(self, say: Callable[[str], None], level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.say = say
        self.repeats: dict[tuple[str, str | None, str], int] = {}
        self._fold_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            family = record.name.split(".")[0]
            site = current_site()
            text = " ".join(redact(record.getMessage()).split())
            # the kind of message: its words without the addresses and numbers that vary
            key = (family, site, _VARYING.sub("_", text))
            with self._fold_lock:
                seen = key in self.repeats
                self.repeats[key] = self.repeats.get(key, 0) + (1 if seen else 0)
            if seen:
                return
            self.say(f"{family}{f' ({site})' if site else ''}: {text}")
        except Exception:  # pragma: no cover - a log line must never break skyctl
            self.handleError(record)


def fold_third_party(say: Callable[[str], None], *, debug: bool = False) -> FoldingHandler | None:
    """Route the noisy libraries' logs through one FoldingHandler (WARNING and up, even with -v:
    paramiko's INFO lines are not skyctl's progress). With `debug` nothing is folded."""
    if debug:
        return None
    handler = FoldingHandler(say)
    for name in NOISY:
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if not isinstance(h, FoldingHandler)] + [handler]
        lg.propagate = False
        lg.setLevel(logging.WARNING)
    return handler
