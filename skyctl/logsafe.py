"""Keep secrets out of logs: a logging filter that masks known secret values and auth headers."""

from __future__ import annotations

import logging
import re
import threading

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
