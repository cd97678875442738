"""Neutron's security groups imitated (`/security-groups`, `/security-group-rules`): each project
gets a `default` group that lets nothing in from outside (ingress only from its own members,
egress open), as Neutron makes it; groups and rules are created and deleted with Neutron's
shapes, texts and quotas. `admits` is what the sandbox's guests ask before they answer an SSH
connection: the VM's groups must let the client's address in on the SSH port.

Where the refusals come from: SecurityGroupNotFound, SecurityGroupInUse,
SecurityGroupRuleNotFound and SecurityGroupRuleParameterConflict are Neutron's own exception
texts (neutron/extensions/securitygroup.py); OverQuota is neutron_lib/exceptions/__init__.py
("Quota exceeded for resources: ..."); the "Invalid input for X. Reason: ..." 400s are the
API's attribute validation (neutron_lib/api/attributes.py and validators).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from skyctl.sandbox.openstack.http import Reply, Request, iso, neutron_page, stable_id
from skyctl.sandbox.world import SVM, SiteWorld

DEFAULT_SG = "default"
SG_QUOTA = 10          # Neutron's default security_group quota
RULE_QUOTA = 100       # and security_group_rule
SSH_PORT = 22          # a guest listens on the sandbox's SSH port in place of 22: a rule for either opens it
_PROTOCOLS = {"tcp", "udp", "icmp", "ipv6-icmp", "6", "17", "1", "any", None}
_RULE_KEYS = {"security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
              "remote_ip_prefix", "remote_group_id", "remote_address_group_id", "description", "project_id",
              "tenant_id"}


@dataclass
class SRule:
    id: str
    group_id: str
    project_id: str
    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    description: str = ""
    created: float = field(default_factory=time.time)

    def identity(self) -> tuple[Any, ...]:
        return (self.group_id, self.direction, self.ethertype, self.protocol, self.port_min, self.port_max,
                self.remote_ip_prefix, self.remote_group_id)


@dataclass
class SGroup:
    id: str
    name: str
    project_id: str
    description: str = ""
    created: float = field(default_factory=time.time)
    revision: int = 1       # Neutron's revision_number: bumped by every change
    updated: float = field(default_factory=time.time)


class SecurityGroups:
    """The security groups and rules of one site, every project's."""

    def __init__(self, world: SiteWorld) -> None:
        self.world = world
        self.groups: dict[str, SGroup] = {}
        self.rules: dict[str, SRule] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------ what Nova and the guests ask
    def default_group(self, project_id: str) -> SGroup:
        """The project's `default` group, made (with Neutron's four rules) on first use."""
        gid = stable_id(self.world.name, "sg", project_id, DEFAULT_SG)
        with self._lock:
            group = self.groups.get(gid)
            if group is None:
                group = self.groups[gid] = SGroup(gid, DEFAULT_SG, project_id, "Default security group", 0.0)
                for ethertype in ("IPv4", "IPv6"):
                    self._add_rule(SRule(str(uuid.uuid4()), gid, project_id, "egress", ethertype))
                    self._add_rule(SRule(str(uuid.uuid4()), gid, project_id, "ingress", ethertype,
                                         remote_group_id=gid))
            return group

    def resolve(self, project_id: str, ref: str) -> list[SGroup]:
        """The project's groups a name or id stands for (Nova's lookup at server create)."""
        self.default_group(project_id)
        with self._lock:
            if ref in self.groups and self.groups[ref].project_id == project_id:
                return [self.groups[ref]]
            return sorted((g for g in self.groups.values() if g.project_id == project_id and g.name == ref),
                          key=lambda g: (g.created, g.id))

    def admits(self, vm: SVM, peer: str, port: int) -> bool:
        """Whether the VM's groups let `peer` (not a VM: a client outside) in on SSH."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        ethertype = "IPv4" if address.version == 4 else "IPv6"
        group_ids = set(vm.extra.get("security_group_ids") or ())
        with self._lock:
            for rule in self.rules.values():
                if rule.group_id not in group_ids or rule.direction != "ingress" or rule.ethertype != ethertype:
                    continue
                if rule.remote_group_id is not None:
                    continue   # members of a group: other VMs, never the client
                if rule.protocol not in (None, "any", "tcp", "6"):
                    continue
                if rule.port_min is not None and not any(
                        rule.port_min <= p <= (rule.port_max or rule.port_min) for p in (SSH_PORT, port)):
                    continue
                if rule.remote_ip_prefix and address not in ipaddress.ip_network(rule.remote_ip_prefix,
                                                                                  strict=False):
                    continue
                return True
        return False

    # ------------------------------------------------------------ the API
    def route(self, req: Request, coll: str, rest: list[str]) -> Reply:
        assert req.principal is not None
        self.default_group(req.principal.project_id)
        if coll == "security-groups":
            return self._groups(req, rest)
        return self._rules(req, rest)

    def _visible(self, req: Request, project_id: str) -> bool:
        assert req.principal is not None
        return req.principal.is_admin or project_id == req.principal.project_id

    def _group_view(self, g: SGroup) -> dict[str, Any]:
        rules = [self._rule_view(r) for r in sorted(self.rules.values(), key=lambda r: r.created)
                 if r.group_id == g.id]
        return {"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
                "project_id": g.project_id, "stateful": True, "shared": False, "security_group_rules": rules,
                "tags": [], "created_at": iso(g.created), "updated_at": iso(g.updated), "revision_number": g.revision}

    def _rule_view(self, r: SRule) -> dict[str, Any]:
        return {"id": r.id, "tenant_id": r.project_id, "project_id": r.project_id, "security_group_id": r.group_id,
                "direction": r.direction, "ethertype": r.ethertype, "protocol": r.protocol,
                "port_range_min": r.port_min, "port_range_max": r.port_max,
                "remote_ip_prefix": r.remote_ip_prefix, "normalized_cidr": r.remote_ip_prefix,
                "remote_group_id": r.remote_group_id, "remote_address_group_id": None,
                "description": r.description, "tags": [], "created_at": iso(r.created),
                "updated_at": iso(r.created), "revision_number": 0,
                "belongs_to_default_sg": self.groups[r.group_id].name == DEFAULT_SG}

    def _groups(self, req: Request, rest: list[str]) -> Reply:
        assert req.principal is not None
        project = req.principal.project_id
        with self._lock:
            if len(rest) == 1 and req.method == "GET":
                views = [self._group_view(g) for g in sorted(self.groups.values(), key=lambda g: (g.created, g.id))
                         if self._visible(req, g.project_id)]
                return neutron_page(req, [v for v in views if matches(v, req.query)], "security_groups",
                                    lambda m: error(404, "SecurityGroupNotFound", f"Security group {m} does not exist"),
                                    self.world.neutron_max_limit)
            if len(rest) == 1 and req.method == "POST":
                body = _body(req, "security_group")
                if body is None:
                    return error(400, "HTTPBadRequest", "Resource body required")
                name = body.get("name", "")
                if not isinstance(name, str) or len(name) > 255:
                    return error(400, "HTTPBadRequest", f"Invalid input for name. Reason: '{name}' is not a valid "
                                                        f"string.")
                if name == DEFAULT_SG:
                    return error(409, "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
                if sum(1 for g in self.groups.values() if g.project_id == project) >= SG_QUOTA:
                    return error(409, "OverQuota", "Quota exceeded for resources: ['security_group'].")
                group = SGroup(str(uuid.uuid4()), name, project, str(body.get("description") or ""))
                self.groups[group.id] = group
                for ethertype in ("IPv4", "IPv6"):   # a new group lets everything out
                    self._add_rule(SRule(str(uuid.uuid4()), group.id, project, "egress", ethertype))
                return Reply(201, {"security_group": self._group_view(group)})
            if len(rest) == 2:
                group = self.groups.get(rest[1])
                if group is None or not self._visible(req, group.project_id):
                    return error(404, "SecurityGroupNotFound", f"Security group {rest[1]} does not exist")
                if req.method == "GET":
                    return Reply(200, {"security_group": self._group_view(group)})
                if req.method == "PUT":
                    return self._update_group(req, group)
                if req.method == "DELETE":
                    if group.name == DEFAULT_SG:
                        return error(409, "SecurityGroupCannotRemoveDefault",
                                     "Insufficient rights for removing default security group.")
                    if any(group.id in (vm.extra.get("security_group_ids") or ()) for vm in self.world.live_vms()):
                        return error(409, "SecurityGroupInUse", f"Security Group {group.id} in use.")
                    del self.groups[group.id]
                    for rid in [r.id for r in self.rules.values() if r.group_id == group.id]:
                        del self.rules[rid]
                    return Reply(204)
        return error(405, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")

    def _update_group(self, req: Request, group: SGroup) -> Reply:
        """PUT /v2.0/security-groups/{id}: name and description; with `If-Match:
        revision_number=N` it is a compare-and-swap, refused with 412 when the group changed
        since revision N (neutron/services/revisions/revision_plugin.py,
        RevisionNumberConstraintFailed; the header is parsed in neutron/api/v2/base.py)."""
        body = _body(req, "security_group")
        if body is None:
            return error(400, "HTTPBadRequest", "Resource body required")
        wanted = req.headers.get("If-Match") if req.headers is not None else None
        if wanted:
            key, _, value = str(wanted).partition("=")
            if key.strip() != "revision_number" or not value.strip().isdigit():
                return error(400, "HTTPBadRequest", "If-Match header must be in the format "
                                                    "'revision_number=<int>'")
            if int(value) != group.revision:
                return error(412, "RevisionNumberConstraintFailed",
                             f"Constrained to {int(value)}, but current revision is {group.revision}")
        for key in ("name", "description"):
            if key in body:
                value = body[key]
                if not isinstance(value, str) or len(value) > 255:
                    return error(400, "HTTPBadRequest", f"Invalid input for {key}. Reason: '{value}' is not a "
                                                        f"valid string.")
                if key == "name" and group.name == DEFAULT_SG and value != DEFAULT_SG:
                    return error(409, "SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
                setattr(group, key, value)
        group.revision += 1
        group.updated = time.time()
        return Reply(200, {"security_group": self._group_view(group)})

    def _rules(self, req: Request, rest: list[str]) -> Reply:
        assert req.principal is not None
        with self._lock:
            if len(rest) == 1 and req.method == "GET":
                views = [self._rule_view(r) for r in sorted(self.rules.values(), key=lambda r: r.created)
                         if self._visible(req, r.project_id)]
                return Reply(200, {"security_group_rules": [v for v in views if matches(v, req.query)]})
            if len(rest) == 1 and req.method == "POST":
                body = _body(req, "security_group_rule")
                if body is None:
                    return error(400, "HTTPBadRequest", "Resource body required")
                return self._create_rule(req, body)
            if len(rest) == 2:
                rule = self.rules.get(rest[1])
                if rule is None or not self._visible(req, rule.project_id):
                    return error(404, "SecurityGroupRuleNotFound", f"Security group rule {rest[1]} does not exist")
                if req.method == "GET":
                    return Reply(200, {"security_group_rule": self._rule_view(rule)})
                if req.method == "DELETE":
                    del self.rules[rule.id]
                    return Reply(204)
        return error(405, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")

    def _create_rule(self, req: Request, body: dict[str, Any]) -> Reply:
        assert req.principal is not None
        unknown = sorted(set(body) - _RULE_KEYS)
        if unknown:
            return error(400, "HTTPBadRequest", f"Unrecognized attribute(s) '{', '.join(unknown)}'")
        group = self.groups.get(str(body.get("security_group_id") or ""))
        if group is None or not self._visible(req, group.project_id):
            return error(404, "SecurityGroupNotFound",
                         f"Security group {body.get('security_group_id')} does not exist")
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            return error(400, "HTTPBadRequest", f"Invalid input for direction. Reason: {direction} is not in "
                                                "valid_values.")
        ethertype = body.get("ethertype", "IPv4")
        if ethertype not in ("IPv4", "IPv6"):
            return error(400, "HTTPBadRequest", f"Invalid input for ethertype. Reason: {ethertype} is not in "
                                                "valid_values.")
        protocol = body.get("protocol")
        if protocol not in _PROTOCOLS:
            return error(400, "SecurityGroupRuleInvalidProtocol",
                         f"Security group rule protocol {protocol} not supported. Only protocol values "
                         f"[None, 'tcp', 'udp', 'icmp', 'icmpv6'] and integer representations [0 to 255] "
                         f"are supported.")
        port_min, port_max = body.get("port_range_min"), body.get("port_range_max")
        if (port_min is not None or port_max is not None) and protocol not in ("tcp", "udp", "6", "17"):
            return error(400, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range "
                                                                        "is given.")
        try:
            port_min = None if port_min is None else int(port_min)
            port_max = None if port_max is None else int(port_max)
        except (TypeError, ValueError):
            return error(400, "HTTPBadRequest", "Invalid input for port_range_min. Reason: not an integer.")
        if port_min is not None and port_max is not None and port_min > port_max:
            return error(400, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be "
                                                               "<= port_range_max")
        prefix = body.get("remote_ip_prefix")
        if prefix is not None:
            try:
                network = ipaddress.ip_network(str(prefix), strict=False)
            except ValueError:
                return error(400, "HTTPBadRequest", f"Invalid input for remote_ip_prefix. Reason: '{prefix}' is "
                                                    f"not a valid IP subnet.")
            if ("IPv4" if network.version == 4 else "IPv6") != ethertype:
                return error(400, "SecurityGroupRuleParameterConflict",
                             f"Conflicting value ethertype {ethertype} for CIDR {prefix}")
            prefix = str(network)
        if prefix is not None and body.get("remote_group_id") is not None:
            return error(400, "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                         "Only remote_ip_prefix or remote_group_id may be provided.")
        if sum(1 for r in self.rules.values() if r.project_id == group.project_id) >= RULE_QUOTA:
            return error(409, "OverQuota", "Quota exceeded for resources: ['security_group_rule'].")
        rule = SRule(str(uuid.uuid4()), group.id, group.project_id, direction, ethertype, protocol, port_min,
                     port_max, prefix, body.get("remote_group_id"), str(body.get("description") or ""))
        same = next((r for r in self.rules.values() if r.identity() == rule.identity()), None)
        if same is not None:
            return error(409, "SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {same.id}.")
        self._add_rule(rule)
        return Reply(201, {"security_group_rule": self._rule_view(rule)})

    def _add_rule(self, rule: SRule) -> None:
        self.rules[rule.id] = rule


def _body(req: Request, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(req.body) if req.body else None
    except ValueError:
        return None
    body = data.get(key) if isinstance(data, dict) else None
    return body if isinstance(body, dict) else None


def error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def matches(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """Neutron's list filters: each given field must equal one of the values asked for."""
    for k, vals in query.items():
        if k in ("fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse") or k not in obj:
            continue
        have = obj[k]
        if isinstance(have, bool):
            if not any(str(have).lower() == v.lower() for v in vals):
                return False
        elif not any(str(have) == v for v in vals):
            return False
    return True
