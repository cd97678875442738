"""Nova's quotas imitated: `/limits` and `/os-quota-sets/{project}` (show, defaults, detail,
update, delete). The member project's instances, cores, RAM and key pairs are the world's own
quota, so the rest of the sandbox sees what an admin sets; other projects keep their numbers here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from skyctl.sandbox.openstack.http import Reply, Request, nova_error, short
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.openstack.servergroups import ServerGroups
from skyctl.sandbox.world import Quota, SiteWorld

_BASE_QUOTA_KEYS = ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups",
                    "server_group_members")
_OLD_QUOTA_KEYS = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")  # < 2.57
_NET_QUOTA_KEYS = ("floating_ips", "fixed_ips", "security_groups", "security_group_rules")      # < 2.36
# The Nova quotas the member project's world keeps, by their attribute on `world.Quota`.
_WORLD_QUOTA_FIELDS = {"instances": "instances", "cores": "cores", "ram": "ram_mib", "key_pairs": "key_pairs"}
QUOTA_DEFAULTS = {"key_pairs": 100, "metadata_items": 128, "server_groups": 10, "server_group_members": 10,
                  "injected_files": 5, "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
                  "floating_ips": -1, "fixed_ips": -1, "security_groups": -1, "security_group_rules": -1}


class Quotas:
    """Nova's limits and quota sets for one site's projects."""

    def __init__(self, world: SiteWorld, keystone: Keystone, server_groups: ServerGroups | None = None) -> None:
        self.world = world
        self.keystone = keystone
        self.server_groups = server_groups
        # The spec's numbers are the member project's defaults: what deleting its quota set goes back to.
        self._default_quota = replace(world.quota)
        self._other_quotas: dict[str, dict[str, int]] = {}

    def limits(self, req: Request) -> Reply:
        q = self.world.quota
        with self.world.lock:
            n, cores, ram = self.world.usage()
        absolute: dict[str, Any] = {
            "maxTotalInstances": q.instances, "totalInstancesUsed": n,
            "maxTotalCores": q.cores, "totalCoresUsed": cores,
            "maxTotalRAMSize": q.ram_mib, "totalRAMUsed": ram,
            "maxServerMeta": 128, "maxTotalKeypairs": 100, "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalServerGroupsUsed": self.server_groups.count(req.principal.project_id)
            if self.server_groups is not None and req.principal is not None else 0,
        }
        if not req.mv(2, 57):
            absolute.update({"maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240})
        if not req.mv(2, 36):
            absolute.update({"maxSecurityGroups": -1, "maxSecurityGroupRules": -1, "maxTotalFloatingIps": -1,
                             "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0})
        return Reply(200, {"limits": {"rate": [], "absolute": absolute}})

    def _quota_values(self, project_id: str) -> dict[str, int]:
        if project_id == self.keystone.project_id:
            base = _world_quota(self.world.quota)
        else:
            base = dict(self._other_quotas.get(project_id, {}))
            base.setdefault("instances", 10)
            base.setdefault("cores", 20)
            base.setdefault("ram", 51200)
        out = dict(QUOTA_DEFAULTS)
        out.update(base)
        return out

    def _quota_keys(self, req: Request) -> tuple[str, ...]:
        keys = _BASE_QUOTA_KEYS
        if not req.mv(2, 57):
            keys += _OLD_QUOTA_KEYS
        if not req.mv(2, 36):
            keys += _NET_QUOTA_KEYS
        return keys

    def quota_sets(self, req: Request, project_id: str, rest: list[str]) -> Reply:
        who = req.principal
        assert who is not None
        m = req.method
        if not who.is_admin and project_id != who.project_id:
            action = {"GET": "show", "PUT": "update", "DELETE": "delete"}.get(m, "show")
            raise nova_error(403, f"Policy doesn't allow os_compute_api:os-quota-sets:{action} to be performed.")
        keys = self._quota_keys(req)
        with self.world.lock:
            if m == "GET":
                values = self._quota_values(project_id)
                if rest == ["defaults"]:
                    values = dict(QUOTA_DEFAULTS, instances=10, cores=20, ram=51200)
                    if project_id == self.keystone.project_id:
                        values.update(_world_quota(self._default_quota))
                elif rest == ["detail"]:
                    n, cores, ram = self.world.usage() if project_id == self.keystone.project_id else (0, 0, 0)
                    used = {"instances": n, "cores": cores, "ram": ram}
                    return Reply(200, {"quota_set": {"id": project_id, **{
                        k: {"limit": values[k], "in_use": used.get(k, 0), "reserved": 0} for k in keys}}})
                elif rest:
                    raise nova_error(404, "The resource could not be found.")
                return Reply(200, {"quota_set": {"id": project_id, **{k: values[k] for k in keys}}})
            if rest:
                raise nova_error(404, "The resource could not be found.")
            if not who.is_admin:
                action = "update" if m == "PUT" else "delete"
                raise nova_error(403, f"Policy doesn't allow os_compute_api:os-quota-sets:{action} "
                                      "to be performed.")
            if m == "DELETE":
                if project_id == self.keystone.project_id:
                    _set_world_quota(self.world.quota, _world_quota(self._default_quota))
                else:
                    self._other_quotas.pop(project_id, None)
                return Reply(202)
            if m == "PUT":
                data = req.json()
                qs = data.get("quota_set") if isinstance(data, dict) else None
                if not isinstance(qs, dict):
                    raise nova_error(400, "Invalid input for field/attribute quota_set. Value: None. "
                                          "'quota_set' is a required property")
                force = str(qs.pop("force", "")).lower() in ("true", "1", "yes")
                bad = sorted(set(qs) - set(keys))
                if bad:
                    raise nova_error(400, "Invalid input for field/attribute quota_set. Value: %s. Additional "
                                          "properties are not allowed (%s was unexpected)"
                                     % (short(qs), ", ".join(repr(b) for b in bad)))
                new: dict[str, int] = {}
                for k, v in qs.items():
                    try:
                        iv = int(v)
                    except (TypeError, ValueError):
                        raise nova_error(400, f"Invalid input for field/attribute {k}. Value: {v}. "
                                              f"'{v}' does not match any of the regexes") from None
                    if iv < -1:
                        raise nova_error(400, f"Invalid input for field/attribute {k}. Value: {v}. "
                                              f"{v} is less than the minimum of -1")
                    new[k] = iv
                if project_id == self.keystone.project_id and not force:
                    n, cores, ram = self.world.usage()
                    for k, used in (("instances", n), ("cores", cores), ("ram", ram)):
                        if k in new and new[k] != -1 and new[k] < used:
                            raise nova_error(400, f"Quota limit {new[k]} for {k} must be greater than or "
                                                  f"equal to already used and reserved {used}.")
                if project_id == self.keystone.project_id:
                    _set_world_quota(self.world.quota, new)
                else:
                    self._other_quotas.setdefault(project_id, {}).update(new)
                values = self._quota_values(project_id)
                return Reply(200, {"quota_set": {k: values[k] for k in keys}})
        raise nova_error(404, "The resource could not be found.")


def _world_quota(q: Quota) -> dict[str, int]:
    return {key: getattr(q, attr) for key, attr in _WORLD_QUOTA_FIELDS.items()}


def _set_world_quota(q: Quota, values: dict[str, int]) -> None:
    """Set those of `values` that the world keeps (the rest are other projects' or fixed)."""
    for key, attr in _WORLD_QUOTA_FIELDS.items():
        if key in values:
            setattr(q, attr, values[key])
