"""OpenStack driver: Nova servers, Glance images, Keystone auth from clouds.yaml.

LIGHT module: it imports skyctl and pydantic only. openstacksdk is imported by `transport` on
the driver's first network call, so `skyctl --help` and config validation never pay for it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyctl.drivers import Driver
from skyctl.errors import DriverError, InvalidRequest, Transient
from skyctl.model import (L_LAUNCH, L_NAME, Capability, Capacity, Flavor, ImageRef, Labels, LeaseRecord, Limit, Node,
                          NodeSpec, NodeState, RenderedContext, boot_volume_gib)
from skyctl.polling import retry
from skyctl_openstack import convert as cv
from skyctl_openstack.errors import error_for_status, error_message
from skyctl_openstack.network import Neutron, neutron_get
from skyctl_openstack.servergroups import ServerGroups

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.site import SiteConfig
    from skyctl_openstack.transport import Client

MAX_USER_DATA = 65535   # Nova's limit on the base64 text
PAGE_SIZE = 1000        # Nova's default max_limit: one request per 1000 servers
PORT_QUERY_IDS = 100    # server ids per Neutron port query (keeps the URL short)
# Tags at create (2.52), tag filters (2.26), flavor embedded in the server (2.47).
_COMPUTE_MV = "2.52"
_PART_ATTEMPTS = 3       # each request of capacity(); ops retries the whole read again


def _retried(call: Any, attempts: int = _PART_ATTEMPTS) -> Any:
    return retry(call, on=Transient, attempts=attempts)


class OpenStackOptions(BaseModel):
    """A site's OpenStack fields in the federation file. Credentials stay in clouds.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cloud: str = Field(min_length=1, description="the clouds.yaml entry")
    clouds_yaml: str | None = Field(None, description="explicit clouds.yaml path (default: openstacksdk's search)")
    region: str | None = None
    network: str | list[str] | None = Field(
        None, description="network name or id (a list for several NICs), 'auto' (Nova's choice) or 'none'; unset: "
                          "the only non-external network, else the project's only own (non-shared) one")
    security_groups: list[str] = Field([], description="groups attached to every node (default: 'default'), "
                                                       "next to skyctl's SSH group (ssh.cidr)")
    key_name: str | None = None
    floating_network: str | None = Field(
        None, description="external network (name or id) for floating IPs (ssh.floating_ip); default: the only "
                          "network with router:external")
    boot_from_volume: bool = Field(
        False, description="boot every node from a new volume (diskless flavors always do where the site has "
                           "Cinder); deleted with the node")
    config_drive: bool | None = Field(None, description="ask Nova for a config drive (unset: the site's default)")
    availability_zone: str | None = Field(None, min_length=1, description="the availability zone nodes go to")
    scheduler_hints: dict[str, Any] = Field({}, description="Nova scheduler hints given with every node")
    server_group: Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"] | None = Field(
        None, description="put each skyctl group's nodes on this site in a Nova server group with this policy "
                          "(made with the group's first node, deleted with its last)")

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is None:
            return None
        refs = [v] if isinstance(v, str) else v
        if not refs or any(not r.strip() for r in refs):
            raise ValueError("must be a network name or id (or a list of them), 'auto' or 'none'")
        if isinstance(v, list) and any(r.strip() in ("auto", "none") for r in refs):
            raise ValueError("'auto' and 'none' stand alone, not in a list")
        return v.strip() if isinstance(v, str) else [r.strip() for r in v]


class OpenStackDriver(Driver):
    name: ClassVar[str] = "openstack"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.STOP_START, Capability.REBOOT, Capability.CONSOLE_LOG, Capability.SERVER_SIDE_LABEL_FILTER,
        Capability.FLOATING_IP, Capability.IMAGE_UPLOAD, Capability.IMAGE_DOWNLOAD,
        Capability.LEASE,
    })
    options_model: ClassVar[type[BaseModel]] = OpenStackOptions

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        opts = site.options
        if opts is None:
            opts = OpenStackOptions.model_validate(site.driver_fields())
        self.options: OpenStackOptions = opts
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._keypairs: set[str] = set()
        self._keypair_lock = threading.Lock()  # one import per key, not one per create thread
        self._neutron = Neutron(self._api, self.site_name)
        self._floating_network_id: str | None = None
        self._volumes: bool | None = None
        self._server_groups = ServerGroups(self._compute)

    # ------------------------------------------------------------------ plumbing
    def _api(self) -> Client:
        with self._lock:
            if self._client is None:
                from skyctl_openstack.transport import Client

                try:
                    client = Client(site=self.site_name, cloud=self.options.cloud,
                                    clouds_yaml=self.options.clouds_yaml, region=self.options.region,
                                    pool_size=self.site.max_parallel, timeout=self.site.request_timeout)
                except DriverError as e:
                    e.site = e.site or self.site_name
                    raise
                try:
                    client.authorize()
                except BaseException:
                    client.close()
                    raise
                self._client = client
            return self._client

    def _compute(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        api = self._api()
        mv = api.compute_microversion()
        kwargs.setdefault("microversion", _COMPUTE_MV if mv >= (2, 52) else "%d.%d" % min(mv, (2, 51)))
        return api.request("compute", method, path, **kwargs)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"cloud": self.options.cloud, "region": self.options.region,
                                 "network": self.options.network}
        if self.options.clouds_yaml:
            facts["clouds_yaml"] = self.options.clouds_yaml
        try:
            from skyctl_openstack.transport import load_region

            region = load_region(self.options.cloud, self.options.clouds_yaml, self.options.region, None)
            auth_url = (region.config.get("auth") or {}).get("auth_url")
            if auth_url:
                parts = urlsplit(auth_url)
                # Only scheme, host and path: user info or a query could carry a secret.
                facts["auth_url"] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
            facts["region"] = facts["region"] or region.region_name or None
        except DriverError as e:
            facts["problem"] = e.message
        return facts

    def identity(self) -> str | None:
        return self._api().user_id()

    # ------------------------------------------------------------------ what the site offers
    def capacity(self) -> Capacity:
        self._api()   # authenticate once, before the parallel reads
        # Nova's limits, Neutron's quota lines and Cinder's limits side by side: one round trip
        # of latency more than Nova's alone, not four.
        # Each request is retried on its own (a flaky cloud fails one of six far more often
        # than one); authentication above is not, so a site that is down is named at once.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="capacity") as pool:
            neutron = pool.submit(self._neutron_lines)
            cinder = pool.submit(_retried, self._cinder_lines, _PART_ATTEMPTS)
            _, body = _retried(lambda: self._compute("GET", "/limits", what="limits"), _PART_ATTEMPTS)
            others = neutron.result() + cinder.result()
        absolute = ((body or {}).get("limits") or {}).get("absolute") or {}
        return cv.capacity_from_limits(absolute, others)

    def _neutron_lines(self) -> tuple[Limit, ...]:
        """The project's Neutron quota lines a node takes from: a port per NIC, a floating IP
        where one will be attached, skyctl's SSH group once if it is still to be made."""
        api = self._api()
        project = api.project_id()
        if not project:
            return ()
        ssh = self.site.ssh
        # Each lookup on its own thread: the quota, the SSH group, the routers (auto floating
        # IPs) and the network choice do not wait for each other.
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="capacity") as pool:
            quota = pool.submit(_retried, lambda: neutron_get(api, f"/quotas/{project}/details", ok=(404,),
                                                              what="network quota"), _PART_ATTEMPTS)
            group = pool.submit(_retried, lambda: self._neutron.has_ssh_group(ssh.cidr, ssh.port),
                                _PART_ATTEMPTS) if ssh.cidr else None
            routed = pool.submit(_retried, self._neutron.routed_networks,
                                 _PART_ATTEMPTS) if ssh.floating_ip == "auto" else None
            try:
                nets = _retried(self._networks, _PART_ATTEMPTS)
            except InvalidRequest:
                nets = "auto"    # the network is for create to settle (and to refuse, naming the field)
            ports = len(nets) if isinstance(nets, list) else (0 if nets == "none" else 1)
            if routed is not None:
                routed.result()
            fips = 1 if ports and self._needs_floating_ip(nets) else 0
            groups = 1 if ports and group is not None and not group.result() else 0
            status, body = quota.result()
        if status == 404:
            return ()   # no quota-details extension: nothing to count against
        return cv.neutron_lines((body or {}).get("quota") or {}, ports=ports, floating_ips=fips,
                                security_groups=groups)

    def _needs_floating_ip(self, nets: Any) -> bool:
        """Whether a new node gets a floating IP (ssh.floating_ip; auto: its network is routed)."""
        mode = self.site.ssh.floating_ip
        if mode is False:
            return False
        if mode is True:
            return True
        ids = {n["uuid"] for n in nets} if isinstance(nets, list) else set()
        routed = self._neutron.routed_networks()
        return bool(routed and (ids & routed or not ids))

    def _cinder_lines(self) -> tuple[Limit, ...]:
        if not self._has_volumes():
            return ()
        _, body = self._api().request("block_storage", "GET", "/limits", what="volume limits")
        return cv.cinder_lines(((body or {}).get("limits") or {}).get("absolute") or {})

    def _has_volumes(self) -> bool:
        """Whether the site's catalog has a block storage service (boot volumes need it)."""
        if self._volumes is None:
            self._volumes = self._api().has_service("block-storage", "volumev3")
        return self._volumes

    def flavors(self) -> list[Flavor]:
        out: list[Flavor] = []
        params: dict[str, Any] = {}
        # From 2.61 the flavor list carries the extra specs (special hardware is told by them).
        mv = {"microversion": "2.61"} if self._api().compute_microversion() >= (2, 61) else {}
        volumes = self._has_volumes()
        while True:
            _, body = self._compute("GET", "/flavors/detail", params=params or None, what="flavors", **mv)
            page = (body or {}).get("flavors") or []
            out.extend(cv.flavor_from(f, volumes=volumes, boot_from_volume=self.options.boot_from_volume)
                       for f in page if not f.get("OS-FLV-DISABLED:disabled"))
            if not page or not (body or {}).get("flavors_links"):
                return out
            params = {"marker": page[-1]["id"]}

    def images(self) -> list[ImageRef]:
        out: list[ImageRef] = []
        params: dict[str, Any] = {"limit": 100}
        api = self._api()
        while True:
            _, body = api.request("image", "GET", "/images", params=params, what="images")
            page = (body or {}).get("images") or []
            out.extend(cv.image_from(i) for i in page if i.get("status", "active") == "active")
            if not page or not (body or {}).get("next"):
                return out
            params = {"limit": 100, "marker": page[-1]["id"]}

    # ------------------------------------------------------------------ image data (Glance v2)
    def upload_image(self, name: str, data: Any, size: int, *, disk_format: str = "qcow2") -> ImageRef:
        """POST /v2/images (queued), PUT /v2/images/{id}/file (streamed from `data`, with a
        Content-Length), then GET it back: Glance reports the checksum and `os_hash_value`
        it computed while storing. A failed upload deletes the queued image."""
        api = self._api()
        _, body = api.request("image", "POST", "/images", what="image create",
                              json={"name": name, "disk_format": disk_format, "container_format": "bare"})
        image_id = str((body or {}).get("id") or "")
        try:
            api.send_data("image", "PUT", f"/images/{image_id}/file", data, what="image upload")
            _, img = api.request("image", "GET", f"/images/{image_id}", what="image")
        except BaseException:
            self._forget_image(image_id)
            raise
        return cv.image_from(img or {"id": image_id, "name": name})

    def download_image(self, image_id: str) -> Iterator[bytes]:
        return self._api().stream("image", f"/images/{image_id}/file", what="image download")

    def delete_image(self, image_id: str) -> None:
        self._api().request("image", "DELETE", f"/images/{image_id}", ok=(404,), what="image delete")

    def _forget_image(self, image_id: str) -> None:
        if image_id:
            try:
                self.delete_image(image_id)
            except DriverError:
                pass   # best effort: the upload's own error is the one to report

    # ------------------------------------------------------------------ nodes
    def create(self, spec: NodeSpec, name: str, context: RenderedContext) -> Node:
        server: dict[str, Any] = {
            "name": name,
            "imageRef": spec.image.id,
            "flavorRef": spec.flavor.id,
            "metadata": cv.labels_to_metadata(spec.labels, image=spec.image_name or spec.image.name,
                                              size=spec.size_name or spec.flavor.name),
            "networks": self._networks(),
        }
        if spec.flavor.boot_volume or self.options.boot_from_volume:
            if not self._has_volumes():
                raise InvalidRequest(f"flavor {spec.flavor.name} boots from a volume (disk {spec.flavor.disk_gib}, "
                                     f"boot_from_volume {self.options.boot_from_volume}) and the site has no block "
                                     f"storage (Cinder)", site=self.site_name, field="boot_from_volume")
            # A new volume from the image, deleted with the server: nothing is left behind.
            del server["imageRef"]
            server["block_device_mapping_v2"] = cv.boot_volume_mapping(
                spec.image.id, boot_volume_gib(spec.disk_gib, spec.image))
        if self.options.config_drive is not None:
            server["config_drive"] = self.options.config_drive
        if self.options.availability_zone:
            server["availability_zone"] = self.options.availability_zone
        hints = dict(self.options.scheduler_hints)
        if self.options.server_group and spec.group:
            hints["group"] = self._server_groups.ensure(spec.group, self.options.server_group)
        if context.user_data:
            encoded = base64.b64encode(context.user_data.encode()).decode()
            if len(encoded) > MAX_USER_DATA:
                raise InvalidRequest(f"user data is {len(encoded)} bytes base64-encoded; Nova takes at most "
                                     f"{MAX_USER_DATA}", site=self.site_name, field="user_data")
            server["user_data"] = encoded
        key_name = spec.key_name or self.options.key_name
        if key_name is None and context.ssh_public_keys:
            key_name = self._ensure_keypair(context.ssh_public_keys[0])
        if key_name:
            server["key_name"] = key_name
        if server["networks"] != "none":
            # Nova applies `default` only when no group is named: name it with skyctl's own.
            groups = list(self.options.security_groups or ["default"])
            if self.site.ssh.cidr:
                groups.insert(0, self._neutron.ssh_group(self.site.ssh.cidr, self.site.ssh.port))
            server["security_groups"] = [{"name": g} for g in groups]
        tags = cv.labels_to_tags(spec.labels)
        mv = self._api().compute_microversion()
        if mv >= (2, 52):
            server["tags"] = tags
        payload: dict[str, Any] = {"server": server}
        if hints:
            payload["os:scheduler_hints"] = hints
        try:
            _, body = self._compute("POST", "/servers", json=payload, what=f"create {name}")
        except Transient:
            # The answer was lost, not necessarily the server: look it up by its labels so a
            # retry cannot make a second one.
            made = self._find_created(spec.labels, name)
            if made is None:
                raise
            return made
        server_id = str(((body or {}).get("server") or {}).get("id"))
        if mv < (2, 52) and mv >= (2, 26):
            self._compute("PUT", f"/servers/{server_id}/tags", json={"tags": tags}, what=f"tag {name}")
        # No GET here: Nova schedules asynchronously, so a "No valid host" ERROR shows up
        # later; the node is then marked capacity_fault in `list` and ops fails it over while
        # waiting. One request per node keeps big launches fast.
        return cv.server_to_node({"id": server_id, "name": name, "status": "BUILD", "metadata": server["metadata"],
                                  "tags": tags, "flavor": {"id": spec.flavor.id}, "image": {"id": spec.image.id}},
                                 self.site_name)

    def _find_created(self, labels: Labels, name: str) -> Node | None:
        launch = labels.get(L_LAUNCH)
        if not launch:
            return None
        try:
            found = self.list({L_LAUNCH: launch, L_NAME: labels.get(L_NAME, name)})
        except DriverError:
            return None
        found = [n for n in found if n.name == name]
        return found[0] if len(found) == 1 else None

    def _networks(self) -> Any:
        return self._neutron.networks(self.options.network)

    def _ensure_keypair(self, public_key: str) -> str:
        name = cv.keypair_name(public_key)
        with self._keypair_lock:
            if name in self._keypairs:
                return name
            status, _ = self._compute("GET", f"/os-keypairs/{name}", ok=(404,), what="keypair")
            if status == 404:
                self._compute("POST", "/os-keypairs", ok=(409,), what="keypair",
                              json={"keypair": {"name": name, "public_key": public_key.strip()}})
            self._keypairs.add(name)
        return name

    def list(self, selector: Labels | None = None, *, managed_only: bool = True) -> list[Node]:
        tags, client_side = cv.selector_query(selector, managed_only)
        if self._api().compute_microversion() < (2, 26):
            # No tag filter on this Nova: the labels (metadata) are checked on this side.
            tags, client_side = [], dict(selector or {})
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if tags:
            params["tags"] = ",".join(tags)
        out: dict[str, Node] = {}  # by id: Nova's marker paging can repeat a server while others build
        while True:
            _, body = self._compute("GET", "/servers/detail", params=params, what="list servers")
            page = (body or {}).get("servers") or []
            for s in page:
                if s.get("status") == "ERROR" and not s.get("fault"):
                    s = self._with_fault(s)
                node = cv.server_to_node(s, self.site_name, self.site.ssh.address_family)
                if cv.matches(node, client_side, managed_only):
                    out[node.id] = node
            links = (body or {}).get("servers_links") or []
            if not page or not any(link.get("rel") == "next" for link in links):
                return list(out.values())
            params = {**params, "marker": page[-1]["id"]}

    def _with_fault(self, server: dict[str, Any]) -> dict[str, Any]:
        """Real Nova leaves `fault` out of /servers/detail; an ERROR server's reason (no host,
        quota) decides whether ops fails it over, so ask for it (errored servers are rare)."""
        try:
            _, body = self._compute("GET", f"/servers/{server['id']}", what=f"server {server.get('name')}")
        except DriverError:
            return server
        return (body or {}).get("server") or server

    def get(self, node_id: str) -> Node:
        _, body = self._compute("GET", f"/servers/{node_id}", what=f"server {node_id}")
        return cv.server_to_node((body or {}).get("server") or {}, self.site_name, self.site.ssh.address_family)

    def _delete_one(self, node_id: str) -> None:
        self._compute("DELETE", f"/servers/{node_id}", ok=(404,), what=f"delete {node_id}")

    def _each(self, node_ids: Sequence[str], action: Any) -> None:
        """Run `action` per id, in parallel up to the site's bound; raise the first failure
        after every id has had its turn."""
        ids = list(dict.fromkeys(node_ids))
        if not ids:
            return
        if len(ids) == 1:
            action(ids[0])
            return
        errors: list[DriverError] = []
        with ThreadPoolExecutor(max_workers=min(self.site.max_parallel, len(ids))) as pool:
            for fut in [pool.submit(action, i) for i in ids]:
                try:
                    fut.result()
                except DriverError as e:
                    errors.append(e)
        if errors:
            raise errors[0]

    def delete(self, node_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(node_ids))
        self._delete_servers(ids)
        if ids and self.options.server_group:
            self._server_groups.drop_empty(ids)

    def _delete_servers(self, ids: list[str]) -> None:
        if not ids or self.site.ssh.floating_ip is False:
            self._each(ids, self._delete_one)
            return
        # The floating IPs skyctl allocated for these servers, found by their description so
        # that a server already gone (its port too) does not leak its address.
        owned: dict[str, list[dict[str, Any]]] = {}
        orphans: list[dict[str, Any]] = []
        for fip in self._floating_ips():
            owner = cv.floating_owner(fip)
            if owner in ids:
                owned.setdefault(owner, []).append(fip)
            elif owner and not fip.get("port_id"):
                orphans.append(fip)   # skyctl's, detached: its server may be gone (deleted elsewhere)

        def delete_and_release(node_id: str) -> None:
            self._delete_one(node_id)
            for fip in owned.get(node_id, ()):
                self._release(fip)

        self._each(ids, delete_and_release)
        for fip in orphans:
            status, _ = self._compute("GET", f"/servers/{cv.floating_owner(fip)}", ok=(404,),
                                      what="floating IP owner")
            if status == 404:
                self._release(fip)

    def _release(self, fip: dict[str, Any]) -> None:
        self._api().request("network", "DELETE", f"/floatingips/{fip['id']}", ok=(404,),
                            what=f"release floating IP {fip.get('floating_ip_address')}")

    # ------------------------------------------------------------------ leases (group locks)
    # A lease is a Neutron security group with no rules, named after the lock, its text in
    # the description. Neutron updates it by compare-and-swap: PUT with `If-Match:
    # revision_number=N` is refused with 412 when the group changed since revision N
    # (neutron/services/revisions/revision_plugin.py), so two machines cannot both win.
    def _lease(self, group: dict[str, Any]) -> LeaseRecord:
        return LeaseRecord(str(group["id"]), str(group.get("name") or ""), str(group.get("description") or ""),
                           int(group.get("revision_number") or 0))

    def lease_records(self, name: str) -> list[LeaseRecord]:
        _, body = self._api().request("network", "GET", "/security-groups", params={"name": name},
                                      what="lock records")
        return [self._lease(g) for g in (body or {}).get("security_groups") or [] if g.get("name") == name]

    def lease_create(self, name: str, text: str) -> LeaseRecord:
        _, body = self._api().request("network", "POST", "/security-groups",
                                      json={"security_group": {"name": name, "description": text}},
                                      what="create a lock record")
        return self._lease((body or {})["security_group"])

    def lease_swap(self, record: LeaseRecord, text: str) -> LeaseRecord | None:
        status, body = self._api().request(
            "network", "PUT", f"/security-groups/{record.id}", ok=(412,),
            json={"security_group": {"description": text}},
            headers={"If-Match": f"revision_number={record.revision}"}, what="update a lock record")
        if status == 412:
            return None
        return self._lease((body or {})["security_group"])

    def lease_delete(self, record: LeaseRecord) -> None:
        self._api().request("network", "DELETE", f"/security-groups/{record.id}", ok=(404,),
                            what="remove a lock record")

    # ------------------------------------------------------------------ floating IPs
    def _floating_ips(self) -> list[dict[str, Any]]:
        """The project's floating IPs: one Neutron request (none where Neutron has no L3)."""
        status, body = neutron_get(self._api(), "/floatingips", ok=(404,), what="floating IPs")
        return [] if status == 404 else list((body or {}).get("floatingips") or [])

    def _external_network_id(self) -> str:
        if self._floating_network_id is None:
            wanted = self.options.floating_network
            if wanted:
                self._floating_network_id = str(self._neutron.find_network(wanted, "floating_network")["id"])
            else:
                _, body = neutron_get(self._api(), "/networks", params={"router:external": "true"},
                                      what="external networks")
                found = [n for n in (body or {}).get("networks") or [] if n.get("router:external")]
                if len(found) != 1:
                    names = ", ".join(sorted(str(n.get("name") or n.get("id")) for n in found))
                    problem = f"{len(found)} external networks ({names})" if found else "no external network"
                    raise InvalidRequest(f"floating IPs: the site has {problem}; set floating_network",
                                         site=self.site_name, field="floating_network")
                self._floating_network_id = str(found[0]["id"])
        return self._floating_network_id

    def _ports_of(self, server_ids: Sequence[str]) -> list[dict[str, Any]]:
        ports: list[dict[str, Any]] = []
        for start in range(0, len(server_ids), PORT_QUERY_IDS):
            chunk = list(server_ids[start:start + PORT_QUERY_IDS])
            _, body = neutron_get(self._api(), "/ports", params={"device_id": chunk}, what="ports")
            ports.extend((body or {}).get("ports") or [])
        return ports

    def prepare_access(self, nodes: Sequence[Node]) -> list[Node]:
        """With `ssh.floating_ip`: give each of this site's nodes a floating IP (allocated once,
        attached to its port, reused on later calls) and put that address first."""
        out = list(nodes)
        mode = self.site.ssh.floating_ip
        if mode is False:
            return out
        todo = [n for n in out if n.site == self.site_name and n.state not in (NodeState.DELETED, NodeState.ERROR)]
        if todo and mode == "auto":
            # Only nodes on a network the client cannot reach: behind a router (auto).
            routed = self._neutron.routed_networks()
            if not routed:
                return out
            ports = self._ports_of([n.id for n in todo])
            behind = {str(p.get("device_id")) for p in ports if p.get("network_id") in routed}
            todo = [n for n in todo if n.id in behind]
        if not todo:
            return out
        fips = self._floating_ips()
        by_port = {str(f["port_id"]): f for f in fips if f.get("port_id")}
        by_owner: dict[str, dict[str, Any]] = {}
        for f in fips:
            owner = cv.floating_owner(f)
            if owner and (owner not in by_owner or f.get("port_id")):
                by_owner[owner] = f
        address: dict[str, str] = {}
        need_port: list[Node] = []
        for n in todo:
            f = by_owner.get(n.id)
            if f is not None and f.get("port_id"):
                address[n.id] = str(f["floating_ip_address"])
            else:
                need_port.append(n)
        if need_port:
            network_id = self._external_network_id()
            ports = self._ports_of([n.id for n in need_port])

            def attach(node: Node) -> None:
                port = cv.port_for_server(ports, node.id)
                if port is None:
                    return   # no port yet (still building, or no network): nothing to attach to
                taken = by_port.get(str(port["id"]))
                if taken is not None:   # already has one (ours or the user's): use it
                    address[node.id] = str(taken["floating_ip_address"])
                    return
                mine = by_owner.get(node.id)
                if mine is not None:    # allocated earlier, not attached: attach it
                    _, body = self._api().request("network", "PUT", f"/floatingips/{mine['id']}",
                                                  json={"floatingip": {"port_id": port["id"]}},
                                                  what=f"attach floating IP to {node.name}")
                else:
                    what = f"floating IP for {node.name}"
                    status, body = self._api().request(
                        "network", "POST", "/floatingips", ok=(409,), what=what,
                        json={"floatingip": {"floating_network_id": network_id, "port_id": port["id"],
                                             "description": cv.floating_description(node.id)}})
                    if status == 409:
                        # Another caller attached one meanwhile (use it), or the quota is used up.
                        _, found = neutron_get(self._api(), "/floatingips",
                                                       params={"port_id": port["id"]}, what=what)
                        attached = (found or {}).get("floatingips") or []
                        if not attached:
                            raise error_for_status(409, error_message(body), self.site_name, what=what)
                        body = {"floatingip": attached[0]}
                address[node.id] = str(((body or {}).get("floatingip") or {})["floating_ip_address"])

            self._each_node(need_port, attach)
        return [cv.with_first_address(n, address[n.id]) if n.id in address else n for n in out]

    def _each_node(self, nodes: Sequence[Node], action: Any) -> None:
        by_id = {n.id: n for n in nodes}
        self._each(list(by_id), lambda i: action(by_id[i]))

    def _power(self, node_id: str, action: str, already: tuple[str, ...], args: Any = None) -> None:
        # Nova refuses an action the instance's state does not allow with a 409 "Cannot 'stop'
        # instance <id> while it is in vm_state stopped" (nova/api/openstack/common.py,
        # raise_http_conflict_for_instance_invalid_state): when that state is where we were
        # going, the node is already there.
        status, body = self._compute("POST", f"/servers/{node_id}/action", json={action: args}, ok=(409,),
                                     what=f"{action} {node_id}")
        if status == 409:
            message = error_message(body)
            if any(a in message for a in already):
                return   # already there, or on its way

            raise error_for_status(409, message, self.site_name, what=f"{action} {node_id}")

    def stop(self, node_ids: Sequence[str]) -> None:
        self._each(node_ids, lambda i: self._power(i, "os-stop", ("vm_state stopped", "task_state powering-off")))

    def start(self, node_ids: Sequence[str]) -> None:
        self._each(node_ids, lambda i: self._power(i, "os-start", ("vm_state active", "task_state powering-on")))

    def reboot(self, node_ids: Sequence[str], *, hard: bool = False) -> None:
        kind = "HARD" if hard else "SOFT"
        self._each(node_ids, lambda i: self._power(i, "reboot", (), {"type": kind}))

    def console_log(self, node_id: str) -> str:
        _, body = self._compute("POST", f"/servers/{node_id}/action", json={"os-getConsoleOutput": {}},
                                what=f"console {node_id}")
        return str((body or {}).get("output") or "")


__all__ = ["OpenStackDriver", "OpenStackOptions"]
