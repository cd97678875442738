"""OpenNebula driver. LIGHT module: skyctl and pydantic only.

pyone (through `transport`) and the XML parsing (`convert`) are imported on first use, so
loading this module for config validation or `skyctl --help` costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyctl.drivers import Driver
from skyctl.errors import DriverError, NotFound, Transient
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
DELETE_RETRY = 0.5     # seconds between terminate attempts on a VM still in PROLOG/BOOT
DELETE_WAIT = 120.0    # at most this long (or ready_timeout) per delete call; ops retries the call


log = logging.getLogger("skyctl.opennebula")


class OwnedName(BaseModel):
    """An object named with its owner: `{name: private, owner: oneadmin}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)


class OpenNebulaOptions(BaseModel):
    """A site's OpenNebula fields in the federation file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None          # default $ONE_XMLRPC, then http://localhost:2633/RPC2
    one_auth: str | None = None          # a user:password file; default $ONE_AUTH, then ~/.one/one_auth
    verify_tls: bool = True
    ca_bundle: str | None = None         # a PEM file of the CA that signed the endpoint's certificate
    mode: Literal["instantiate", "allocate"] = "instantiate"
    # The NIC: a network id, a name (looked up among the networks the user may use), or
    # {name, owner}. None: the template's own NICs.
    network: int | str | OwnedName | None = None
    # oned.conf has ONEGATE_ENDPOINT: send TOKEN/REPORT_READY (oned refuses them otherwise).
    onegate: bool = False
    # CPU per VCPU sent (0.25: four virtual CPUs per physical one); None: the template's ratio.
    cpu_ratio: float | None = Field(None, gt=0, le=64)

    @field_validator("endpoint")
    @classmethod
    def _xmlrpc_url(cls, value: str | None) -> str | None:
        from skyctl_opennebula.auth import check_endpoint

        return None if value is None else check_endpoint(value)


class OpenNebulaDriver(Driver):
    name: ClassVar[str] = "opennebula"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.CUSTOM_SIZES, Capability.STOP_START, Capability.REBOOT, Capability.IMAGE_FROM_URL,
    })
    options_model: ClassVar[type[BaseModel]] = OpenNebulaOptions

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        opts = site.options
        if not isinstance(opts, OpenNebulaOptions):
            opts = OpenNebulaOptions.model_validate(site.driver_fields())
        self.options: OpenNebulaOptions = opts
        self._client: Client | None = None
        self._user = ""
        self._lock = threading.Lock()
        self._version: str | None = None
        self._templates: dict[int, Any] = {}
        self._network_nic: dict[str, str] | None = None
        self._may_recover: bool | None = None    # one.vm.recover allowed (None: not tried yet)

    # ------------------------------------------------------------ plumbing
    @property
    def endpoint(self) -> str:
        from skyctl.errors import ConfigError
        from skyctl_opennebula.auth import resolve_endpoint

        try:
            return resolve_endpoint(self.options.endpoint)
        except ValueError as e:
            raise ConfigError(str(e), path=f"sites.{self.site_name}.endpoint") from None

    def _ca_bundle(self) -> str:
        from pathlib import Path

        from skyctl.errors import ConfigError

        path = Path(str(self.options.ca_bundle)).expanduser()
        if not path.is_file():
            raise ConfigError(f"no CA bundle file at {path}", path=f"sites.{self.site_name}.ca_bundle")
        return str(path)

    def _api(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from skyctl_opennebula.transport import Client
                    from skyctl_opennebula.auth import read_session

                    session, self._user = read_session(self.options.one_auth, site=self.site_name)
                    verify: bool | str = self.options.verify_tls
                    if verify and self.options.ca_bundle:
                        verify = self._ca_bundle()
                    self._client = Client(self.endpoint, session, site=self.site_name,
                                          verify=verify, timeout=self.site.request_timeout,
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
        """The user's quota and, line by line, its groups' where tighter (oned enforces both)."""
        from skyctl.errors import AuthError, InvalidRequest
        from skyctl_opennebula import convert

        body = self._call("user.info", -1)
        try:
            quota = convert.parse_user_quota(body)
            groups = convert.parse_user_groups(body)
        except convert.BadReply as e:
            raise Transient(f"one.user.info: {e}", site=self.site_name) from None
        for gid in groups:
            try:
                group = self._parsed(convert.parse_group_quota, "group.info", int(gid), False)
            except (AuthError, NotFound, InvalidRequest):   # a group the user may not read (oned still
                continue                                       # enforces it), a server without the call
            quota = tuple(convert.tighter(mine, theirs, scope=f"group {gid}")   # type: ignore[assignment]
                          for mine, theirs in zip(quota, group, strict=True))
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

    # ------------------------------------------------------------ images from a URL
    def import_image_url(self, name: str, url: str, *, disk_format: str = "qcow2", timeout: float = 1800) -> ImageRef:
        """one.image.allocate with PATH=url into the first image datastore; oned's datastore
        driver fetches it (LOCKED) and the image turns READY (or ERROR with the driver's words,
        which is then deleted). Only for `mode: allocate` sites, whose logical images are disk
        images: in instantiate mode they name VM templates, which a new image does not make."""
        from skyctl.errors import DriverTimeout, InvalidRequest, Unsupported
        from skyctl.polling import Expired, iterate_timeout
        from skyctl_opennebula import convert
        from skyctl_opennebula.template import image_template

        if self.options.mode != "allocate":
            raise Unsupported("this site boots VM templates (mode: instantiate); an imported image needs a "
                              "template of its own, or mode: allocate", site=self.site_name)
        ds_id = self._image_datastore()
        image_id = int(self._call("image.allocate", image_template(name, url, disk_format), ds_id, False))
        try:
            for _ in iterate_timeout(timeout, f"image {image_id} to leave LOCKED", interval=0.5):
                img = self._parsed(convert.parse_image, "image.info", image_id, False)
                state = img.extra.get("state")
                if state in ("READY", "USED"):
                    return img
                if state == "ERROR":
                    why = img.extra.get("error") or "the datastore driver failed"
                    raise InvalidRequest(f"image {image_id} went to ERROR: {why}", site=self.site_name)
        except Expired:
            self._forget_image(image_id)
            raise DriverTimeout(f"image {image_id} still LOCKED after {timeout:g}s", site=self.site_name) from None
        except BaseException:
            self._forget_image(image_id)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _image_datastore(self) -> int:
        from skyctl.errors import InvalidRequest
        from skyctl_opennebula import convert

        for ds in self._parsed(convert.parse_datastore_pool, "datastorepool.info"):
            if ds["type"] == 0 and ds["state"] == 0:
                return int(ds["id"])
        raise InvalidRequest("no image datastore is usable here", site=self.site_name)

    def delete_image(self, image_id: str) -> None:
        from skyctl.errors import NotFound

        try:
            self._call("image.delete", int(image_id), False)
        except NotFound:
            pass

    def _forget_image(self, image_id: int) -> None:
        try:
            self.delete_image(str(image_id))
        except DriverError:
            pass   # best effort: the import's own error is the one to report

    # ------------------------------------------------------------ what a create sends
    def _nic(self) -> dict[str, str] | None:
        """The NIC for `network:`: by id, by name with its owner, or None (the template's NICs).
        A bare name is looked up among the networks the user may use, since oned looks it up
        among the user's own only (src/vnm/VirtualNetworkPool.cc)."""
        from skyctl.errors import InvalidRequest
        from skyctl_opennebula import convert

        net = self.options.network
        if net is None:
            return None
        if isinstance(net, OwnedName):
            return {"NETWORK": net.name, "NETWORK_UNAME": net.owner}
        if isinstance(net, int) or str(net).isdigit():
            return {"NETWORK_ID": str(net)}
        if self._network_nic is None:
            found = [v for v in self._parsed(lambda b: convert.parse_owned(b, "VNET_POOL", "VNET"), "vnpool.info",
                                             POOL_ALL, -1, -1) if v.name == net]
            if not found:
                raise InvalidRequest(f"no virtual network named {net!r} that this user may use",
                                     site=self.site_name, field="network")
            mine = [v for v in found if v.uname == self._user]
            if len(found) > 1 and not mine:
                owners = ", ".join(sorted(v.uname for v in found))
                raise InvalidRequest(f"several networks are named {net!r} (owners: {owners}); name one as "
                                     f"{{name: {net}, owner: ...}} or by id", site=self.site_name, field="network")
            v = (mine or found)[0]
            self._network_nic = {"NETWORK": v.name, "NETWORK_UID": v.uid}
        return dict(self._network_nic)

    def _site_template(self, template_id: int) -> Any:
        """The template's CONTEXT and CPU ratio, read once per template (skyctl merges into
        them: oned's merge would replace them)."""
        from skyctl_opennebula import convert
        from skyctl_opennebula.template import SiteTemplate

        cached = self._templates.get(template_id)
        if cached is None:
            context, cpu, vcpu = self._parsed(convert.parse_template, "template.info", template_id, False, False)
            cached = self._templates[template_id] = SiteTemplate(context=context, cpu=cpu, vcpu=vcpu)
        return cached

    def render_template(self, spec: NodeSpec, context: RenderedContext, *, name: str) -> str:
        """The template a create sends (instantiate: the extra one, merged over the site's)."""
        from skyctl_opennebula import template

        common = {"nic": self._nic(), "onegate": self.options.onegate, "cpu_ratio": self.options.cpu_ratio}
        if self.options.mode == "allocate":
            body, clashes = template.vm_template(spec, context, name=name, image_id=str(spec.image.id),
                                                 disk=_disk(spec.image), **common)
        else:
            body, clashes = template.vm_template(spec, context, site_template=self._site_template(int(spec.image.id)),
                                                 **common)
        if clashes:
            log.info("%s: template %s sets CONTEXT %s too; skyctl's value is used", self.site_name, spec.image.id,
                     ", ".join(clashes))
        return body

    def site_context(self, context: RenderedContext, template: str) -> dict[str, str]:
        """The CONTEXT a VM from `template` (a template name or id) gets: the template's with
        skyctl's variables over it, as create sends it (`skyctl context render --site`)."""
        from skyctl.errors import InvalidRequest
        from skyctl_opennebula import template as one_template

        if self.options.mode == "allocate":
            return one_template.one_context(context, onegate=self.options.onegate)
        found = [i for i in self.images() if template in (i.id, i.name)]
        if not found:
            raise InvalidRequest(f"no VM template {template!r} on this site", site=self.site_name, field="image")
        site_template = self._site_template(int(found[0].id))
        merged, _ = one_template.merge_context(site_template.context,
                                               one_template.one_context(context, onegate=self.options.onegate))
        return merged

    # ------------------------------------------------------------ nodes
    def create(self, spec: NodeSpec, name: str, context: RenderedContext) -> Node:
        from skyctl.errors import InvalidRequest
        from skyctl.model import Node as _Node

        if not str(spec.image.id).isdigit():
            raise InvalidRequest(f"OpenNebula ids are numbers, not {spec.image.id!r}", site=self.site_name,
                                 field="image")
        body = self.render_template(spec, context, name=name)
        try:
            if self.options.mode == "allocate":
                vm_id = self._call("vm.allocate", body, False)
            else:
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
        """terminate-hard each VM; a missing one is success. oned refuses while a VM is being
        set up (PROLOG, BOOT, HOTPLUG...: "wrong state"): such a VM is recovered with delete
        (`one.vm.recover`, operation 3) where the user has that right (oned.conf puts it in
        VM_ADMIN_OPERATIONS, so usually only admins), else tried again until it goes, up to the
        site's ready_timeout (at most DELETE_WAIT), then reported as still deleting (Transient:
        the nodes stay recorded, a later delete or reconcile finishes). One failure does not
        spare the rest."""
        from skyctl.errors import InvalidRequest
        from skyctl.polling import Expired, iterate_timeout
        from skyctl_opennebula.errors import WRONG_STATE

        first_error: Exception | None = None
        pending = [int(i) for i in node_ids if str(i).isdigit()]   # others cannot exist here
        refused: dict[int, str] = {}
        try:
            for _ in iterate_timeout(min(self.site.ready_timeout, DELETE_WAIT), "VMs to leave PROLOG/BOOT",
                                     interval=DELETE_RETRY):
                for vm_id in pending:
                    try:
                        self._call("vm.action", "terminate-hard", vm_id)
                    except NotFound:
                        pass            # already gone
                    except InvalidRequest as e:
                        if WRONG_STATE not in str(e):
                            first_error = first_error or e
                            continue
                        if self._recover(vm_id):
                            refused.pop(vm_id, None)
                            continue
                        refused[vm_id] = str(e)
                        continue
                    except Exception as e:  # noqa: BLE001 - re-raised below once all were tried
                        first_error = first_error or e
                        continue
                    refused.pop(vm_id, None)
                pending = sorted(refused)
                if not pending:
                    break
                log.info("%s: VM(s) %s not terminable yet (being set up); trying again", self.site_name,
                         ", ".join(map(str, pending)))
        except Expired:
            raise Transient(f"VM(s) {', '.join(map(str, pending))} still deleting: oned refuses to terminate them "
                            f"yet ({refused[pending[0]]})", site=self.site_name) from None
        if first_error is not None:
            raise first_error

    def _recover(self, vm_id: int) -> bool:
        """Delete a VM oned will not terminate in its state, by `one.vm.recover --delete`; False
        when the user lacks the right (remembered: not asked again) or the call failed."""
        from skyctl.errors import AuthError, DriverError

        if self._may_recover is False:
            return False
        try:
            self._call("vm.recover", vm_id, 3)
        except NotFound:
            return True
        except AuthError as e:
            # "[one.vm.recover] User [2] : Not authorized to perform ADMIN VM [7]." (src/rm/Request.cc)
            self._may_recover = False
            log.info("%s: may not recover VMs (%s); waiting for them to leave PROLOG/BOOT instead", self.site_name, e)
            return False
        except DriverError:
            return False
        self._may_recover = True
        log.info("%s: VM %s recovered with delete (it could not be terminated in its state)", self.site_name, vm_id)
        return True

    def stop(self, node_ids: Sequence[str]) -> None:
        self._action("poweroff", node_ids, already=("POWEROFF", "SHUTDOWN_POWEROFF"))

    def start(self, node_ids: Sequence[str]) -> None:
        self._action("resume", node_ids, already=("RUNNING", "BOOT_POWEROFF", "BOOT_SUSPENDED", "BOOT_STOPPED",
                                                       "BOOT_UNDEPLOY", "PROLOG_RESUME", "PROLOG_UNDEPLOY"))

    def reboot(self, node_ids: Sequence[str], *, hard: bool = False) -> None:
        self._action("reboot-hard" if hard else "reboot", node_ids, already=())

    def console_log(self, node_id: str) -> str:
        """OpenNebula keeps no guest console output that its API serves: one.vm.info has none,
        the serial console is reached only as VNC/SPICE through Sunstone/FireEdge, and oned's
        per-VM log (/var/log/one/<id>.log) is its own lifecycle log, on the front-end only."""
        from skyctl.errors import Unsupported

        raise Unsupported("OpenNebula serves no console log over its API (the console is VNC/SPICE in "
                          "Sunstone only)", site=self.site_name,
                          hint="read the guest's own log with 'skyctl logs NODE --cloud-init'")

    def _action(self, action: str, node_ids: Sequence[str], *, already: tuple[str, ...]) -> None:
        """One `one.vm.action` per VM. oned refuses an action the VM's state does not allow
        with ACTION 0x800 '[one.vm.action] Error performing action "poweroff": This action is
        not available for state POWEROFF' (src/rm/RequestManagerVirtualMachine.cc; recorded
        in the reference replies): when that state is where we were going, it is there. One
        refusal does not spare the other VMs; the first is raised once all were tried."""
        from skyctl.errors import InvalidRequest
        from skyctl_opennebula.errors import NOT_AVAILABLE_FOR_STATE

        first: Exception | None = None
        for node_id in node_ids:
            if not str(node_id).isdigit():
                first = first or NotFound(f"no VM {node_id!r} (OpenNebula VM ids are numbers)", site=self.site_name)
                continue
            try:
                self._call("vm.action", action, int(node_id))
            except InvalidRequest as e:
                state = str(e).rpartition(NOT_AVAILABLE_FOR_STATE)[2].strip().rstrip(".")
                if NOT_AVAILABLE_FOR_STATE in str(e) and state in already:
                    continue
                first = first or e
            except Exception as e:  # noqa: BLE001 - raised below once every VM was tried
                first = first or e
        if first is not None:
            raise first


def _disk(image: ImageRef) -> dict[str, str] | None:
    """The DISK of an allocated VM: the image by name with its owner's id (oned looks a bare
    name up among the caller's own images only, src/image/ImageManager.cc), as the image pool
    listed it; by id when the owner is not known."""
    owner_id = str(image.extra.get("owner_id") or "")
    if image.name and owner_id.isdigit():
        return {"IMAGE": image.name, "IMAGE_UID": owner_id}
    return None


def _size_label(cpus: int, memory_mib: int) -> str:
    from skyctl.model import format_mib

    return f"{cpus}cpu-{format_mib(memory_mib)}"
