"""Pure: is a site's image the endorsed one? (statuses for `skyctl image list`, and the check
placement makes under `images.policy: verify | require-signed`).

Policies:
- `trust` (default): per-site names are trusted as they are (no check).
- `verify`: an image bound to a list entry must, on the site, hash (sha512) to the endorsed
  checksum; a site whose hash differs (mismatch) or cannot be known (unknown) is passed over.
  An image bound to a list that is not imported, expired or lacks the entry is refused too.
- `require-signed`: as verify, and an image bound to no list is refused everywhere.

A site's sha512: Glance's `os_hash_value` when `os_hash_algo` is sha512; else what skyctl
recorded when it uploaded the image itself (`extra["sha512"]`, set by the ops layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyctl.model import ImageRef

VERIFIED, MISMATCH, UNKNOWN, MISSING = "verified", "mismatch", "unknown", "missing"


@dataclass(frozen=True, slots=True)
class Endorsed:
    """What placement knows of one logical image's endorsement.

    `sha512` is the list's checksum when the image is bound to a valid (imported, unexpired)
    list entry; `problem` says why not when it is bound but that list cannot be used."""

    policy: str = "trust"
    list: str | None = None
    sha512: str | None = None
    problem: str | None = None
    uri: str | None = None
    size: int | None = None


def site_sha512(img: ImageRef) -> str | None:
    extra: Any = img.extra or {}
    recorded = extra.get("sha512")
    if recorded:
        return str(recorded).lower()
    if str(extra.get("os_hash_algo") or "").lower() == "sha512" and extra.get("os_hash_value"):
        return str(extra["os_hash_value"]).lower()
    return None


def status(img: ImageRef | None, endorsed: Endorsed) -> str:
    """verified | mismatch | unknown | missing, against the endorsed checksum."""
    if img is None:
        return MISSING
    have = site_sha512(img)
    if have is None or endorsed.sha512 is None:
        return UNKNOWN
    return VERIFIED if have == endorsed.sha512.lower() else MISMATCH


def refusal(img: ImageRef, logical: str, endorsed: Endorsed | None) -> tuple[str, str] | None:
    """(reason code, text) when the policy forbids booting `img` for `logical` here, else None.

    Codes: image_unsigned (not bound to a valid list), image_mismatch, image_unverified."""
    if endorsed is None or endorsed.policy == "trust":
        return None
    if endorsed.list is None:
        if endorsed.policy == "require-signed":
            return "image_unsigned", f"image {logical!r} is bound to no endorsed image list (policy require-signed)"
        return None
    if endorsed.sha512 is None:
        return "image_unsigned", f"image {logical!r}: list {endorsed.list}: {endorsed.problem or 'not usable'}"
    got = status(img, endorsed)
    if got == MISMATCH:
        have = site_sha512(img) or ""
        return "image_mismatch", (f"image {img.name!r} sha512 {have[:12]}... differs from the endorsed "
                                  f"{endorsed.sha512[:12]}... (list {endorsed.list})")
    if got == UNKNOWN:
        return "image_unverified", (f"image {img.name!r} has no sha512 skyctl can check "
                                    f"(policy {endorsed.policy})")
    return None
