"""Glance v2 imitated (`/image`): the site's images listed with Glance's filters, order and
paging, shown one by one, and its schemas; image create (`POST /v2/images`, queued), data
upload (`PUT /v2/images/{id}/file`, streamed to disk and hashed: md5 `checksum`, sha512
`os_hash_value`, then active), download (`GET .../file`) and delete.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from skyctl.sandbox import imagedata
from skyctl.sandbox.openstack.http import HttpError, Reply, Request, iso, stable_id
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.world import SImage, SiteWorld


class Glance:
    """The image service of one site."""

    def __init__(self, world: SiteWorld, keystone: Keystone) -> None:
        self.world = world
        self.keystone = keystone

    def route(self, req: Request, rest: list[str]) -> Reply:
        if not rest or (rest == ["v2"] and req.method == "GET"):
            return Reply(300, self._versions(req))
        if rest[0] != "v2":
            raise HttpError(404, "Not Found", None)
        req.principal = self.keystone.authenticate(req)
        rest = rest[1:]
        if rest == ["images"] and req.method == "POST":
            return self._create(req)
        if len(rest) == 3 and rest[0] == "images" and rest[2] == "file":
            if req.method == "PUT":
                return self._upload(req, rest[1])
            if req.method == "GET":
                return self._download(rest[1])
        if len(rest) == 2 and rest[0] == "images" and req.method == "DELETE":
            return self._delete(rest[1])
        if rest and rest[0] == "images" and req.method == "GET":
            images = sorted(self.world.images.values(), key=lambda i: i.id)
            if len(rest) == 2:
                img = self.world.images.get(rest[1])
                if img is None:
                    return Reply(404, f"<html><body><h1>404 Not Found</h1>No image found with ID {rest[1]}"
                                      "<br /><br /></body></html>".encode(), content_type="text/html")
                return Reply(200, self._image_view(img))
            if len(rest) == 1:
                # Glance sorts by created_at desc then id; all sandbox images share created_at.
                images.sort(key=lambda i: i.id, reverse=True)
                name, status = req.q("name"), req.q("status")
                vis = req.q("visibility")
                images = [i for i in images if _matches(name, i.name) and _matches(req.q("id"), i.id)
                          and _matches(status, i.status)
                          and (vis is None or vis in ("public", "all"))]
                marker = req.q("marker")
                if marker is not None:
                    ids = [i.id for i in images]
                    if marker not in ids:
                        return Reply(400, f"<html><body><h1>400 Bad Request</h1>marker [{marker}] not found"
                                          "<br /><br /></body></html>".encode(), content_type="text/html")
                    images = images[ids.index(marker) + 1:]
                limit = int(req.q("limit") or 25)
                page = images[:limit]
                body: dict[str, Any] = {"images": [self._image_view(i) for i in page],
                                        "first": "/v2/images", "schema": "/v2/schemas/images"}
                if len(images) > limit:
                    params = {k: v[-1] for k, v in req.query.items()}
                    params["marker"] = page[-1].id
                    body["next"] = f"/v2/images?{urlencode(params)}"
                return Reply(200, body)
        if rest == ["schemas", "image"] or rest == ["schemas", "images"]:
            return Reply(200, {"name": rest[1].rstrip("s"), "properties": {}, "additionalProperties": {
                "type": "string"}})
        raise HttpError(404, "Not Found", None)

    def _not_found(self, image_id: str) -> Reply:
        # glance/api/v2/images.py: webob HTTPNotFound, "No image found with ID %s"
        return Reply(404, f"<html><body><h1>404 Not Found</h1>No image found with ID {image_id}"
                          "<br /><br /></body></html>".encode(), content_type="text/html")

    def _create(self, req: Request) -> Reply:
        import json

        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            # glance/common/wsgi.py JSONRequestDeserializer: "Malformed JSON in request body."
            return Reply(400, b"<html><body><h1>400 Bad Request</h1>Malformed JSON in request body."
                              b"<br /><br /></body></html>", content_type="text/html")
        fmt = body.get("disk_format")
        if fmt is not None and fmt not in DISK_FORMATS:
            # glance/api/v2/images.py (schema validation): "Invalid value '%s' for parameter 'disk_format'"
            return Reply(400, f"<html><body><h1>400 Bad Request</h1>Provided object does not match schema "
                              f"'image': '{fmt}' is not one of {list(DISK_FORMATS)}<br /><br /></body></html>"
                         .encode(), content_type="text/html")
        img = SImage(id=str(body.get("id") or uuid.uuid4()), name=str(body.get("name") or ""), size=0,
                     status="queued", disk_format=fmt, container_format=body.get("container_format"),
                     created=time.time())
        with self.world.lock:
            if img.id in self.world.images:
                # glance/api/v2/images.py create: exception.Duplicate -> HTTPConflict
                return Reply(409, f"<html><body><h1>409 Conflict</h1>Image with identifier {img.id} already "
                                  "exists!<br /><br /></body></html>".encode(), content_type="text/html")
            self.world.images[img.id] = img
        return Reply(201, self._image_view(img), headers={"Location": f"{req.base_url}/image/v2/images/{img.id}"})

    def _upload(self, req: Request, image_id: str) -> Reply:
        with self.world.lock:
            img = self.world.images.get(image_id)
            if img is None:
                return self._not_found(image_id)
            if img.status != "queued":
                # glance/domain/__init__.py Image.status setter: InvalidImageStatusTransition,
                # which glance/api/v2/image_data.py upload answers with HTTPConflict.
                return Reply(409, f"<html><body><h1>409 Conflict</h1>Image status transition from {img.status} "
                                  "to saving is not allowed<br /><br /></body></html>".encode(),
                             content_type="text/html")
            self.world.images[image_id] = replace(img, status="saving")
        try:
            stored = imagedata.store(self.world.image_dir,
                                     imagedata.chunks_of(req.stream, req.length, req.chunked))
        except (OSError, ConnectionError, ValueError):
            with self.world.lock:
                self.world.images[image_id] = replace(img, status="killed")
            raise
        req.stream = None   # wholly read: the connection can be kept
        with self.world.lock:
            self.world.images[image_id] = replace(img, status="active", path=stored.path, size=stored.size,
                                                  md5=stored.md5, sha512_value=stored.sha512)
        return Reply(204)

    def _download(self, image_id: str) -> Reply:
        img = self.world.images.get(image_id)
        if img is None:
            return self._not_found(image_id)
        if img.status != "active":
            return Reply(204)   # glance/api/v2/image_data.py download: no data yet -> 204 No Content
        headers = {"Content-MD5": img.checksum or ""}
        if img.path is not None:
            return Reply(200, headers=headers, content_type="application/octet-stream", file=img.path)
        return Reply(200, img.content, headers=headers, content_type="application/octet-stream")

    def _delete(self, image_id: str) -> Reply:
        with self.world.lock:
            img = self.world.images.pop(image_id, None)
        if img is None:
            return self._not_found(image_id)
        if img.path:
            try:
                os.unlink(img.path)
            except OSError:
                pass
        return Reply(204)

    def _versions(self, req: Request) -> dict[str, Any]:
        vals = []
        for i, minor in enumerate(range(16, -1, -1)):
            vals.append({"id": f"v2.{minor}", "status": "CURRENT" if i == 0 else "SUPPORTED",
                         "links": [{"rel": "self", "href": f"{req.base_url}/image/v2/"}]})
        return {"versions": vals}

    def _image_view(self, img: SImage) -> dict[str, Any]:
        created = iso(0)
        active = img.status == "active"
        return {"id": img.id, "name": img.name, "status": img.status,
                "visibility": "public" if img.created == 0 else "shared", "protected": False,
                "os_hidden": False, "checksum": img.checksum, "os_hash_algo": "sha512" if active else None,
                "os_hash_value": img.sha512, "size": img.size if active else None, "virtual_size": None,
                "min_disk": img.min_disk, "min_ram": img.min_ram, "disk_format": img.disk_format,
                "container_format": img.container_format,
                "owner": stable_id(self.world.name, "project", "admin"), "tags": [],
                "created_at": created, "updated_at": created, "self": f"/v2/images/{img.id}",
                "file": f"/v2/images/{img.id}/file", "schema": "/v2/schemas/image"}


DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")


def _matches(wanted: str | None, have: str) -> bool:
    """Glance's filter syntax: a value, or `in:a,b,c`."""
    if wanted is None:
        return True
    if wanted.startswith("in:"):
        return have in wanted[3:].split(",")
    return wanted == have
