"""`one.image.allocate | info | delete` and `one.datastorepool.info`, mixed into the OpenNebula
front. An image allocated with `PATH=<http(s) URL>` starts LOCKED while the datastore driver
copies it in (here: a thread fetching the URL on loopback, streamed to disk), then turns
READY, or ERROR with the driver's message. Refusals carry oned's words (cited per message).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from skyctl.sandbox import imagedata
from skyctl.sandbox.opennebula.template import first, parse_template
from skyctl.sandbox.opennebula.views import DATASTORES
from skyctl.sandbox.opennebula.xmlrpc import ALLOCATE, AUTHORIZATION, INTERNAL, NO_EXISTS, OneError
from skyctl.sandbox.world import SImage


class ImageMethods:
    """Needs `world` and `views` (the front's)."""

    world: Any
    views: Any

    def image_methods(self) -> dict[str, Any]:
        return {"one.image.allocate": self._image_allocate, "one.image.info": self._image_info,
                "one.image.delete": self._image_delete, "one.datastorepool.info": self._datastorepool_info}

    def _datastorepool_info(self, method: str) -> str:
        return self.views.datastore_pool()

    def _image(self, method: str, image_id: int) -> SImage:
        img = self.world.images.get(str(image_id))
        if img is None:
            # src/rm/Request.cc failure_message(NO_EXISTS): "Error getting <object> [<id>]."
            raise OneError(NO_EXISTS, f"[{method}] Error getting image [{image_id}].", image_id)
        return img

    def _image_info(self, method: str, image_id: int, decrypt: bool = False) -> str:
        return self.views.image(self._image(method, image_id))

    def _image_delete(self, method: str, image_id: int, force: bool = False) -> int:
        with self.world.lock:
            img = self._image(method, image_id)
            if img.created == 0:
                # src/rm/RequestManagerDelete.cc: the caller lacks MANAGE on oneadmin's image
                raise OneError(AUTHORIZATION, f"[{method}] User [{self.views.owner.uid}] : Not authorized to perform "
                                       f"MANAGE IMAGE [{image_id}].", image_id)
            del self.world.images[str(image_id)]
        return image_id

    def _image_allocate(self, method: str, template: str, ds_id: int, skip_capacity_check: bool = False) -> int:
        try:
            tmpl = parse_template(template)
        except ValueError as e:
            raise OneError(INTERNAL, f"[{method}] Parse error: {e}") from None
        if ds_id not in DATASTORES:
            # src/rm/RequestManagerAllocate.cc ImageAllocate: dspool->get fails -> NO_EXISTS
            raise OneError(NO_EXISTS, f"[{method}] Error getting datastore [{ds_id}].", ds_id)
        if DATASTORES[ds_id][1] == 1:
            # src/rm/RequestManagerAllocate.cc ImageAllocate (Datastore::SYSTEM_DS)
            raise OneError(ALLOCATE, f"[{method}] Error allocating a new image. New images cannot be "
                                     "allocated in a system datastore.")
        name = str(first(tmpl, "NAME") or "").strip()
        path = str(first(tmpl, "PATH") or "").strip()
        if not path:
            # src/image/Image.cc insert(): error_no_path (an OS image without SOURCE)
            raise OneError(ALLOCATE, f"[{method}] Error allocating a new image. No PATH in template.")
        with self.world.lock:
            if any(i.name == name and i.created > 0 for i in self.world.images.values()):
                # src/pool/PoolSQL.cc (name taken by the same owner)
                raise OneError(ALLOCATE, f"[{method}] Error allocating a new image. NAME is already taken by "
                                         f"IMAGE {next(i.id for i in self.world.images.values() if i.name == name)}.")
            ids = [int(i) for i in self.world.images if i.isdigit()]
            image_id = max(ids, default=-1) + 1
            img = SImage(id=str(image_id), name=name or f"image-{image_id}", size=0, status="locked",
                         disk_format=str(first(tmpl, "FORMAT") or "qcow2"), datastore=ds_id, created=time.time(),
                         url=path)
            self.world.images[img.id] = img
        threading.Thread(target=self._copy_in, args=(img,), daemon=True, name=f"one-image-{image_id}").start()
        return image_id

    def _copy_in(self, img: SImage) -> None:
        """What the fs datastore's `cp` script does with a URL: download it into the datastore."""
        gate = self.world.image_gate
        if gate is not None:
            gate.wait()
        try:
            if not img.url or not img.url.startswith(("http://", "https://")):
                raise ValueError(f"Could not copy image {img.url}: only http(s) URLs in the sandbox")
            stored = imagedata.fetch(self.world.image_dir, img.url)
        except Exception as e:  # the datastore driver's failure: the image goes to ERROR
            done = replace(img, status="error", error=f"Error copying image in the datastore: {e}")
        else:
            done = replace(img, status="ready", path=stored.path, size=stored.size, md5=stored.md5,
                           sha512_value=stored.sha512)
        with self.world.lock:
            if img.id in self.world.images:
                self.world.images[img.id] = done

