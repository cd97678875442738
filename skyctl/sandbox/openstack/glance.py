"""Glance v2 imitated (`/image`): the site's images, public and active, listed with Glance's
filters, order and paging, shown one by one, and its schemas.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

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
                          and _matches(status, "active")
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

    def _versions(self, req: Request) -> dict[str, Any]:
        vals = []
        for i, minor in enumerate(range(16, -1, -1)):
            vals.append({"id": f"v2.{minor}", "status": "CURRENT" if i == 0 else "SUPPORTED",
                         "links": [{"rel": "self", "href": f"{req.base_url}/image/v2/"}]})
        return {"versions": vals}

    def _image_view(self, img: SImage) -> dict[str, Any]:
        created = iso(0)
        return {"id": img.id, "name": img.name, "status": "active", "visibility": "public", "protected": False,
                "os_hidden": False, "checksum": img.checksum, "os_hash_algo": "sha512",
                "os_hash_value": img.sha512, "size": img.size, "virtual_size": None, "min_disk": img.min_disk,
                "min_ram": img.min_ram, "disk_format": "qcow2", "container_format": "bare",
                "owner": stable_id(self.world.name, "project", "admin"), "tags": [],
                "created_at": created, "updated_at": created, "self": f"/v2/images/{img.id}",
                "file": f"/v2/images/{img.id}/file", "schema": "/v2/schemas/image"}


def _matches(wanted: str | None, have: str) -> bool:
    """Glance's filter syntax: a value, or `in:a,b,c`."""
    if wanted is None:
        return True
    if wanted.startswith("in:"):
        return have in wanted[3:].split(",")
    return wanted == have
