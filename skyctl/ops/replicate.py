"""Copy an endorsed image to a site: stream it from a site holding a verified copy (or the
list's `hv:uri`), hash it as it streams, upload it, check the hash the cloud reports, and
record the new per-site id (`images/replicas.json`), which then maps the logical image there.

Bytes are never held whole: they pass through one chunk at a time (memory stays flat
whatever the image's size). OpenNebula fetches an image itself from a URL (`PATH`): skyctl
hashes the same URL as it streams it, and records that hash, since OpenNebula keeps none.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from skyctl.config import Federation
from skyctl.errors import DriverError, ImageCheckFailed, UsageError
from skyctl.images import store
from skyctl.model import Capability, ImageRef
from skyctl.ops.images import endorsements, mapped_images, with_recorded
from skyctl.ops.sky import Sky, retrying
from skyctl.policy.images import MISMATCH, VERIFIED, Endorsed, site_sha512, status

CHUNK = 1024 * 1024
Progress = Callable[[int, int | None], None]   # (bytes so far, total or None)


class HashingReader:
    """An upload body over a chunk iterator: iterable (requests then streams it chunk by chunk
    with `len()` as Content-Length), hashing and counting every byte that passes.

    A reader thread keeps up to `depth` chunks ahead (reading the source and hashing while
    the previous chunk is being sent), so memory stays at a few chunks whatever the size."""

    def __init__(self, chunks: Iterator[bytes], size: int | None, progress: Progress | None = None,
                 *, depth: int = 4) -> None:
        self._chunks = chunks
        self._size = size
        self._progress = progress
        self._depth = depth
        self._sha = hashlib.sha512()
        self.done = 0

    def __len__(self) -> int:
        return self._size or 0

    def _pump(self, q: queue.Queue[Any], stop: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for part in self._chunks:
                self._sha.update(part)
                if not put(part):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[bytes]:
        q: queue.Queue[Any] = queue.Queue(maxsize=self._depth)
        stop = threading.Event()
        pump = threading.Thread(target=self._pump, args=(q, stop), daemon=True, name="image-read")
        pump.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                self.done += len(item)
                if self._progress is not None:
                    self._progress(self.done, self._size)
                yield item
        finally:
            stop.set()
            pump.join(timeout=5)

    def drain(self) -> None:
        for _ in self:
            pass

    @property
    def sha512(self) -> str:
        return self._sha.hexdigest()


_END = object()


@dataclass(frozen=True)
class Source:
    label: str                     # for messages: "site home" or the URL
    site: str | None = None
    image: ImageRef | None = None
    url: str | None = None


def _url_chunks(url: str) -> tuple[Iterator[bytes], int | None]:
    if not url.startswith(("http://", "https://", "file://")):
        raise UsageError(f"cannot fetch {url!r}: only http(s) and file URLs")
    try:
        resp = urllib.request.urlopen(url, timeout=60)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as e:
        raise ImageCheckFailed(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ImageCheckFailed(f"cannot fetch {url}: {getattr(e, 'reason', e)}") from None
    length = resp.headers.get("Content-Length")

    def chunks() -> Iterator[bytes]:
        with resp:
            while True:
                part = resp.read(CHUNK)
                if not part:
                    return
                yield part
    return chunks(), int(length) if length and length.isdigit() else None


def _endorsed(fed: Federation, logical: str) -> Endorsed:
    if logical not in fed.images:
        raise UsageError(f"unknown image {logical!r} (images: {', '.join(fed.images) or 'none'})")
    end = endorsements(fed)[logical]
    if end.sha512 is None:
        why = end.problem or "it is bound to no image list"
        raise ImageCheckFailed(f"image {logical!r} cannot be replicated: {why}; there is nothing to check "
                               "a copy against", hint="bind it to a list entry (list:, identifier:) and import the list")
    return end


def _site_images(sky: Sky, site: str) -> tuple[ImageRef, ...]:
    return with_recorded(site, retrying(sky.driver(site).images))


def _candidates(sky: Sky, logical: str, to_site: str, wanted: str | None) -> list[str]:
    if wanted is not None and "://" in wanted:
        return []
    mapping = mapped_images(sky.federation).get(logical, {})
    return [wanted] if wanted else [s for s in sky.site_names if s != to_site and s in mapping
                                     and Capability.IMAGE_DOWNLOAD in sky.driver(s).capabilities]


def find_source(sky: Sky, logical: str, end: Endorsed, *, to_site: str, wanted: str | None,
                listed: dict[str, Any] | None = None) -> Source:
    """`--from SITE|URL`, else a site holding a verified copy that can send it, else hv:uri.
    `listed`: the sites' images already read (site -> images or the DriverError)."""
    mapping = mapped_images(sky.federation).get(logical, {})
    if wanted is not None and "://" in wanted:
        return Source(wanted, url=wanted)
    listed = listed or {}
    for site in _candidates(sky, logical, to_site, wanted):
        sky.federation.site(site)
        driver = sky.driver(site)
        if Capability.IMAGE_DOWNLOAD not in driver.capabilities:
            if wanted:
                raise UsageError(f"--from {site}: the {driver.name} driver cannot send image bytes")
            continue
        got = listed.get(site)
        try:
            if isinstance(got, DriverError):
                raise got
            images = with_recorded(site, got) if got is not None else _site_images(sky, site)
        except DriverError:
            if wanted:
                raise
            continue
        img = _mapped(images, mapping.get(site))
        if img is not None and status(img, end) == VERIFIED:
            return Source(f"site {site}", site=site, image=img)
        if wanted:
            raise ImageCheckFailed(f"--from {site}: its copy of {logical!r} is not verified "
                                   f"({status(img, end)})")
    if end.uri:
        return Source(end.uri, url=end.uri)
    raise ImageCheckFailed(f"no site holds a verified copy of {logical!r} and its list gives no hv:uri")


def _mapped(images: tuple[ImageRef, ...], wanted: str | None) -> ImageRef | None:
    if wanted is None:
        return None
    by_id = [i for i in images if i.id == wanted]
    by_name = [i for i in images if i.name == wanted]
    return (by_id or by_name or [None])[0]


def replicate(sky: Sky, logical: str, to_site: str, *, source: str | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Make `to_site` hold a verified copy of `logical`; its record as a dict."""
    fed = sky.federation
    end = _endorsed(fed, logical)
    fed.site(to_site)
    if source is not None and "://" not in source:
        fed.site(source)
    target = sky.driver(to_site)
    # The target's images and every possible source's, asked at once (one round of auth).
    listed = sky.fanout(lambda d: retrying(d.images), [to_site, *_candidates(sky, logical, to_site, source)],
                        retry=False)
    if isinstance(listed[to_site], DriverError):
        raise listed[to_site]
    images = with_recorded(to_site, listed[to_site])
    mapping = mapped_images(fed).get(logical, {})
    have = _mapped(images, mapping.get(to_site))
    if have is None:   # an unmapped copy with the endorsed hash is as good
        have = next((i for i in images if site_sha512(i) == end.sha512), None)
    if have is not None and status(have, end) == VERIFIED:
        store.record_replica(logical, to_site, have.id)
        return {"image": logical, "site": to_site, "id": have.id, "name": have.name, "sha512": end.sha512,
                "source": None, "bytes": 0, "status": "present"}
    name = f"{logical}-{end.sha512[:12]}"
    src = find_source(sky, logical, end, to_site=to_site, wanted=source, listed=listed)
    caps = target.capabilities
    if Capability.IMAGE_UPLOAD in caps:
        if src.url is not None:
            chunks, size = _url_chunks(src.url)
        else:
            assert src.site is not None and src.image is not None
            chunks = sky.driver(src.site).download_image(src.image.id)
            raw_size = (src.image.extra or {}).get("size")
            size = int(raw_size) if raw_size else None
        reader = HashingReader(chunks, size, progress)
        if size is None:
            raise UsageError(f"{src.label} does not say how large the image is; cannot upload it")
        img = target.upload_image(name, reader, size)
        _check(target, to_site, img, reader.sha512, end, src)
        cloud = site_sha512(img)
        if cloud is None:
            store.record_hash(to_site, img.id, reader.sha512)
        elif cloud != end.sha512:
            target.delete_image(img.id)
            raise ImageCheckFailed(f"{to_site} reports sha512 {cloud[:16]}... for the uploaded copy, not the "
                                   f"endorsed {end.sha512[:16]}...; the copy was deleted", site=to_site)
    elif Capability.IMAGE_FROM_URL in caps:
        if src.url is None:
            raise UsageError(f"{to_site} ({target.name}) fetches images itself from a URL: the list's hv:uri, "
                             "or --from URL, must be one it can reach")
        chunks, size = _url_chunks(src.url)
        reader = HashingReader(chunks, size, progress)
        reader.drain()
        if reader.sha512 != end.sha512:
            raise _bad_bytes(src, reader.sha512, end)
        img = target.import_image_url(name, src.url)
        store.record_hash(to_site, img.id, reader.sha512)
    else:
        raise UsageError(f"the {target.name} driver of {to_site} cannot receive images")
    store.record_replica(logical, to_site, img.id)
    return {"image": logical, "site": to_site, "id": img.id, "name": img.name, "sha512": reader.sha512,
            "source": src.label, "bytes": reader.done, "status": "replicated"}


def _bad_bytes(src: Source, got: str, end: Endorsed) -> ImageCheckFailed:
    return ImageCheckFailed(f"{src.label}: the bytes hash to sha512 {got[:16]}..., not the endorsed "
                            f"{(end.sha512 or '')[:16]}... (list {end.list})")


def _check(target: Any, site: str, img: ImageRef, got: str, end: Endorsed, src: Source) -> None:
    if got != end.sha512:
        target.delete_image(img.id)
        err = _bad_bytes(src, got, end)
        raise ImageCheckFailed(f"{err.message}; the copy on {site} was deleted")
    if status(img, end) == MISMATCH:
        target.delete_image(img.id)
        raise ImageCheckFailed(f"{site} reports another sha512 for the uploaded copy; it was deleted", site=site)
