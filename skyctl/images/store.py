"""skyctl's own copies of imported image lists, and the hashes it recorded for site images.

Under the data directory, private (0700 folder, 0600 files):

    imagelists/NAME.smime   the signed list exactly as fetched (re-verifiable with openssl)
    imagelists/NAME.json    what skyctl read from it: the list, its signer, when and where from
    image-hashes.json       {site: {image id: sha512}}: hashes skyctl checked itself while
                            uploading (OpenNebula images carry no standard hash)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from skyctl.errors import ImageListError
from skyctl.images.hepix import ImageList, parse, parse_time
from skyctl.paths import base, data_dir, private_dir, write_private


@dataclass(frozen=True, slots=True)
class StoredList:
    name: str
    source: str
    imported_at: datetime
    signer_dn: str
    issuer_dn: str
    content: bytes

    @property
    def imagelist(self) -> ImageList:
        return parse(self.content)


def lists_dir() -> Path:
    return private_dir(data_dir() / "imagelists")


def save(name: str, *, raw: bytes, content: bytes, source: str, signer_dn: str, issuer_dn: str,
         imported_at: datetime) -> Path:
    folder = lists_dir()
    write_private(folder / f"{name}.smime", raw)
    meta = {"name": name, "source": source, "imported_at": imported_at.isoformat(), "signer_dn": signer_dn,
            "issuer_dn": issuer_dn, "content": content.decode("utf-8")}
    return write_private(folder / f"{name}.json", json.dumps(meta, indent=1, sort_keys=True))


def load(name: str) -> StoredList | None:
    path = base("data") / "imagelists" / f"{name}.json"   # reading creates no folder
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return StoredList(name=meta["name"], source=meta["source"],
                          imported_at=parse_time(meta["imported_at"], "imported_at"),
                          signer_dn=meta["signer_dn"], issuer_dn=meta["issuer_dn"],
                          content=meta["content"].encode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, ImageListError):
        raise ImageListError(f"the stored copy of image list {name!r} is damaged ({path})",
                             hint="import the list again") from None


def _hashes_path() -> Path:
    return base("data") / "image-hashes.json"


def recorded_hashes() -> dict[str, dict[str, str]]:
    try:
        data: Any = json.loads(_hashes_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}
    return {str(s): {str(i): str(h) for i, h in per.items()} for s, per in data.items()} \
        if isinstance(data, dict) else {}


def record_hash(site: str, image_id: str, sha512: str) -> None:
    data = recorded_hashes()
    data.setdefault(site, {})[image_id] = sha512
    write_private(_hashes_path(), json.dumps(data, indent=1, sort_keys=True))


def _replicas_path() -> Path:
    return base("data") / "image-replicas.json"


def replicas() -> dict[str, dict[str, str]]:
    """{logical image: {site: image id}}: copies skyctl made (or found) and checked."""
    try:
        data: Any = json.loads(_replicas_path().read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): {str(s): str(i) for s, i in per.items()} for k, per in data.items()} \
        if isinstance(data, dict) else {}


def record_replica(logical: str, site: str, image_id: str) -> None:
    data = replicas()
    data.setdefault(logical, {})[site] = image_id
    write_private(_replicas_path(), json.dumps(data, indent=1, sort_keys=True))
