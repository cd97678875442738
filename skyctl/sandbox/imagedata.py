"""Image bytes in the sandbox: stored on disk as they arrive (never whole in memory), hashed the
way the clouds hash them (Glance: md5 `checksum` and `os_hash_value` with its default
`hashing_algorithm = sha512`), and fetched from a URL for OpenNebula's `PATH`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Stored:
    path: str
    size: int
    md5: str
    sha512: str


def chunks_of(rfile: BinaryIO, length: int | None, chunked: bool) -> Iterator[bytes]:
    """A request body, by Content-Length or HTTP/1.1 chunked transfer coding."""
    if chunked:
        while True:
            line = rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass   # trailers
                return
            left = size
            while left:
                part = rfile.read(min(left, CHUNK))
                if not part:
                    raise ConnectionError("client went away mid-chunk")
                left -= len(part)
                yield part
            rfile.readline(3)
        return
    left = length or 0
    while left > 0:
        part = rfile.read(min(left, CHUNK))
        if not part:
            raise ConnectionError("client went away mid-body")
        left -= len(part)
        yield part


def store(directory: str | None, parts: Iterator[bytes]) -> Stored:
    """Write `parts` to a new file in `directory`, hashing as they pass."""
    folder = directory or tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix="image-", dir=folder)
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                md5.update(part)
                sha.update(part)
                f.write(part)
                size += len(part)
    except BaseException:
        os.unlink(path)
        raise
    return Stored(path, size, md5.hexdigest(), sha.hexdigest())


def fetch(directory: str | None, url: str, headers: dict[str, Any] | None = None) -> Stored:
    """What OpenNebula's datastore downloader does with an http(s) PATH (loopback here)."""
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - the sandbox fetches what it is told
        def parts() -> Iterator[bytes]:
            while True:
                part = resp.read(CHUNK)
                if not part:
                    return
                yield part
        return store(directory, parts())
