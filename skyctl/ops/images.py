"""Endorsed images: import a signed HEPiX image list, say what each site holds for each logical
image, and the endorsements placement checks (`images.policy`).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyctl.config import Federation, ImageListConfig
from skyctl.errors import ImageListError, UsageError
from skyctl.images import store
from skyctl.images.hepix import ImageList, ListImage, parse, same_dn
from skyctl.images.smime import verify
from skyctl.model import ImageRef
from skyctl.policy.images import Endorsed, site_sha512, status

MAX_LIST_BYTES = 16 * 1024 * 1024
FETCH_TIMEOUT_S = 60


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _which_list(fed: Federation, source: str, name: str | None) -> tuple[str, ImageListConfig, str]:
    """(list name, its trust config, where to read it from)."""
    lists = fed.image_lists
    if not lists:
        raise UsageError("no image lists are configured", hint="declare one under image_lists: in the federation file")
    if name is not None:
        if name not in lists:
            raise UsageError(f"unknown image list {name!r} (configured: {', '.join(lists)})")
        return name, lists[name], source
    if source in lists:
        cfg = lists[source]
        if not cfg.url:
            raise UsageError(f"image list {source!r} has no url: give a file or URL and --list {source}")
        return source, cfg, cfg.url
    by_url = [n for n, c in lists.items() if c.url == source]
    if len(by_url) == 1:
        return by_url[0], lists[by_url[0]], source
    if len(lists) == 1:
        only = next(iter(lists))
        return only, lists[only], source
    raise UsageError(f"which image list is {source!r}? pass --list NAME (configured: {', '.join(lists)})")


def read_source(source: str) -> bytes:
    if "://" in source:
        if not source.startswith(("https://", "http://", "file://")):
            raise UsageError(f"cannot fetch {source!r}: only http(s) and file URLs")
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 (scheme checked)
                data = resp.read(MAX_LIST_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise ImageListError(f"cannot fetch {source}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ImageListError(f"cannot fetch {source}: {getattr(e, 'reason', e)}") from None
    else:
        path = Path(source).expanduser()
        try:
            with path.open("rb") as f:
                data = f.read(MAX_LIST_BYTES + 1)
        except OSError as e:
            raise ImageListError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_LIST_BYTES:
        raise ImageListError(f"{source}: larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB, not an image list")
    return data


def check(raw: bytes, cfg: ImageListConfig, *, now: datetime | None = None) -> tuple[ImageList, Any]:
    """Verify signature, signer and expiry; the parsed list and the signature's facts."""
    signed = verify(raw, Path(cfg.trust))
    if not same_dn(signed.signer_dn, cfg.subject):
        raise ImageListError(f"signed by {signed.signer_dn}, not the expected endorser {cfg.subject}")
    lst = parse(signed.content)
    if not same_dn(lst.endorser.dn, signed.signer_dn):
        raise ImageListError(f"the list names endorser {lst.endorser.dn} but is signed by {signed.signer_dn}")
    when = _now(now)
    if lst.expired(when):
        raise ImageListError(f"the list expired on {lst.expires.isoformat()}")
    return lst, signed


def import_list(fed: Federation, source: str, *, name: str | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    """Fetch, verify and store one list; nothing is stored when any check fails."""
    list_name, cfg, where = _which_list(fed, source, name)
    raw = read_source(where)
    try:
        lst, signed = check(raw, cfg, now=now)
    except ImageListError as e:
        raise ImageListError(f"image list {list_name} ({where}): {e.message}", hint=e.hint) from None
    store.save(list_name, raw=raw, content=signed.content, source=where, signer_dn=signed.signer_dn,
               issuer_dn=signed.issuer_dn, imported_at=_now(now))
    return {"list": list_name, "source": where, "identifier": lst.identifier, "title": lst.title,
            "endorser": lst.endorser.dn, "signer_issuer": signed.issuer_dn,
            "expires": lst.expires.isoformat(), "images": len(lst.images)}


def _entry(lst: ImageList, binding: Any) -> ListImage | None:
    return lst.find(identifier=binding.identifier, title=binding.title, version=binding.version)


def endorsements(fed: Federation, *, now: datetime | None = None) -> dict[str, Endorsed]:
    """Every logical image's endorsement as placement sees it (only the stored, verified lists)."""
    when = _now(now)
    out: dict[str, Endorsed] = {}
    loaded: dict[str, ImageList | str] = {}
    for logical in fed.images:
        binding = fed.image_bindings.get(logical)
        policy = (binding.policy if binding and binding.policy else None) or fed.image_policy
        if binding is None or binding.list is None:
            out[logical] = Endorsed(policy=policy)
            continue
        if binding.list not in loaded:
            stored = store.load(binding.list)
            if stored is None:
                loaded[binding.list] = "not imported (run 'skyctl image import')"
            else:
                lst = stored.imagelist
                loaded[binding.list] = lst if not lst.expired(when) else f"expired on {lst.expires.isoformat()}"
        lst_or_problem = loaded[binding.list]
        if isinstance(lst_or_problem, str):
            out[logical] = Endorsed(policy=policy, list=binding.list, problem=lst_or_problem)
            continue
        entry = _entry(lst_or_problem, binding)
        if entry is None:
            named = binding.identifier or f"{binding.title} {binding.version or ''}".strip()
            out[logical] = Endorsed(policy=policy, list=binding.list, problem=f"has no entry {named!r}")
            continue
        out[logical] = Endorsed(policy=policy, list=binding.list, sha512=entry.sha512, uri=entry.uri,
                                size=entry.size)
    return out


def mapped_images(fed: Federation) -> dict[str, dict[str, str]]:
    """The federation file's per-site names, with the copies skyctl replicated (by id) on top."""
    out = {k: dict(v) for k, v in fed.images.items()}
    for logical, per in store.replicas().items():
        if logical in out:
            out[logical].update(per)
    return out


def with_recorded(site: str, images: Sequence[ImageRef], recorded: dict[str, dict[str, str]] | None = None
                  ) -> tuple[ImageRef, ...]:
    """The site's images, each carrying the sha512 skyctl recorded when it uploaded it (if any)."""
    mine = (recorded if recorded is not None else store.recorded_hashes()).get(site, {})
    if not mine:
        return tuple(images)
    return tuple(replace(i, extra={**i.extra, "sha512": mine[i.id]}) if i.id in mine else i for i in images)


def report(fed: Federation, site_images: dict[str, Sequence[ImageRef] | str], *,
           now: datetime | None = None) -> list[dict[str, Any]]:
    """Each logical image: its list, endorser, expiry, and per site what it holds and its status.
    `site_images` maps a site to its images, or to the error line when it did not answer."""
    from skyctl.policy.placement import Catalog, Request, SiteSnapshot, pick_image
    from skyctl.model import Tier

    ends = endorsements(fed, now=now)
    mapped = mapped_images(fed)
    catalog = Catalog(images=mapped)
    rows = []
    for logical, per_site in mapped.items():
        end = ends[logical]
        binding = fed.image_bindings.get(logical)
        stored = store.load(binding.list) if binding and binding.list else None
        lst = stored.imagelist if stored else None
        sites = []
        for site, images in site_images.items():
            if site not in per_site:
                continue
            if isinstance(images, str):
                sites.append({"site": site, "image": per_site[site], "id": None, "sha512": None,
                              "status": "unknown", "error": images})
                continue
            snap = SiteSnapshot(name=site, driver="", tier=Tier.REMOTE, images=tuple(images))
            img, _ = pick_image(Request(logical, 1, 1, 1, logical), snap, catalog)
            sites.append({"site": site, "image": img.name if img else per_site[site], "id": img.id if img else None,
                          "sha512": site_sha512(img) if img else None, "status": status(img, end), "error": None})
        rows.append({"image": logical, "policy": end.policy, "list": end.list,
                     "endorser": lst.endorser.dn if lst else None,
                     "expires": lst.expires.isoformat() if lst else None,
                     "sha512": end.sha512, "problem": end.problem, "sites": sites})
    return rows


def image_report(sky: Any, *, now: datetime | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`report` over every site that maps an image, asked in parallel; (rows, failed sites)."""
    from skyctl.ops.sky import retrying

    fed = sky.federation
    wanted = [s for s in sky.site_names if any(s in per for per in mapped_images(fed).values())]
    found, failed = sky.gather(lambda d: retrying(d.images), wanted, retry=False)
    recorded = store.recorded_hashes()
    site_images: dict[str, Sequence[ImageRef] | str] = {}
    for s in wanted:
        site_images[s] = with_recorded(s, found[s], recorded) if s in found else failed[s].line()
    return report(fed, site_images, now=now), failed
