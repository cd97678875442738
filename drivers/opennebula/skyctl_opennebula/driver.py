"""OpenNebula driver. LIGHT module: skyctl and pydantic only.

pyone (through `transport`) and the XML parsing (`convert`) are imported on first use, so
loading this module for config validation or `skyctl --help` costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from skyctl.drivers import Driver
from skyctl.errors import NotFound, Transient
from skyctl.model import (L_LAUNCH, L_NAME, Capability, Capacity, Flavor, ImageRef, Labels, Node, NodeSpec,
                          NodeState, RenderedContext)

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.site import SiteConfig
    from skyctl_opennebula.transport import Client

# Pool arguments (OpenNebula XML-RPC reference)
POOL_MINE_AND_GROUPS = -1
POOL_ALL = -2
STATE_ANY_BUT_DONE = -1
PAGE_SIZE = 1000


class OpenNebulaOptions(BaseModel):
    """A site's OpenNebula fields in the federation file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None          # default $ONE_XMLRPC, then http://localhost:2633/RPC2
    one_auth: str | None = None          # a user:password file; default $ONE_AUTH, then ~/.one/one_auth
    verify_tls: bool = True
    mode: Literal["instantiate", "allocate"] = "instantiate"
    network: str | None = None           # virtual network name or id for the NIC


class OpenNebulaDriver(Driver):
    name: ClassVar[str] = "opennebula"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.CUSTOM_SIZES, Capability.STOP_START,
    })
    options_model: ClassVar[type[BaseModel]] = OpenNebulaOptions

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        opts = site.options
        if not isinstance(opts, OpenNebulaOptions):
            opts = OpenNebulaOptions.model_validate(site.driver_fields())
        self.options: OpenNebulaOptions = opts
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._version: str | None = None

    # ------------------------------------------------------------ plumbing
    @property
    def endpoint(self) -> str:
        from skyctl_opennebula.auth import resolve_endpoint

        return resolve_endpoint(self.options.endpoint)

    def _api(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from skyctl_opennebula.transport import Client
                    from skyctl_opennebula.auth import read_session

                    session, _user = read_session(self.options.one_auth, site=self.site_name)
                    self._client = Client(self.endpoint, session, site=self.site_name,
                                             verify=self.options.verify_tls, timeout=self.site.request_timeout,
                                             pool_size=max(self.site.max_parallel, 4))
        return self._client

    def identity(self) -> str | None:
        from skyctl_opennebula.auth import read_session

        return read_session(self.options.one_auth, site=self.site_name)[1]

    def _call(self, method: str, *params: Any) -> Any:
        return self._api().call(method, *params)

    def _parsed(self, parser: Any, method: str, *params: Any) -> Any:
        """Call and parse; a body that is not what the call returns is the server's fault."""
        from skyctl_opennebula.convert import BadReply

        body = self._call(method, *params)
        try:
            return parser(body)
        except BadReply as e:
            raise Transient(f"one.{method}: {e}", site=self.site_name) from None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def describe(self) -> dict[str, Any]:
        from skyctl_opennebula.auth import public_endpoint

        facts: dict[str, Any] = {"endpoint": public_endpoint(self.endpoint), "mode": self.options.mode}
        if self.options.network:
            facts["network"] = self.options.network
        try:
            facts["version"] = self.version()
        except Exception:  # describe is best effort; the error shows on real calls
            facts["version"] = None
        return facts

    def version(self) -> str:
        if self._version is None:
            self._version = str(self._call("system.version"))
        return self._version

    # ------------------------------------------------------------ what the site offers
    def capacity(self) -> Capacity:
        from skyctl.errors import AuthError
        from skyctl_opennebula import convert

        quota = self._parsed(convert.parse_user_quota, "user.info", -1)
        try:
            hosts = self._parsed(convert.parse_host_pool, "hostpool.info")
        except (AuthError, NotFound):       # regular users may not see the hosts
            hosts = None
        return convert.capacity(quota, hosts)

    def flavors(self) -> list[Flavor]:
        return []   # CUSTOM_SIZES: any CPU/MEMORY is sent in the template

    def images(self) -> list[ImageRef]:
        """Instantiate mode: VM templates (id = template id). Allocate mode: disk images."""
        from skyctl_opennebula import convert

        if self.options.mode == "allocate":
            return self._parsed(convert.parse_image_pool, "imagepool.info", POOL_ALL, -1, -1)
        return self._parsed(convert.parse_template_pool, "templatepool.info", POOL_ALL, -1, -1)

    # ------------------------------------------------------------ nodes
    def create(self, spec: NodeSpec, name: str, context: RenderedContext) -> Node:
        from skyctl.errors import InvalidRequest
        from skyctl.model import Node as _Node
        from skyctl_opennebula import template

        if not str(spec.image.id).isdigit():
            raise InvalidRequest(f"OpenNebula ids are numbers, not {spec.image.id!r}", site=self.site_name,
                                 field="image")
        try:
            if self.options.mode == "allocate":
                body = template.vm_template(spec, context, network=self.options.network, name=name,
                                            image_id=str(spec.image.id))
                vm_id = self._call("vm.allocate", body, False)
            else:
                body = template.vm_template(spec, context, network=self.options.network)
                vm_id = self._call("template.instantiate", int(spec.image.id), name, False, body, False)
        except Transient:
            # The request may have reached oned: find it by its labels before anyone retries.
            existing = self._find_created(spec, name)
            if existing is not None:
                return existing
            raise
        return _Node(name=name, group=spec.group, site=self.site_name, driver=self.name, id=str(vm_id),
                     state=NodeState.PENDING, image=spec.image_name or spec.image.name,
                     size=spec.size_name or _size_label(spec.flavor.cpus, spec.flavor.memory_mib),
                     created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), labels=dict(spec.labels),
                     extra={"one_state": "PENDING", "one_lcm_state": "LCM_INIT", "ready": False})

    def _find_created(self, spec: NodeSpec, name: str) -> Node | None:
        launch = spec.labels.get(L_LAUNCH)
        if not launch:
            return None
        try:
            found = self.list({L_LAUNCH: launch, L_NAME: spec.labels.get(L_NAME, name)})
        except Transient:
            return None
        return found[0] if found else None

    def list(self, selector: Labels | None = None, *, managed_only: bool = True) -> list[Node]:
        from skyctl_opennebula import convert

        nodes: list[Node] = []
        seen: set[str] = set()
        offset = 0
        while True:
            records = self._parsed(convert.parse_vm_pool, "vmpool.info", POOL_MINE_AND_GROUPS, offset, -PAGE_SIZE,
                                   STATE_ANY_BUT_DONE)
            if records and not all(r.has_user_template for r in records):
                # servers whose short bodies lack USER_TEMPLATE: ask for the full ones
                records = self._parsed(convert.parse_vm_pool, "vmpool.infoextended", POOL_MINE_AND_GROUPS, offset,
                                       -PAGE_SIZE, STATE_ANY_BUT_DONE)
            if convert.first_id_seen(records, seen):   # a server that ignores paging
                records = [r for r in records if r.id not in seen]
                done = True
            else:
                done = len(records) < PAGE_SIZE
            for rec in records:
                seen.add(rec.id)
                labels = rec.labels
                managed = bool(labels.get("group"))
                if managed and convert.matches(labels, selector):
                    nodes.append(convert.to_node(rec, site=self.site_name, driver=self.name))
                elif not managed and not managed_only:
                    nodes.append(convert.to_node(rec, site=self.site_name, driver=self.name))
            if done:
                return nodes
            offset += PAGE_SIZE

    def get(self, node_id: str) -> Node:
        from skyctl_opennebula import convert

        if not str(node_id).isdigit():
            raise NotFound(f"no VM {node_id!r} (OpenNebula VM ids are numbers)", site=self.site_name)
        return convert.to_node(self._parsed(convert.parse_vm, "vm.info", int(node_id)), site=self.site_name,
                             driver=self.name)

    def delete(self, node_ids: Sequence[str]) -> None:
        """terminate-hard each VM; a missing one is success. One failure does not spare the rest."""
        first_error: Exception | None = None
        for node_id in node_ids:
            if not str(node_id).isdigit():
                continue            # cannot exist here
            try:
                self._call("vm.action", "terminate-hard", int(node_id))
            except NotFound:
                pass                # already gone
            except Exception as e:  # noqa: BLE001 - re-raised below once all were tried
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def stop(self, node_ids: Sequence[str]) -> None:
        self._action("poweroff", node_ids)

    def start(self, node_ids: Sequence[str]) -> None:
        self._action("resume", node_ids)

    def _action(self, action: str, node_ids: Sequence[str]) -> None:
        for node_id in node_ids:
            if not str(node_id).isdigit():
                raise NotFound(f"no VM {node_id!r}", site=self.site_name)
            self._call("vm.action", action, int(node_id))


def _size_label(cpus: int, memory_mib: int) -> str:
    from skyctl.model import format_mib

    return f"{cpus}cpu-{format_mib(memory_mib)}"
