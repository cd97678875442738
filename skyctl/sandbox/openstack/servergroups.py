"""Nova's server groups imitated (`/os-server-groups`): create (policies before 2.64, policy from
it), list, show, delete; members join through the `group` scheduler hint when a server is
created and leave when it is deleted (a view shows only servers still there, as Nova's does).

The texts (nova/api/openstack/compute/server_groups.py and nova/exception.py, HEAD of
openstack/nova): "Quota exceeded, too many server groups." (403, create), InstanceGroupNotFound
"Instance group %(group_uuid)s could not be found." (404 on show/delete, 400 as a create's
hint), "Quota exceeded, too many servers in group" (403, nova/compute/api.py when the group's
members quota is used up), "Only anti-affinity policy supports rules." (400).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from skyctl.sandbox.openstack.http import Reply, Request, nova_error, short
from skyctl.sandbox.world import SiteWorld

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
GROUPS_QUOTA = 10           # Nova's server_groups default
MEMBERS_QUOTA = 10          # and server_group_members


@dataclass
class SGroup:
    id: str
    name: str
    policy: str
    project_id: str
    user_id: str
    members: list[str] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)


class ServerGroups:
    """Every project's server groups on one site."""

    def __init__(self, world: SiteWorld) -> None:
        self.world = world
        self.groups: dict[str, SGroup] = {}
        self._lock = threading.Lock()

    def count(self, project_id: str) -> int:
        with self._lock:
            return sum(1 for g in self.groups.values() if g.project_id == project_id)

    def live_members(self, group: SGroup) -> list[str]:
        return [m for m in group.members if self.world.get_vm(m) is not None]

    def join(self, req: Request, group_id: str, vm_ids: list[str]) -> None:
        with self._lock:
            group = self.groups.get(group_id)
            if group is not None:
                group.members.extend(vm_ids)

    def check_hint(self, req: Request, hints: Any, count: int) -> str | None:
        """The group a create's scheduler hints name (checked as Nova does), or None."""
        if not isinstance(hints, dict) or "group" not in hints:
            return None
        assert req.principal is not None
        group_id = str(hints["group"])
        with self._lock:
            group = self.groups.get(group_id)
            if group is None or (group.project_id != req.principal.project_id and not req.principal.is_admin):
                raise nova_error(400, f"Instance group {group_id} could not be found.")
            if len(self.live_members(group)) + count > MEMBERS_QUOTA:
                raise nova_error(403, "Quota exceeded, too many servers in group")
        return group_id

    def route(self, req: Request, rest: list[str]) -> Reply:
        assert req.principal is not None
        m = req.method
        if not rest and m == "GET":
            with self._lock:
                mine = [g for g in self.groups.values() if g.project_id == req.principal.project_id
                        or (req.principal.is_admin and req.q("all_projects") not in (None, "0", "false"))]
                return Reply(200, {"server_groups": [self._view(req, g) for g in mine]})
        if not rest and m == "POST":
            return self._create(req)
        if len(rest) == 1:
            with self._lock:
                group = self.groups.get(rest[0])
                if group is None or (group.project_id != req.principal.project_id and not req.principal.is_admin):
                    raise nova_error(404, f"Instance group {rest[0]} could not be found.")
                if m == "GET":
                    return Reply(200, {"server_group": self._view(req, group)})
                if m == "DELETE":
                    del self.groups[group.id]
                    return Reply(204)
        raise nova_error(404, "The resource could not be found.")

    def _view(self, req: Request, g: SGroup) -> dict[str, Any]:
        body: dict[str, Any] = {"id": g.id, "name": g.name, "members": self.live_members(g)}
        if req.mv(2, 64):
            body.update({"policy": g.policy, "rules": dict(g.rules)})
        else:
            body.update({"policies": [g.policy], "metadata": {}})
        if req.mv(2, 13):
            body.update({"project_id": g.project_id, "user_id": g.user_id})
        return body

    def _create(self, req: Request) -> Reply:
        assert req.principal is not None
        data = req.json()
        vals = data.get("server_group") if isinstance(data, dict) else None
        if not isinstance(vals, dict) or not isinstance(vals.get("name"), str) or not vals["name"]:
            raise nova_error(400, f"Invalid input for field/attribute server_group. Value: {short(vals)}. "
                                  "'name' is a required property")
        allowed = POLICIES if req.mv(2, 15) else POLICIES[:2]
        if req.mv(2, 64):
            policy = vals.get("policy")
            field_name = "policy"
        else:
            policies = vals.get("policies")
            policy = policies[0] if isinstance(policies, list) and len(policies) == 1 else None
            field_name = "policies"
        if policy not in allowed:
            raise nova_error(400, f"Invalid input for field/attribute {field_name}. Value: "
                                  f"{short(vals.get(field_name))}. {short(vals.get(field_name))} is not valid under "
                                  f"any of the given schemas")
        rules = vals.get("rules") or {}
        if rules and policy != "anti-affinity":
            raise nova_error(400, "Only anti-affinity policy supports rules.")
        with self._lock:
            if sum(1 for g in self.groups.values() if g.project_id == req.principal.project_id) >= GROUPS_QUOTA:
                raise nova_error(403, "Quota exceeded, too many server groups.")
            group = SGroup(str(uuid.uuid4()), vals["name"], str(policy), req.principal.project_id,
                           req.principal.user_id, rules=dict(rules))
            self.groups[group.id] = group
            return Reply(200, {"server_group": self._view(req, group)})
