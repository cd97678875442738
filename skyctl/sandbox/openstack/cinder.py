"""Cinder v3 imitated (`/volume`), as much as a boot-from-volume client needs: versions, volumes
(create, show, list with paging, delete), the limits and the project's quota set with usage.
Nova creates boot volumes through the world (`SiteWorld.create_volume`), as real Nova asks
Cinder; they show here like any other volume.

Where the refusals come from (cinder/exception.py, HEAD of openstack/cinder): VolumeNotFound
"Volume %(volume_id)s could not be found." (404); VolumeSizeExceedsAvailableQuota and
VolumeLimitExceeded, both QuotaError (413, Retry-After 0), raised for the quota "overs" by
cinder/quota_utils.py process_reserve_over_quota (gigabytes first); InvalidVolume "Invalid
volume: %(reason)s" with the reason cinder/volume/api.py `delete` builds when the volume's
state forbids it. Fault body keys by status are cinder/api/openstack/wsgi.py `Fault._fault_names`.
The limits' keys are those of the api-ref sample (limits-show-response.json).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from skyctl.sandbox.openstack.http import HttpError, Reply, Request, iso_us, short
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.world import QuotaError, SiteWorld, SVolume

MIN_VERSION = "3.0"
MAX_VERSION = "3.70"             # Cinder Zed
MAX_LIMIT = 1000                 # osapi_max_limit's default
_FAULTS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest",
           413: "overLimit"}
# cinder/volume/api.py delete(): utils.build_or_str of the statuses a delete accepts, then the rest.
IN_USE_DELETE = ("Invalid volume: Volume status must be available or error or error_restoring or "
                 "error_extending or error_managing and must not be migrating, attached, belong to a group, "
                 "have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.")


def cinder_error(status: int, message: str) -> HttpError:
    headers = {"Retry-After": "0"} if status == 413 else None
    return HttpError(status, message, _FAULTS.get(status, "computeFault"), headers)


def quota_message(q: QuotaError) -> str:
    """Cinder's text for a quota over (cinder/exception.py, via quota_utils)."""
    if q.resource == "gigabytes":
        return (f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested {q.requested}G, "
                f"quota is {q.limit}G and {q.used}G has been consumed.")
    return f"Maximum number of volumes allowed ({q.limit}) exceeded for quota 'volumes'."


class Cinder:
    """The block storage service of one site."""

    def __init__(self, world: SiteWorld, keystone: Keystone) -> None:
        self.world = world
        self.keystone = keystone

    def route(self, req: Request, rest: list[str]) -> Reply:
        if not rest:
            return Reply(300, {"versions": [self._version(req)]})
        if rest[0] != "v3":
            raise cinder_error(404, "The resource could not be found.")
        rest = rest[1:]
        if not rest:
            return Reply(200, {"versions": [self._version(req)]})
        req.principal = self.keystone.authenticate(req)
        if rest[0] == req.principal.project_id:   # the project in the path (older catalogs)
            rest = rest[1:]
        m, n = req.method, len(rest)
        head = rest[0] if rest else ""
        if head == "volumes":
            if n == 1 and m == "POST":
                return self._create(req)
            if n == 1 and m == "GET":
                return self._list(req, detail=False)
            if n == 2 and rest[1] == "detail" and m == "GET":
                return self._list(req, detail=True)
            if n == 2:
                vol = self._find(req, rest[1])
                if m == "GET":
                    return Reply(200, {"volume": self._view(req, vol, True)})
                if m == "DELETE":
                    with self.world.lock:
                        if vol.vm_id is not None:
                            raise cinder_error(400, IN_USE_DELETE)
                        self.world.volumes.pop(vol.id, None)
                    return Reply(202)
        if head == "limits" and m == "GET" and n == 1:
            return self._limits(req)
        if head == "os-quota-sets" and m == "GET" and n == 2:
            return self._quota_set(req, rest[1])
        raise cinder_error(404, "The resource could not be found.")

    # ------------------------------------------------------------------ bodies
    def _version(self, req: Request) -> dict[str, Any]:
        return {"id": "v3.0", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
                "updated": "2022-08-31T00:00:00Z",
                "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                          {"rel": "self", "href": f"{req.base_url}/volume/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    def _find(self, req: Request, volume_id: str) -> SVolume:
        assert req.principal is not None
        vol = self.world.volumes.get(volume_id)
        if vol is None or (vol.project_id != req.principal.project_id and not req.principal.is_admin):
            raise cinder_error(404, f"Volume {volume_id} could not be found.")
        return vol

    def _view(self, req: Request, vol: SVolume, detail: bool) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{req.base_url}/volume/v3/volumes/{vol.id}"},
                 {"rel": "bookmark", "href": f"{req.base_url}/volume/volumes/{vol.id}"}]
        if not detail:
            return {"id": vol.id, "name": vol.name or None, "links": links}
        attachments = []
        if vol.vm_id:
            attachments.append({"server_id": vol.vm_id, "attachment_id": vol.id[::-1], "volume_id": vol.id,
                                "id": vol.id, "device": "/dev/vda", "host_name": None,
                                "attached_at": iso_us(vol.created).replace("Z", "")})
        body: dict[str, Any] = {
            "id": vol.id, "name": vol.name or None, "status": vol.status, "size": vol.size_gib,
            "availability_zone": "nova", "created_at": iso_us(vol.created).replace("Z", ""),
            "updated_at": iso_us(vol.created).replace("Z", ""), "attachments": attachments,
            "bootable": "true" if vol.image_id else "false", "encrypted": False, "multiattach": False,
            "volume_type": "__DEFAULT__", "description": vol.description or None,
            "metadata": dict(vol.metadata), "links": links, "user_id": "", "snapshot_id": None,
            "source_volid": None, "replication_status": None, "consistencygroup_id": None,
            "group_id": None, "provider_id": None, "service_uuid": None, "shared_targets": True,
            "cluster_name": None, "volume_type_id": "", "consumes_quota": True,
            "os-vol-tenant-attr:tenant_id": vol.project_id,
        }
        if vol.image_id:
            image = self.world.images.get(vol.image_id)
            body["volume_image_metadata"] = {"image_id": vol.image_id,
                                             "image_name": image.name if image else "",
                                             "min_disk": str(image.min_disk if image else 0),
                                             "min_ram": str(image.min_ram if image else 0)}
        return body

    def _create(self, req: Request) -> Reply:
        assert req.principal is not None
        data = req.json()
        volume = data.get("volume") if isinstance(data, dict) else None
        if not isinstance(volume, dict):
            raise cinder_error(400, "Invalid input for field/attribute volume. Value: None. "
                                    "'volume' is a required property")
        size = volume.get("size")
        image_ref = volume.get("imageRef") or volume.get("image_id")
        if size is None and not image_ref:
            # cinder/volume/flows/api/create_volume.py _extract_size (validate_int) without a source.
            raise cinder_error(400, "Invalid input received: Volume size '' must be an integer and greater "
                                    "than 0")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, str))
                                 or not str(size).isdigit() or int(size) < 1):
            raise cinder_error(400, f"Invalid input for field/attribute size. Value: {short(size)}. "
                                    f"{short(size)} is not valid under any of the given schemas")
        image = None
        if image_ref:
            image = self.world.images.get(str(image_ref))
            if image is None:
                # cinder/api/v3/volumes.py _image_uuid_from_ref: an HTTPBadRequest explanation.
                raise cinder_error(400, "Invalid image identifier or unable to access requested image.")
        gib = int(size) if size is not None else max(1, image.min_disk if image else 1)
        if image is not None and image.min_disk and gib < image.min_disk:
            # cinder/volume/volume_utils.py check_image_metadata, an InvalidInput.
            raise cinder_error(400, f"Invalid input received: Volume size {gib}GB cannot be smaller than the "
                                    f"image minDisk size {image.min_disk}GB.")
        try:
            vol = self.world.create_volume(req.principal.project_id, gib, name=str(volume.get("name") or ""),
                                           image_id=image.id if image else None,
                                           description=str(volume.get("description") or ""))
        except QuotaError as q:
            raise cinder_error(413, quota_message(q)) from None
        if isinstance(volume.get("metadata"), dict):
            vol.metadata.update({str(k): str(v) for k, v in volume["metadata"].items()})
        return Reply(202, {"volume": self._view(req, vol, True)})

    def _list(self, req: Request, detail: bool) -> Reply:
        assert req.principal is not None
        try:
            limit = min(int(req.q("limit") or MAX_LIMIT), MAX_LIMIT)
        except ValueError:
            raise cinder_error(400, "Invalid input received: limit param must be an integer") from None
        with self.world.lock:
            # Cinder's default order: created_at desc, then id desc.
            vols = sorted((v for v in self.world.volumes.values()
                           if v.project_id == req.principal.project_id or req.principal.is_admin),
                          key=lambda v: (v.created, v.id), reverse=True)
            marker = req.q("marker")
            if marker is not None:
                ids = [v.id for v in vols]
                if marker not in ids:
                    raise cinder_error(404, f"Marker {marker} could not be found.")
                vols = vols[ids.index(marker) + 1:]
            name = req.q("name")
            status = req.q("status")
            vols = [v for v in vols if (name is None or v.name == name) and (status is None or v.status == status)]
            page = vols[:limit]
            body: dict[str, Any] = {"volumes": [self._view(req, v, detail) for v in page]}
        if len(vols) > limit:
            params = {k: v[-1] for k, v in req.query.items()}
            params["marker"] = page[-1].id
            suffix = "/detail" if detail else ""
            body["volumes_links"] = [{"rel": "next",
                                      "href": f"{req.base_url}/volume/v3/volumes{suffix}?{urlencode(params)}"}]
        return Reply(200, body)

    def _limits(self, req: Request) -> Reply:
        assert req.principal is not None
        q = self.world.quota
        n, gib = self.world.volume_usage(req.principal.project_id)
        return Reply(200, {"limits": {"rate": [], "absolute": {
            "totalSnapshotsUsed": 0, "maxTotalBackups": 10, "maxTotalVolumeGigabytes": q.gigabytes,
            "maxTotalSnapshots": 10, "maxTotalBackupGigabytes": 1000, "totalBackupGigabytesUsed": 0,
            "maxTotalVolumes": q.volumes, "totalVolumesUsed": n, "totalBackupsUsed": 0,
            "totalGigabytesUsed": gib}}})

    def _quota_set(self, req: Request, project_id: str) -> Reply:
        who = req.principal
        assert who is not None
        if project_id != who.project_id and not who.is_admin:
            # cinder/policies/quotas.py: the show rule is admin or owner.
            raise cinder_error(403, "Policy doesn't allow volume_extension:quotas:show to be performed.")
        q = self.world.quota
        n, gib = self.world.volume_usage(project_id)
        values = {"volumes": (q.volumes, n), "gigabytes": (q.gigabytes, gib), "snapshots": (10, 0),
                  "backups": (10, 0), "backup_gigabytes": (1000, 0), "per_volume_gigabytes": (-1, 0),
                  "groups": (10, 0)}
        usage = (req.q("usage") or "").lower() in ("true", "1", "yes")
        body: dict[str, Any] = {"id": project_id}
        for k, (limit, used) in values.items():
            body[k] = {"limit": limit, "in_use": used, "reserved": 0, "allocated": 0} if usage else limit
        return Reply(200, {"quota_set": body})
