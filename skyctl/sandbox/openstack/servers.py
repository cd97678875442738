"""Nova's servers imitated (`/servers`): create (with Nova's validation and its quota text),
list (filters, sort, paging as Nova does them), show, delete, start/stop/reboot, console output,
metadata and tags. Lifecycle (BUILD -> ACTIVE) is computed from timestamps when a server is
shown, so no timer threads per VM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from skyctl.sandbox.openstack.http import Reply, Request, iso, iso_us, nova_error, short
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.openstack.neutron import DEFAULT_SG, Neutron
from skyctl.sandbox.openstack.quota import QUOTA_DEFAULTS
from skyctl.sandbox.world import NoHostError, QuotaError, SiteWorld, SVM

MAX_LIMIT = 1000                  # Nova's osapi max_limit default
_STATUSES = {"ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
             "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
             "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE"}
_TAG_RE = re.compile(r"^[^,/]{1,60}$")
# The sort keys this front honours (Nova has more; these are the ones clients use).
_SORT_KEYS: dict[str, Any] = {
    "created_at": lambda v: v.created,
    "display_name": lambda v: v.name,
    "uuid": lambda v: v.id,
    "updated_at": lambda v: v.extra.get("updated", v.created),
    "launched_at": lambda v: v.created + v.boot_delay,
    "key_name": lambda v: v.key_name or "",
    "image_ref": lambda v: v.image_id,
    "hostname": lambda v: v.extra.get("hostname", v.name),
}


class Servers:
    """Nova's servers of one site: the world's VMs as Nova shows them."""

    def __init__(self, world: SiteWorld, keystone: Keystone, neutron: Neutron) -> None:
        self.world = world
        self.keystone = keystone
        self.neutron = neutron
        self._mac_counter = itertools.count(1)
        # server id -> {(microversion, admin, detail): (what it showed, JSON bytes)}
        self._views: dict[str, dict[tuple[Any, ...], tuple[tuple[Any, ...], bytes]]] = {}

    def route(self, req: Request, rest: list[str]) -> Reply:
        """`rest` is the path after `servers`."""
        m, n = req.method, len(rest)
        if n == 0 and m == "GET":
            return self._list(req, detail=False)
        if n == 0 and m == "POST":
            return self._create(req)
        if n == 1 and rest[0] == "detail" and m == "GET":
            return self._list(req, detail=True)
        if n >= 1:
            vm = self._find_vm(req, rest[0])
            if n == 1 and m == "GET":
                with self.world.lock:
                    return Reply(200, {"server": self._view(req, vm, True, time.time())})
            if n == 1 and m == "DELETE":
                self.world.delete_vm(vm.id)
                return Reply(204)
            if n == 2 and rest[1] == "action" and m == "POST":
                return self._action(req, vm)
            if rest[1] == "metadata":
                return self._metadata(req, vm, rest[2:])
            if rest[1] == "tags" and req.mv(2, 26):
                return self._tags(req, vm, rest[2:])
        raise nova_error(404, "The resource could not be found.")

    def _find_vm(self, req: Request, server_id: str) -> SVM:
        vm = self.world.get_vm(server_id)
        if vm is None or not self.keystone.visible(req, vm):
            raise nova_error(404, f"Instance {server_id} could not be found.")
        return vm

    def _status(self, vm: SVM, now: float) -> tuple[str, str, str | None, int]:
        """Nova status, vm_state, task_state, power_state."""
        if vm.error:
            return "ERROR", "error", None, 0
        if not vm.booted(now):
            return "BUILD", "building", "spawning", 0
        if vm.stopped:
            return "SHUTOFF", "stopped", None, 4
        return "ACTIVE", "active", None, 1

    def _addresses(self, vm: SVM, status: str) -> dict[str, Any]:
        network = vm.extra.get("network")
        if network is None or status in ("BUILD", "ERROR"):
            return {}
        mac = vm.extra.get("mac", "fa:16:3e:00:00:01")
        # As real Nova shows them: the floating IP under the port's network, after the fixed one.
        return {network: [{"version": 4, "addr": vm.address or "127.0.0.1", "OS-EXT-IPS:type": "fixed",
                           "OS-EXT-IPS-MAC:mac_addr": mac}]
                + [{"version": 4, "addr": a, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}
                   for a in vm.floating_addresses]}

    def _view(self, req: Request, vm: SVM, detail: bool, now: float) -> dict[str, Any]:
        link = f"{req.base_url}/compute/v2.1/servers/{vm.id}"
        links = [{"rel": "self", "href": link},
                 {"rel": "bookmark", "href": f"{req.base_url}/compute/servers/{vm.id}"}]
        if not detail:
            return {"id": vm.id, "name": vm.name, "links": links}
        status, vm_state, task_state, power = self._status(vm, now)
        launched = vm.created + vm.boot_delay
        updated = vm.extra.get("updated", vm.created)
        if status != "BUILD":
            updated = max(updated, launched)
        flavor = self.world.flavors.get(vm.flavor_id or "")
        if req.mv(2, 47):
            flavor_view: dict[str, Any] = {
                "vcpus": vm.vcpus, "ram": vm.ram_mib, "disk": flavor.disk_gib if flavor else 0, "ephemeral": 0,
                "swap": 0, "original_name": flavor.name if flavor else vm.flavor_id or "", "extra_specs": {}}
        else:
            flavor_view = {"id": vm.flavor_id or "", "links": [
                {"rel": "bookmark", "href": f"{req.base_url}/compute/flavors/{vm.flavor_id}"}]}
        owner = self.keystone.owner(vm)
        body: dict[str, Any] = {
            "id": vm.id, "name": vm.name, "status": status,
            "tenant_id": owner, "user_id": vm.extra.get("user_id", ""),
            "metadata": dict(vm.metadata),
            "hostId": hashlib.sha224((owner + "sandbox-host").encode()).hexdigest() if status != "BUILD" else "",
            "image": {"id": vm.image_id, "links": [
                {"rel": "bookmark", "href": f"{req.base_url}/compute/images/{vm.image_id}"}]},
            "flavor": flavor_view,
            "created": iso(vm.created), "updated": iso(updated),
            "addresses": self._addresses(vm, status),
            "accessIPv4": "", "accessIPv6": "", "links": links,
            "OS-DCF:diskConfig": "MANUAL", "progress": 0,
            "OS-EXT-AZ:availability_zone": "nova" if status != "BUILD" else "",
            "config_drive": vm.extra.get("config_drive", ""),
            "key_name": vm.key_name,
            "OS-SRV-USG:launched_at": iso_us(launched).replace("Z", "") if status not in ("BUILD", "ERROR")
            else None,
            "OS-SRV-USG:terminated_at": None,
            "security_groups": [{"name": g} for g in vm.extra.get("security_groups", [DEFAULT_SG])]
            if status != "ERROR" and vm.extra.get("network") is not None else [],
            "OS-EXT-STS:task_state": task_state, "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:power_state": power,
            "os-extended-volumes:volumes_attached": [],
        }
        if req.mv(2, 9):
            body["locked"] = False
        if req.mv(2, 19):
            body["description"] = vm.extra.get("description")
        if req.mv(2, 26):
            body["tags"] = list(vm.tags)
        if req.mv(2, 63):
            body["trusted_image_certificates"] = None
        if req.mv(2, 73):
            body["locked_reason"] = None
        if req.mv(2, 90):
            body["OS-EXT-SRV-ATTR:hostname"] = vm.extra.get("hostname", vm.name)
        if req.principal is not None and req.principal.is_admin:
            body.update({"OS-EXT-SRV-ATTR:host": "sandbox" if status != "BUILD" else None,
                         "OS-EXT-SRV-ATTR:hypervisor_hostname": "sandbox" if status != "BUILD" else None,
                         "OS-EXT-SRV-ATTR:instance_name": "instance-%08x" % (abs(hash(vm.id)) % 2**32)})
            if req.mv(2, 3):
                body["OS-EXT-SRV-ATTR:user_data"] = (base64.b64encode(vm.user_data.encode()).decode()
                                                     if vm.user_data is not None else None)
        if status == "ERROR" and vm.error:
            fault: dict[str, Any] = {"code": 500, "created": iso(vm.created), "message": vm.error}
            if req.principal is not None and req.principal.is_admin:
                fault["details"] = "Traceback (most recent call last): nova.exception.NoValidHost"
            body["fault"] = fault
        return body

    def _list(self, req: Request, detail: bool) -> Reply:
        assert req.principal is not None
        limit = MAX_LIMIT
        if req.q("limit") is not None:
            try:
                limit = int(req.q("limit") or "")
            except ValueError:
                raise nova_error(400, "limit param must be an integer") from None
            if limit < 0:
                raise nova_error(400, "limit param must be positive")
            limit = min(limit, MAX_LIMIT)
        status = req.q("status")
        if status is not None and status.upper() not in _STATUSES:
            # Real Nova answers an empty list for a status it knows no vm_state for.
            return Reply(200, {"servers": []})
        name_re = None
        if req.q("name"):
            try:
                name_re = re.compile(req.q("name") or "")
            except re.error:
                name_re = re.compile(re.escape(req.q("name") or ""))
        tags_all = _split_tags(req.q("tags")) if req.mv(2, 26) else []
        tags_any = _split_tags(req.q("tags-any")) if req.mv(2, 26) else []
        not_tags = _split_tags(req.q("not-tags")) if req.mv(2, 26) else []
        not_tags_any = _split_tags(req.q("not-tags-any")) if req.mv(2, 26) else []
        image, flavor, ip = req.q("image"), req.q("flavor"), req.q("ip")
        key_name = req.q("key_name") if req.principal.is_admin else None
        all_tenants = req.principal.is_admin and req.q("all_tenants") not in (None, "0", "false", "False")
        project = req.principal.project_id
        changes_since = _parse_time(req.q("changes-since"), "changes-since")
        marker = req.q("marker")
        sort_key = req.q("sort_key")
        if sort_key is not None and sort_key not in _SORT_KEYS:
            raise nova_error(400, f"Invalid input for query parameters sort_key. Value: {sort_key}. "
                                  f"'{sort_key}' is not one of {sorted(_SORT_KEYS)}")
        sort_dir = (req.q("sort_dir") or "desc").lower()
        if sort_dir not in ("asc", "desc"):
            raise nova_error(400, f"Invalid input for query parameters sort_dir. Value: {sort_dir}. "
                                  f"'{sort_dir}' is not one of ['asc', 'desc']")
        sort_desc = sort_dir == "desc"
        now = time.time()
        page: list[bytes] = []
        last_id = ""
        with self.world.lock:
            vms = list(self.world.vms.values())
            vms.reverse()   # Nova's default order: newest first
            if sort_key is not None:
                vms.sort(key=_SORT_KEYS[sort_key], reverse=sort_desc)
            if marker is not None:
                idx = next((i for i, v in enumerate(vms) if v.id == marker), None)
                if idx is None:
                    raise nova_error(400, f"marker [{marker}] not found")
                vms = vms[idx + 1:]
            for vm in vms:
                if len(page) >= limit:
                    break
                if vm.deleted:
                    continue
                if not all_tenants and self.keystone.owner(vm) != project:
                    continue
                if tags_all and not all(t in vm.tags for t in tags_all):
                    continue
                if tags_any and not any(t in vm.tags for t in tags_any):
                    continue
                if not_tags and all(t in vm.tags for t in not_tags):
                    continue
                if not_tags_any and any(t in vm.tags for t in not_tags_any):
                    continue
                if name_re is not None and not name_re.search(vm.name):
                    continue
                if image is not None and vm.image_id != image:
                    continue
                if flavor is not None and vm.flavor_id != flavor:
                    continue
                if key_name is not None and vm.key_name != key_name:
                    continue
                if changes_since is not None and vm.extra.get("updated", vm.created) < changes_since \
                        and vm.created + vm.boot_delay < changes_since:
                    continue
                if status is not None or ip is not None:
                    st = self._status(vm, now)[0]
                    if status is not None and st != status.upper():
                        continue
                    if ip is not None and not any(re.search(ip, a["addr"])
                                                  for al in self._addresses(vm, st).values() for a in al):
                        continue
                page.append(self._view_json(req, vm, detail, now))
                last_id = vm.id
        out = b'{"servers":[' + b",".join(page) + b"]"
        if page and len(page) >= limit:
            params = {k: v[-1] for k, v in req.query.items()}
            params["marker"] = last_id
            suffix = "/detail" if detail else ""
            links = [{"rel": "next", "href": f"{req.base_url}/compute/v2.1/servers{suffix}?{urlencode(params)}"}]
            out += b',"servers_links":' + json.dumps(links, separators=(",", ":")).encode()
        return Reply(200, out + b"}")

    def _view_json(self, req: Request, vm: SVM, detail: bool, now: float) -> bytes:
        """A server's JSON, cached until anything it shows changes (1000 servers per list)."""
        assert req.principal is not None
        status = self._status(vm, now)[0]
        key = (req.microversion, req.principal.is_admin, detail)
        stamp = (status, vm.name, vm.address, tuple(vm.floating_addresses), vm.key_name, tuple(vm.tags),
                 tuple(vm.metadata.items()), vm.extra.get("updated"), vm.error)
        cache = self._views.get(vm.id)
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        else:
            if len(self._views) > 2 * len(self.world.vms) + 64:
                # Forget servers that are gone (the world keeps no tombstones).
                for gone in [i for i in self._views if i not in self.world.vms]:
                    del self._views[gone]
            cache = self._views[vm.id] = {}
        data = json.dumps(self._view(req, vm, detail, now), separators=(",", ":")).encode()
        cache[key] = (stamp, data)
        return data

    def _create(self, req: Request) -> Reply:
        assert req.principal is not None
        data = req.json()
        server = data.get("server") if isinstance(data, dict) else None
        if not isinstance(server, dict):
            raise nova_error(400, "Invalid input for field/attribute server. Value: None. "
                                  "None is not of type 'object'")
        allowed = {"name", "imageRef", "flavorRef", "user_data", "key_name", "metadata", "networks",
                   "security_groups", "min_count", "max_count", "return_reservation_id", "availability_zone",
                   "config_drive", "adminPass", "OS-DCF:diskConfig", "block_device_mapping_v2",
                   "accessIPv4", "accessIPv6", "personality"}
        if req.mv(2, 19):
            allowed.add("description")
        if req.mv(2, 52):
            allowed.add("tags")
        if req.mv(2, 90):
            allowed.add("hostname")
        unexpected = sorted(set(server) - allowed)
        if unexpected:
            raise nova_error(400, "Invalid input for field/attribute server. Value: %s. Additional properties "
                                  "are not allowed (%s %s unexpected)"
                             % (short(server), ", ".join(repr(u) for u in unexpected),
                                "was" if len(unexpected) == 1 else "were"))
        name = server.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise nova_error(400, "Invalid input for field/attribute name. Value: %r. %s"
                             % (name, "'name' is a required property" if name is None else "is not valid"))
        if "networks" not in server and req.mv(2, 37):
            raise nova_error(400, "Invalid input for field/attribute server. Value: %s. "
                                  "'networks' is a required property" % short(server))
        flavor_ref = str(server.get("flavorRef") or "").rstrip("/").rsplit("/", 1)[-1]
        flavor = self.world.flavors.get(flavor_ref)
        if flavor is None:
            raise nova_error(400, f"Flavor {flavor_ref} could not be found.")
        image_ref = str(server.get("imageRef") or "").rstrip("/").rsplit("/", 1)[-1]
        if not image_ref:
            raise nova_error(400, "Block Device Mapping is Invalid: Boot sequence for the instance and "
                                  "image/block device mapping combination is not valid.")
        if image_ref not in self.world.images:
            raise nova_error(400, f"Image {image_ref} could not be found.")
        if flavor.disk_gib == 0 and not req.principal.is_admin:
            # Nova (compute/api.py) refuses an image-backed server on a diskless flavor unless
            # the policy allows it (admins only by default): BootFromVolumeRequiredForZeroDiskFlavor.
            raise nova_error(403, "Only volume-backed servers are allowed for flavors with zero disk.")
        user_data = None
        if server.get("user_data") is not None:
            raw = server["user_data"]
            try:
                decoded = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
            except (binascii.Error, ValueError):
                decoded = None
            if decoded is None or len(raw) > 65535:
                raise nova_error(400, f"Invalid input for field/attribute user_data. Value: {str(raw)[:40]}. "
                                      f"'{str(raw)[:40]}' is not a 'base64'")
            user_data = decoded.decode("utf-8", errors="replace")
        metadata = server.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and 1 <= len(k) <= 255 and isinstance(v, str) and len(v) <= 255
                for k, v in metadata.items()):
            raise nova_error(400, "Invalid input for field/attribute metadata. Value: %s. "
                                  "keys and values must be strings of at most 255 characters" % short(metadata))
        if len(metadata) > QUOTA_DEFAULTS["metadata_items"]:
            raise nova_error(403, "Quota exceeded for metadata_items: Requested %d, but already used 0 of %d "
                                  "metadata_items" % (len(metadata), QUOTA_DEFAULTS["metadata_items"]))
        tags = server.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 50 or not all(isinstance(t, str) and _TAG_RE.match(t)
                                                                     for t in tags):
            raise nova_error(400, "Invalid input for field/attribute tags. Value: %s. Tags must be at most 50 "
                                  "strings of 1-60 characters without '/' or ','" % short(tags))
        key_name = server.get("key_name")
        ssh_keys: list[str] = []
        if key_name is not None:
            with self.world.lock:
                public = self.world.keypairs.get(key_name)
            if public is None:
                raise nova_error(400, "Invalid key_name provided.")
            ssh_keys.append(public)
        network = self._pick_network(req, server.get("networks", "auto"))
        groups: list[str] = []
        group_ids: list[str] = []
        for sg in server.get("security_groups") or [{"name": DEFAULT_SG}]:
            sg_name = sg.get("name") if isinstance(sg, dict) else None
            found = self.neutron.security_groups.resolve(req.principal.project_id, str(sg_name))
            if not found:
                raise nova_error(400, f"Security group {sg_name} not found for project "
                                      f"{req.principal.project_id}.")
            if len(found) > 1:
                # nova/network/security_group_api.py: a name several groups have.
                raise nova_error(409, f"Multiple security groups found matching '{sg_name}'. Use an ID to be "
                                      f"more specific.")
            if found[0].id not in group_ids:
                groups.append(found[0].name)
                group_ids.append(found[0].id)
        try:
            min_count = int(server.get("min_count", 1))
            max_count = int(server.get("max_count", min_count))
        except (TypeError, ValueError):
            raise nova_error(400, "Invalid input for field/attribute min_count.") from None
        if min_count < 1 or max_count < min_count:
            raise nova_error(400, "min_count must be <= max_count")
        made: list[SVM] = []
        # Not under the world lock: on_create hooks (SSH endpoints) may take a while.
        # Nova checks quota for max_count and settles for fewer if min_count still fits.
        for i in range(max_count):
            attrs = dict(
                metadata=dict(metadata), tags=list(dict.fromkeys(tags)), user_data=user_data,
                key_name=key_name, ssh_keys=list(ssh_keys),
                extra={"project_id": req.principal.project_id, "user_id": req.principal.user_id,
                       "network": network, "security_groups": groups, "security_group_ids": group_ids,
                       "mac": self._next_mac(), "description": server.get("description"),
                       "hostname": server.get("hostname") or _hostname(name),
                       "config_drive": "True" if server.get("config_drive") else ""},
            )
            vm_name = name if max_count == 1 else f"{name}-{i + 1}"
            try:
                made.append(self.world.create_vm(name=vm_name, vcpus=flavor.vcpus, ram_mib=flavor.ram_mib,
                                                 image_id=image_ref, flavor_id=flavor.id, **attrs))
            except QuotaError as q:
                if len(made) >= min_count:
                    break
                for vm in made:
                    self.world.delete_vm(vm.id)
                # The exact text real Nova sends (count is the whole request, as in Nova).
                requested = q.requested * (min_count if q.resource == "instances" else 1)
                raise nova_error(403, f"Quota exceeded for {q.resource}: Requested {requested}, "
                                      f"but already used {q.used} of {q.limit} {q.resource}") from None
            except NoHostError:  # a world that refuses outright instead of erroring the VM
                raise nova_error(500, "No valid host was found. There are not enough hosts available.") \
                    from None
        first = made[0]
        if server.get("return_reservation_id"):
            return Reply(202, {"reservation_id": "r-" + first.id[:8]})
        body = {"server": {"id": first.id, "links": self._view(req, first, False, time.time())["links"],
                           "OS-DCF:diskConfig": "MANUAL",
                           "security_groups": [{"name": g} for g in groups],
                           "adminPass": secrets.token_urlsafe(9)}}
        return Reply(202, body, {"Location": f"{req.base_url}/compute/v2.1/servers/{first.id}"})

    def _pick_network(self, req: Request, networks: Any) -> str | None:
        """The name of the network the server's port goes on (the sandbox gives one port)."""
        if networks == "none":
            return None
        if networks in ("auto", None, []):
            # Nova (2.37 "auto") takes the one network the project may use: its own and the
            # shared ones, never an external one; several is NetworkAmbiguous.
            usable = [n for n in self.neutron.networks() if not n["router:external"]]
            if len(usable) > 1:
                raise nova_error(409, "Multiple possible networks found, use a Network ID to be more specific.")
            return str(usable[0]["name"])
        if isinstance(networks, list):
            names: list[str] = []
            for n in networks:
                if not isinstance(n, dict):
                    break
                if "port" in n:
                    raise nova_error(400, f"Port {n['port']} could not be found.")
                uid = n.get("uuid")
                name = self.neutron.network_name(str(uid)) if uid is not None else None
                if uid is not None and name is None:
                    raise nova_error(400, f"Network {uid} could not be found.")
                names.append(name or "")
            else:
                return names[0] or str(self.neutron.networks()[0]["name"])
        raise nova_error(400, "Invalid input for field/attribute networks. Value: %s. %s is not valid under any "
                              "of the given schemas" % (short(networks), short(networks)))

    def _next_mac(self) -> str:
        c = next(self._mac_counter)
        return "fa:16:3e:%02x:%02x:%02x" % ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF)

    def _action(self, req: Request, vm: SVM) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise nova_error(400, "There is no such action: None")
        action = next(iter(body))
        now = time.time()
        with self.world.lock:
            _, vm_state, _, _ = self._status(vm, now)
            if action in ("os-stop", "os-start"):
                verb = "stop" if action == "os-stop" else "start"
                want = "active" if verb == "stop" else "stopped"
                if vm_state != want:
                    raise nova_error(409, f"Cannot '{verb}' instance {vm.id} while it is in vm_state {vm_state}")
                vm.stopped = verb == "stop"
                vm.extra["updated"] = now
                return Reply(202)
            if action == "os-getConsoleOutput":
                if vm_state not in ("active", "stopped"):
                    raise nova_error(409, f"Instance {vm.id} is not ready")
                args = body[action] or {}
                length = args.get("length") if isinstance(args, dict) else None
                text = _console_text(vm)
                if length not in (None, -1, "-1"):
                    try:
                        n = int(length)
                    except (TypeError, ValueError):
                        raise nova_error(400, f"Invalid input for field/attribute length. Value: {length}.") \
                            from None
                    lines = text.splitlines(keepends=True)
                    text = "".join(lines[-n:]) if n > 0 else ""
                return Reply(200, {"output": text})
            if action in ("reboot",):
                if vm_state != "active":
                    raise nova_error(409, f"Cannot 'reboot' instance {vm.id} while it is in vm_state {vm_state}")
                vm.extra["updated"] = now
                return Reply(202)
        raise nova_error(400, f"There is no such action: {action}")

    def _metadata(self, req: Request, vm: SVM, rest: list[str]) -> Reply:
        m = req.method
        with self.world.lock:
            if not rest:
                if m == "GET":
                    return Reply(200, {"metadata": dict(vm.metadata)})
                if m in ("PUT", "POST"):
                    md = (req.json() or {}).get("metadata")
                    if not isinstance(md, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in md.items()):
                        raise nova_error(400, "Malformed request body")
                    if m == "PUT":
                        vm.metadata.clear()
                    vm.metadata.update(md)
                    vm.extra["updated"] = time.time()
                    return Reply(200, {"metadata": dict(vm.metadata)})
            elif len(rest) == 1:
                key = rest[0]
                if m == "GET":
                    if key not in vm.metadata:
                        raise nova_error(404, "Metadata item was not found")
                    return Reply(200, {"meta": {key: vm.metadata[key]}})
                if m == "PUT":
                    meta = (req.json() or {}).get("meta")
                    if not isinstance(meta, dict) or list(meta) != [key]:
                        raise nova_error(400, "Request body and URI mismatch")
                    vm.metadata[key] = str(meta[key])
                    vm.extra["updated"] = time.time()
                    return Reply(200, {"meta": meta})
                if m == "DELETE":
                    if vm.metadata.pop(key, None) is None:
                        raise nova_error(404, "Metadata item was not found")
                    return Reply(204)
        raise nova_error(404, "The resource could not be found.")

    def _tags(self, req: Request, vm: SVM, rest: list[str]) -> Reply:
        m = req.method
        with self.world.lock:
            if not rest:
                if m == "GET":
                    return Reply(200, {"tags": list(vm.tags)})
                if m == "PUT":
                    tags = (req.json() or {}).get("tags")
                    if not isinstance(tags, list) or len(tags) > 50 or not all(
                            isinstance(t, str) and _TAG_RE.match(t) for t in tags):
                        raise nova_error(400, "Invalid input for field/attribute tags.")
                    vm.tags[:] = list(dict.fromkeys(tags))
                    return Reply(200, {"tags": list(vm.tags)})
                if m == "DELETE":
                    vm.tags.clear()
                    return Reply(204)
            elif len(rest) == 1:
                tag = rest[0]
                if m == "GET":
                    if tag not in vm.tags:
                        raise nova_error(404, f"Tag '{tag}' could not be found.")
                    return Reply(204)
                if m == "PUT":
                    if not _TAG_RE.match(tag):
                        raise nova_error(400, f"Invalid input for field/attribute tag. Value: {tag}.")
                    if tag in vm.tags:
                        return Reply(204)
                    if len(vm.tags) >= 50:
                        raise nova_error(400, "The number of tags exceeded the per-server limit 50")
                    vm.tags.append(tag)
                    return Reply(201, None, {"Location": f"{req.base_url}/compute/v2.1/servers/{vm.id}/tags/{tag}"})
                if m == "DELETE":
                    if tag not in vm.tags:
                        raise nova_error(404, f"Tag '{tag}' could not be found.")
                    vm.tags.remove(tag)
                    return Reply(204)
        raise nova_error(404, "The resource could not be found.")


def _split_tags(value: str | None) -> list[str]:
    return [t for t in (value or "").split(",") if t]


def _parse_time(value: str | None, field: str) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise nova_error(400, f"Invalid input for query parameters {field}. Value: {value}. "
                              f"'{value}' is not a 'date-time'") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _hostname(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"


def _host_key_block(vm: SVM, host: str) -> list[str]:
    """What cloud-init's keys_to_console module prints, so clients can check the SSH host key."""
    if not vm.host_key_fingerprint:
        return []
    stamp = "<14>Nov 27 00:00:03 cloud-init:"
    return [f"{stamp} #############################################################",
            f"{stamp} -----BEGIN SSH HOST KEY FINGERPRINTS-----",
            f"{stamp} 256 {vm.host_key_fingerprint} root@{host} (ED25519)",
            f"{stamp} -----END SSH HOST KEY FINGERPRINTS-----",
            f"{stamp} #############################################################"]


def _console_text(vm: SVM) -> str:
    """A boot log shaped like a cloud image's serial console."""
    custom = vm.extra.get("console")
    if callable(custom):   # a real guest: its serial console as it is now
        return str(custom())
    if custom:
        return str(custom)
    booted = vm.created + vm.boot_delay
    host = vm.extra.get("hostname") or _hostname(vm.name)
    lines = [
        "[    0.000000] Linux version 5.14.0-427.el9.x86_64 (sandbox) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt3)/vmlinuz root=UUID=sandbox console=ttyS0,115200n8",
        f"[    1.204711] cloud-init[612]: Cloud-init v. 23.4 running 'init-local' at {iso(booted)}.",
        f"[    2.518804] cloud-init[701]: Cloud-init v. 23.4 running 'init' at {iso(booted)}.",
        f"[    2.603317] cloud-init[701]: ci-info: | eth0 | True | {vm.address or '127.0.0.1'} | 255.0.0.0 |",
        f"[    3.110212] cloud-init[798]: Cloud-init v. 23.4 running 'modules:config' at {iso(booted)}.",
        *_host_key_block(vm, host),
        f"[    3.402019] cloud-init[812]: Cloud-init v. 23.4 finished at {iso(booted)}. "
        "Datasource DataSourceOpenStackLocal [net,ver=2].  Up 3.40 seconds",
        "",
        f"{host} login: ",
    ]
    if vm.stopped:
        lines.append("[  OK  ] Reached target System Power Off.")
    return "\n".join(lines) + "\n"
