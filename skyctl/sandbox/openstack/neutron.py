"""Neutron v2.0 imitated (`/network`): the site's networks (its tenant network, on a tenant-network
site also a shared one, and the external network, with their subnets), the servers' ports,
floating IPs taken from the external network and attached to a port, and (in `secgroups`)
security groups. The network quota's floating IPs are the world's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from skyctl.sandbox.openstack.http import HttpError, Reply, Request, iso, neutron_page, nova_error, stable_id
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.openstack.secgroups import DEFAULT_SG, RULE_QUOTA, SG_QUOTA, SecurityGroups
from skyctl.sandbox.world import FloatingIPError, QuotaError, SFloatingIP, SiteWorld, SVM

NETWORK_NAME = "private"
SHARED_NETWORK_NAME = "shared"       # a tenant-network site's second network, shared by its admin
EXTERNAL_NETWORK_NAME = "public"     # router:external, where floating IPs come from

__all__ = ["DEFAULT_SG", "EXTERNAL_NETWORK_NAME", "NETWORK_NAME", "SHARED_NETWORK_NAME", "Neutron"]


class Neutron:
    """The network service of one site; Nova asks it which networks and groups exist."""

    def __init__(self, world: SiteWorld, keystone: Keystone) -> None:
        self.world = world
        self.keystone = keystone
        self.network_id = stable_id(world.name, "network", NETWORK_NAME)
        self.subnet_id = stable_id(world.name, "subnet", NETWORK_NAME)
        self.external_network_id = stable_id(world.name, "network", EXTERNAL_NETWORK_NAME)
        self.external_subnet_id = stable_id(world.name, "subnet", EXTERNAL_NETWORK_NAME)
        self.router_id = stable_id(world.name, "router", "router1")
        self.shared_network_id = stable_id(world.name, "network", SHARED_NETWORK_NAME)
        self.shared_subnet_id = stable_id(world.name, "subnet", SHARED_NETWORK_NAME)
        self.security_groups = SecurityGroups(world)
        # The guests ask before they answer SSH: the VM's groups must let the client in.
        world.admits_ssh = self.security_groups.admits

    def networks(self) -> list[dict[str, Any]]:
        """Every network of the site: the tenant one, the shared one (tenant-network sites),
        the external one."""
        nets = [self._network_view()]
        if self.world.tenant_network:
            nets.append(self._network_view(shared=True))
        return nets + [self._network_view(external=True)]

    def network_name(self, ref: str) -> str | None:
        """The name of the network an id (or, as the sandbox always allowed, a name) stands for."""
        for net in self.networks():
            if ref in (net["id"], net["name"]):
                return str(net["name"])
        return None

    def route(self, req: Request, rest: list[str]) -> Reply:
        if not rest:
            return Reply(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{req.base_url}/network/v2.0/"}]}]})
        if rest[0] != "v2.0":
            raise HttpError(404, "The resource could not be found.", "NeutronError")
        req.principal = self.keystone.authenticate(req)
        rest = rest[1:]
        if not rest:
            return Reply(200, {"resources": [
                {"name": n, "collection": n + "s", "links": [
                    {"rel": "self", "href": f"{req.base_url}/network/v2.0/{n}s"}]}
                for n in ("network", "subnet", "port", "security_group", "floatingip")]})
        coll = rest[0].removesuffix(".json")
        rest = [coll, *rest[1:]]
        if coll == "networks" and req.method == "GET":
            nets = self.networks()
            if len(rest) == 2:
                found = [n for n in nets if n["id"] == rest[1]]
                return Reply(200, {"network": found[0]}) if found else _not_found("Network", rest[1])
            return neutron_page(req, [n for n in nets if _matches(n, req.query)], "networks",
                                lambda m: _not_found("Network", m), self.world.neutron_max_limit)
        if coll == "subnets" and req.method == "GET":
            subs = [self._subnet_view(), self._subnet_view(external=True)]
            if self.world.tenant_network:
                subs.insert(1, self._subnet_view(shared=True))
            if len(rest) == 2:
                found = [s for s in subs if s["id"] == rest[1]]
                return Reply(200, {"subnet": found[0]}) if found else _not_found("Subnet", rest[1])
            return Reply(200, {"subnets": [s for s in subs if _matches(s, req.query)]})
        if coll == "routers" and req.method == "GET" and len(rest) <= 2:
            routers = [self._router_view()] if self.world.tenant_network else []
            if len(rest) == 2:
                found = [r for r in routers if r["id"] == rest[1]]
                return Reply(200, {"router": found[0]}) if found else _not_found("Router", rest[1])
            return Reply(200, {"routers": [r for r in routers if _matches(r, req.query)]})
        if coll in ("security-groups", "security-group-rules") and len(rest) <= 2:
            return self.security_groups.route(req, coll, rest)
        if coll == "ports" and req.method == "GET" and len(rest) <= 2:
            return self._ports(req, rest)
        if coll == "floatingips" and len(rest) <= 2:
            return self._floatingips(req, rest)
        if coll == "quotas" and req.method == "GET" and len(rest) in (2, 3):
            return self._quota(req, rest)
        if coll == "extensions" and req.method == "GET":
            return Reply(200, {"extensions": []})
        raise HttpError(404, "The resource could not be found.", "NeutronError")

    # ------------------------------------------------------------ quotas
    def port_count(self, project_id: str) -> int:
        """The ports the project holds: its servers' and, on a tenant-network site, its router's."""
        with self.world.lock:
            n = sum(1 for vm in self.world.vms.values() if self._has_port(vm) and self.keystone.owner(vm) == project_id)
        return n + (1 if self.world.tenant_network and project_id == self.keystone.project_id else 0)

    def check_port_quota(self, project_id: str) -> None:
        """What Nova checks before it asks Neutron for a server's port: PortLimitExceeded
        (nova/exception.py, a 403 through the API's quota handling)."""
        limit = self.world.quota.ports
        if limit >= 0 and self.port_count(project_id) + 1 > limit:
            raise nova_error(403, "Maximum number of ports exceeded")

    def _quota(self, req: Request, rest: list[str]) -> Reply:
        """`/quotas/{project}` and `/quotas/{project}/details` (limit, used, reserved per resource)."""
        assert req.principal is not None
        project = rest[1]
        if rest[2:] not in ([], ["details"]):
            raise HttpError(404, "The resource could not be found.", "NeutronError")
        if project != req.principal.project_id and not req.principal.is_admin:
            # neutron/extensions/quotasv2_detail.py details(): AdminRequired (neutron_lib's text);
            # quotasv2.py show(): the get_quota policy.
            if rest[2:]:
                return _error(403, "AdminRequired", "User does not have admin privileges: Only admin is "
                                                    "authorized to access quotas for another project.")
            return _error(403, "PolicyNotAuthorized", "(rule:get_quota) is disallowed by policy")
        q = self.world.quota
        with self.world.lock:
            fips = sum(1 for f in self.world.floating_ips.values() if f.project_id == project)
        groups = sum(1 for g in self.security_groups.groups.values() if g.project_id == project)
        rules = sum(1 for r in self.security_groups.rules.values() if r.project_id == project)
        values = {"network": (100, 0), "subnet": (100, 0), "port": (q.ports, self.port_count(project)),
                  "router": (10, 1 if self.world.tenant_network else 0), "floatingip": (q.floating_ips, fips),
                  "security_group": (SG_QUOTA, groups), "security_group_rule": (RULE_QUOTA, rules),
                  "rbac_policy": (10, 0), "subnetpool": (-1, 0)}
        if rest[2:] == ["details"]:
            return Reply(200, {"quota": {k: {"limit": lim, "used": used, "reserved": 0}
                                         for k, (lim, used) in values.items()}})
        return Reply(200, {"quota": {k: lim for k, (lim, _) in values.items()}})

    def _network_view(self, external: bool = False, shared: bool = False) -> dict[str, Any]:
        admin = stable_id(self.world.name, "project", "admin")
        # A provider-network site shares its one network with every project; a tenant-network
        # site gives the member project its own (not shared) and its admin shares a second.
        if external:
            nid, name, sid, owner, is_shared = (self.external_network_id, EXTERNAL_NETWORK_NAME,
                                                self.external_subnet_id, admin, False)
        elif shared:
            nid, name, sid, owner, is_shared = (self.shared_network_id, SHARED_NETWORK_NAME,
                                                self.shared_subnet_id, admin, True)
        elif self.world.tenant_network:
            nid, name, sid, owner, is_shared = (self.network_id, NETWORK_NAME, self.subnet_id,
                                                self.keystone.project_id, False)
        else:
            nid, name, sid, owner, is_shared = self.network_id, NETWORK_NAME, self.subnet_id, admin, True
        return {"id": nid, "name": name, "status": "ACTIVE", "admin_state_up": True, "shared": is_shared,
                "subnets": [sid], "tenant_id": owner, "project_id": owner, "router:external": external,
                "mtu": 1500 if external else 1450, "availability_zones": ["nova"],
                "availability_zone_hints": [], "ipv4_address_scope": None, "ipv6_address_scope": None,
                "port_security_enabled": True, "is_default": external, "description": "", "tags": [],
                "created_at": iso(0), "updated_at": iso(0), "revision_number": 1,
                "provider:network_type": "flat" if external else "geneve", "l2_adjacency": True}

    def _subnet_view(self, external: bool = False, shared: bool = False) -> dict[str, Any]:
        pid = stable_id(self.world.name, "project", "admin")
        if external:
            octet = self.world.floating_octet
            return {"id": self.external_subnet_id, "name": f"{EXTERNAL_NETWORK_NAME}-subnet",
                    "network_id": self.external_network_id, "ip_version": 4, "cidr": f"127.{octet}.0.0/16",
                    "gateway_ip": f"127.{octet}.0.1", "enable_dhcp": False, "tenant_id": pid, "project_id": pid,
                    "allocation_pools": [{"start": f"127.{octet}.0.2", "end": f"127.{octet}.255.254"}],
                    "dns_nameservers": [], "host_routes": [], "description": "", "tags": []}
        name, sid, nid = ((SHARED_NETWORK_NAME, self.shared_subnet_id, self.shared_network_id) if shared
                          else (NETWORK_NAME, self.subnet_id, self.network_id))
        return {"id": sid, "name": f"{name}-subnet", "network_id": nid,
                "ip_version": 4, "cidr": "127.0.0.0/8", "gateway_ip": None, "enable_dhcp": True,
                "tenant_id": pid, "project_id": pid, "allocation_pools": [
                    {"start": "127.0.0.2", "end": "127.255.255.254"}], "dns_nameservers": [],
                "host_routes": [], "description": "", "tags": []}

    def _router_view(self) -> dict[str, Any]:
        """A tenant-network site's router: its gateway on the external network, an interface on
        the project's own network (floating IPs reach the VMs behind it)."""
        pid = self.keystone.project_id
        return {"id": self.router_id, "name": "router1", "status": "ACTIVE", "admin_state_up": True,
                "tenant_id": pid, "project_id": pid, "distributed": False, "ha": False, "routes": [],
                "external_gateway_info": {"network_id": self.external_network_id, "enable_snat": True,
                                          "external_fixed_ips": [{"subnet_id": self.external_subnet_id,
                                                                  "ip_address": f"127.{self.world.floating_octet}.0.1"}]},
                "availability_zones": ["nova"], "description": "", "tags": [], "revision_number": 3,
                "created_at": iso(0), "updated_at": iso(0)}

    def _router_port_view(self) -> dict[str, Any]:
        pid = self.keystone.project_id
        return {"id": stable_id(self.world.name, "port", "router1", NETWORK_NAME), "name": "",
                "network_id": self.network_id, "tenant_id": pid, "project_id": pid,
                "mac_address": "fa:16:3e:ff:00:01", "admin_state_up": True, "status": "ACTIVE",
                "device_id": self.router_id, "device_owner": "network:router_interface",
                "fixed_ips": [{"subnet_id": self.subnet_id, "ip_address": "127.0.0.1"}],
                "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": [],
                "description": "", "binding:vnic_type": "normal", "port_security_enabled": False,
                "dns_name": "", "dns_assignment": [], "tags": [], "created_at": iso(0), "updated_at": iso(0),
                "revision_number": 1}

    def _port_id(self, vm: SVM) -> str:
        port_id = vm.extra.get("port_id")
        if port_id is None:
            port_id = vm.extra["port_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                           f"skyctl-sandbox/{self.world.name}/port/{vm.id}"))
        return str(port_id)

    def _has_port(self, vm: SVM) -> bool:
        # Nova binds the port while building; a server without a network or in ERROR has none.
        return not vm.deleted and not vm.error and vm.extra.get("network") is not None

    def _port_view(self, vm: SVM, now: float) -> dict[str, Any]:
        owner = self.keystone.owner(vm)
        shared = vm.extra.get("network") == SHARED_NETWORK_NAME
        return {"id": self._port_id(vm), "name": "",
                "network_id": self.shared_network_id if shared else self.network_id, "tenant_id": owner,
                "project_id": owner, "mac_address": vm.extra.get("mac", "fa:16:3e:00:00:01"),
                "admin_state_up": True, "status": "ACTIVE" if vm.booted(now) and not vm.stopped else "DOWN",
                "device_id": vm.id, "device_owner": "compute:nova",
                "fixed_ips": [{"subnet_id": self.shared_subnet_id if shared else self.subnet_id,
                               "ip_address": vm.address or "127.0.0.1"}],
                "allowed_address_pairs": [], "extra_dhcp_opts": [],
                "security_groups": list(vm.extra.get("security_group_ids") or ()),
                "description": "", "binding:vnic_type": "normal", "port_security_enabled": True,
                "dns_name": "", "dns_assignment": [], "tags": [], "created_at": iso(vm.created),
                "updated_at": iso(vm.created), "revision_number": 1}

    def _port_vm(self, req: Request, port_id: str) -> SVM | None:
        """The VM owning a port the caller may use, or None."""
        assert req.principal is not None
        with self.world.lock:
            for vm in self.world.vms.values():
                if self._has_port(vm) and self._port_id(vm) == port_id and self.keystone.visible(req, vm):
                    return vm
        return None

    def _floating_view(self, fip: SFloatingIP, now: float) -> dict[str, Any]:
        vm = self.world.get_vm(fip.vm_id) if fip.vm_id else None
        port = self._port_view(vm, now) if vm is not None else None
        return {"id": fip.id, "tenant_id": fip.project_id, "project_id": fip.project_id,
                "floating_ip_address": fip.address, "floating_network_id": self.external_network_id,
                "router_id": self.router_id if port else None, "port_id": port["id"] if port else None,
                "fixed_ip_address": port["fixed_ips"][0]["ip_address"] if port else None,
                "status": "ACTIVE" if port else "DOWN", "description": fip.description, "tags": [],
                "created_at": iso(fip.created), "updated_at": iso(fip.updated),
                "revision_number": fip.revision, "qos_policy_id": None, "dns_domain": "", "dns_name": "",
                "port_forwardings": [],
                "port_details": {k: port[k] for k in ("name", "network_id", "mac_address", "admin_state_up",
                                                      "status", "device_id", "device_owner")} if port else None}

    def _find_floating(self, req: Request, fip_id: str) -> SFloatingIP | None:
        assert req.principal is not None
        fip = self.world.floating_ips.get(fip_id)
        if fip is None or (fip.project_id != req.principal.project_id and not req.principal.is_admin):
            return None
        return fip

    def _floating_attach(self, req: Request, fip: SFloatingIP, port_id: Any) -> Reply | None:
        """Attach/detach per a request's `port_id`; an error reply, or None when done."""
        if port_id is None:
            self.world.attach_floating_ip(fip.id, None)
            return None
        if not isinstance(port_id, str):
            return _error(400, "HTTPBadRequest", f"Invalid input for port_id. Reason: '{port_id}' is "
                                                  f"not a valid UUID.")
        vm = self._port_vm(req, port_id)
        if vm is None:
            return _not_found("Port", port_id)
        try:
            self.world.attach_floating_ip(fip.id, vm.id)
        except FloatingIPError as e:
            if e.kind == "already_associated":
                return _error(409, "FloatingIPPortAlreadyAssociated",
                              f"Cannot associate floating IP {fip.address} ({fip.id}) with port {port_id} "
                              f"using fixed IP {vm.address or '127.0.0.1'}, as that fixed IP already has a "
                              f"floating IP on external network {self.external_network_id}.")
            return _not_found("Port", port_id)
        return None

    def _floatingips(self, req: Request, rest: list[str]) -> Reply:
        assert req.principal is not None
        m, now = req.method, time.time()
        if len(rest) == 1 and m == "GET":
            with self.world.lock:
                fips = [f for f in self.world.floating_ips.values()
                        if f.project_id == req.principal.project_id or req.principal.is_admin]
                views = [self._floating_view(f, now) for f in sorted(fips, key=lambda f: f.created)]
            return neutron_page(req, [v for v in views if _matches(v, req.query)], "floatingips",
                                lambda m: _not_found("Floating IP", m, kind="FloatingIP"), self.world.neutron_max_limit)
        if len(rest) == 1 and m == "POST":
            data = _json_or_none(req.body)
            body = data.get("floatingip") if isinstance(data, dict) else None
            if not isinstance(body, dict):
                return _error(400, "HTTPBadRequest", "Resource body required")
            unknown = sorted(set(body) - {"floating_network_id", "port_id", "fixed_ip_address", "description",
                                          "floating_ip_address", "subnet_id", "project_id", "tenant_id",
                                          "dns_domain", "dns_name", "qos_policy_id"})
            if unknown:
                return _error(400, "HTTPBadRequest", f"Unrecognized attribute(s) '{', '.join(unknown)}'")
            net = body.get("floating_network_id")
            if not net:
                return _error(400, "HTTPBadRequest", "Failed to parse request. Required attribute "
                                                      "'floating_network_id' not specified")
            if net == self.network_id:
                return _error(400, "BadRequest", f"Bad floatingip request: Network {net} is not a valid "
                                                 f"external network.")
            if net != self.external_network_id:
                return _not_found("Network", str(net))
            if body.get("floating_ip_address") is not None and not req.principal.is_admin:
                return _error(403, "PolicyNotAuthorized", "(rule:create_floatingip:floating_ip_address) "
                                                          "is disallowed by policy")
            project = req.principal.project_id
            vm = None
            if body.get("port_id") is not None:
                vm = self._port_vm(req, str(body["port_id"]))
                if vm is None:
                    return _not_found("Port", str(body["port_id"]))
            try:
                fip = self.world.allocate_floating_ip(project, description=str(body.get("description") or ""),
                                                      vm_id=vm.id if vm is not None else None)
            except QuotaError:
                return _error(409, "OverQuota", "Quota exceeded for resources: ['floatingip'].")
            except FloatingIPError as e:
                if e.kind == "exhausted":
                    return _error(409, "IpAddressGenerationFailure",
                                  f"No more IP addresses available on network {net}.")
                assert vm is not None
                return _error(409, "FloatingIPPortAlreadyAssociated",
                              f"Cannot associate floating IP with port {body['port_id']} using fixed IP "
                              f"{vm.address or '127.0.0.1'}, as that fixed IP already has a floating IP on "
                              f"external network {net}.")
            with self.world.lock:
                return Reply(201, {"floatingip": self._floating_view(fip, now)})
        if len(rest) == 2:
            fip = self._find_floating(req, rest[1])
            if fip is None:
                return _not_found("Floating IP", rest[1], kind="FloatingIP")
            if m == "GET":
                with self.world.lock:
                    return Reply(200, {"floatingip": self._floating_view(fip, now)})
            if m == "PUT":
                data = _json_or_none(req.body)
                body = data.get("floatingip") if isinstance(data, dict) else None
                if not isinstance(body, dict):
                    return _error(400, "HTTPBadRequest", "Resource body required")
                if "description" in body:
                    with self.world.lock:
                        fip.description = str(body["description"] or "")
                if "port_id" in body:
                    problem = self._floating_attach(req, fip, body["port_id"])
                    if problem is not None:
                        return problem
                with self.world.lock:
                    return Reply(200, {"floatingip": self._floating_view(fip, time.time())})
            if m == "DELETE":
                try:
                    self.world.release_floating_ip(fip.id)
                except FloatingIPError:
                    return _not_found("Floating IP", rest[1], kind="FloatingIP")
                return Reply(204)
        return _error(405, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")

    def _ports(self, req: Request, rest: list[str]) -> Reply:
        assert req.principal is not None
        now = time.time()
        if len(rest) == 2:
            vm = self._port_vm(req, rest[1])
            if vm is None:
                return _not_found("Port", rest[1])
            with self.world.lock:
                return Reply(200, {"port": self._port_view(vm, now)})
        # Cheap pre-filter on the usual query (ports of given servers) before building views.
        devices = set(req.query.get("device_id") or [])
        with self.world.lock:
            vms = [self.world.vms[d] for d in devices if d in self.world.vms] if devices \
                else list(self.world.vms.values())
            views = [self._port_view(vm, now) for vm in vms if self._has_port(vm) and self.keystone.visible(req, vm)]
            if self.world.tenant_network and not devices:
                views.append(self._router_port_view())
        return neutron_page(req, [v for v in views if _matches(v, req.query)], "ports",
                            lambda m: _not_found("Port", m), self.world.neutron_max_limit)


def _error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def _not_found(what: str, rid: str, *, kind: str | None = None) -> Reply:
    # Neutron's texts: "Port X could not be found." but "Floating IP X could not be found" (no dot).
    dot = "" if what == "Floating IP" else "."
    return _error(404, f"{kind or what}NotFound", f"{what} {rid} could not be found{dot}")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _matches(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    for k, vals in query.items():
        if k in ("fields", "limit", "marker", "sort_key", "sort_dir") or k not in obj:
            continue
        have = obj[k]
        if isinstance(have, bool):
            have = str(have)
        if not any(str(have).lower() == v.lower() if isinstance(obj[k], bool) else str(have) == v for v in vals):
            return False
    return True
