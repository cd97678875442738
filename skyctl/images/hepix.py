"""The HEPiX `hv:imagelist` format (the HEPiX virtualisation working group's endorsed image
lists, as EGI AppDB publishes them and vmcatcher, atrope and cloudkeeper read them).

A list is JSON, signed as S/MIME (see `skyctl.images.smime`):

    {"hv:imagelist": {
        "dc:identifier": "...", "dc:title": "...", "dc:description": "...",
        "dc:date:created": "2026-01-01T00:00:00Z", "dc:date:expires": "2026-02-01T00:00:00Z",
        "dc:source": "...", "hv:uri": "https://.../image.list", "hv:version": "...",
        "hv:endorser": {"hv:x509": {"dc:creator": "...", "hv:ca": "/C=.../CN=CA",
                                    "hv:dn": "/C=.../CN=endorser", "hv:email": "..."}},
        "hv:images": [{"hv:image": {"dc:identifier": "...", "dc:title": "...", "hv:version": "...",
                                    "hv:uri": "https://.../img.qcow2", "hv:size": 123,
                                    "sl:checksum:sha512": "...", "hv:format": "qcow2", ...}}]}}

Standard library only: this module parses and checks; it never touches the network or disk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skyctl.errors import ImageListError

_SHA512_RE = re.compile(r"^[0-9a-f]{128}$")
LIST_FIELDS = ("dc:identifier", "dc:date:created", "dc:date:expires", "hv:endorser", "hv:images")
IMAGE_FIELDS = ("dc:identifier", "hv:uri", "hv:size", "sl:checksum:sha512")


@dataclass(frozen=True, slots=True)
class Endorser:
    dn: str
    ca: str
    creator: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class ListImage:
    identifier: str
    title: str
    version: str
    uri: str
    size: int
    sha512: str
    format: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class ImageList:
    identifier: str
    title: str
    created: datetime
    expires: datetime
    endorser: Endorser
    images: tuple[ListImage, ...]
    uri: str = ""
    version: str = ""

    def expired(self, now: datetime) -> bool:
        return self.expires <= now

    def find(self, *, identifier: str | None = None, title: str | None = None,
             version: str | None = None) -> ListImage | None:
        """One image by identifier, or by title (and version when given)."""
        for img in self.images:
            if identifier is not None and img.identifier == identifier:
                return img
            if identifier is None and title is not None and img.title == title \
                    and (version is None or img.version == version):
                return img
        return None


def parse_time(text: Any, what: str) -> datetime:
    """The ISO 8601 times the lists carry (`2026-01-01T00:00:00Z`); naive ones are UTC."""
    if not isinstance(text, str):
        raise ImageListError(f"malformed image list: {what} is not a date")
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ImageListError(f"malformed image list: {what} {text!r} is not an ISO 8601 date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    return v if isinstance(v, str) else str(v)


def parse(content: bytes | str) -> ImageList:
    """The verified content of a list (JSON) as an `ImageList`; one clear line when malformed."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise ImageListError("malformed image list: the signed content is not JSON") from None
    body = doc.get("hv:imagelist") if isinstance(doc, dict) else None
    if not isinstance(body, dict):
        raise ImageListError("malformed image list: no 'hv:imagelist' object")
    missing = [k for k in LIST_FIELDS if k not in body]
    if missing:
        raise ImageListError(f"malformed image list: missing {', '.join(missing)}")
    x509 = body["hv:endorser"].get("hv:x509") if isinstance(body["hv:endorser"], dict) else None
    if not isinstance(x509, dict) or not x509.get("hv:dn"):
        raise ImageListError("malformed image list: hv:endorser has no hv:x509 hv:dn")
    endorser = Endorser(dn=_str(x509, "hv:dn"), ca=_str(x509, "hv:ca"), creator=_str(x509, "dc:creator"),
                        email=_str(x509, "hv:email"))
    if not isinstance(body["hv:images"], list):
        raise ImageListError("malformed image list: hv:images is not a list")
    images = []
    for i, entry in enumerate(body["hv:images"]):
        img = entry.get("hv:image") if isinstance(entry, dict) else None
        if not isinstance(img, dict):
            raise ImageListError(f"malformed image list: hv:images[{i}] has no hv:image")
        missing = [k for k in IMAGE_FIELDS if k not in img]
        if missing:
            raise ImageListError(f"malformed image list: hv:images[{i}] misses {', '.join(missing)}")
        sha = _str(img, "sl:checksum:sha512").lower()
        if not _SHA512_RE.match(sha):
            raise ImageListError(f"malformed image list: hv:images[{i}] sl:checksum:sha512 is not a sha512")
        try:
            size = int(img["hv:size"])
        except (TypeError, ValueError):
            raise ImageListError(f"malformed image list: hv:images[{i}] hv:size is not a number") from None
        known = {"dc:identifier", "dc:title", "hv:version", "hv:uri", "hv:size", "sl:checksum:sha512", "hv:format"}
        images.append(ListImage(identifier=_str(img, "dc:identifier"), title=_str(img, "dc:title"),
                                version=_str(img, "hv:version"), uri=_str(img, "hv:uri"), size=size,
                                sha512=sha, format=_str(img, "hv:format"),
                                extra={k: v for k, v in img.items() if k not in known}))
    return ImageList(identifier=_str(body, "dc:identifier"), title=_str(body, "dc:title"),
                     created=parse_time(body["dc:date:created"], "dc:date:created"),
                     expires=parse_time(body["dc:date:expires"], "dc:date:expires"),
                     endorser=endorser, images=tuple(images), uri=_str(body, "hv:uri"),
                     version=_str(body, "hv:version"))


def same_dn(a: str, b: str) -> bool:
    """Two distinguished names in OpenSSL's slash form, compared without case or spacing."""
    def norm(s: str) -> str:
        return "/".join(p.strip().lower() for p in s.strip().strip("/").split("/"))
    return norm(a) == norm(b)
