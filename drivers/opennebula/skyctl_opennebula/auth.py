"""Where the endpoint and credentials come from, as OpenNebula's own tools look for them:
`endpoint:` then $ONE_XMLRPC then http://localhost:2633/RPC2; `one_auth:` then $ONE_AUTH then
~/.one/one_auth (a `user:password` line). Light: standard library only."""

from __future__ import annotations

import os
from pathlib import Path

from skyctl.errors import AuthError

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"


def check_endpoint(url: str) -> str:
    """An XML-RPC endpoint is an http(s) URL. pyone 7.2+ takes anything else for a gRPC
    endpoint, which skyctl does not speak: say so instead of failing later."""
    if not url.strip().lower().startswith(("http://", "https://")):
        raise ValueError(f"OpenNebula endpoint {url!r} needs http:// or https:// (skyctl speaks oned's XML-RPC "
                         "API, e.g. https://one.example.org:2633/RPC2; gRPC endpoints are not supported)")
    return url.strip()


def resolve_endpoint(configured: str | None) -> str:
    """The endpoint to use; ValueError when it is not an http(s) URL."""
    return check_endpoint(configured or os.environ.get("ONE_XMLRPC") or DEFAULT_ENDPOINT)


def public_endpoint(url: str) -> str:
    """The endpoint as shown in messages: any user:password@ in it is dropped."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def one_auth_path(configured: str | None) -> Path:
    raw = configured or os.environ.get("ONE_AUTH") or "~/.one/one_auth"
    return Path(raw).expanduser()


def read_session(configured: str | None, *, site: str) -> tuple[str, str]:
    """(session string, user name). Errors name the file, never its content."""
    path = one_auth_path(configured)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthError(f"no ONE_AUTH file at {path}", site=site,
                        hint="set one_auth: in the site, or $ONE_AUTH, to a file holding user:password") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AuthError(f"cannot read ONE_AUTH file {path}: {e.__class__.__name__}", site=site) from None
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    user, sep, secret = line.partition(":")
    if not sep or not user or not secret:
        # `user:token` (a login token from `oneuser token-create`) has the same shape
        raise AuthError(f"ONE_AUTH file {path} must hold one line user:password or user:token", site=site)
    return line, user
