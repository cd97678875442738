"""Nova server groups for skyctl's groups on one site (site field `server_group`): one group
`skyctl-<group>` per skyctl group, made with the policy when its first node is created there,
deleted when a delete leaves it without members.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from skyctl_openstack import convert as cv


class ServerGroups:
    """The driver's server groups, found or made once per driver (one command)."""

    def __init__(self, compute: Callable[..., tuple[int, Any]]) -> None:
        self._compute = compute        # the driver's Nova call (method, path, **kwargs)
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}   # skyctl group -> Nova server group id

    def listed(self) -> list[dict[str, Any]]:
        _, body = self._compute("GET", "/os-server-groups", what="server groups")
        return list((body or {}).get("server_groups") or [])

    def ensure(self, group: str, policy: str) -> str:
        """The id of skyctl group `group`'s server group: found by its name, else made."""
        with self._lock:
            if group in self._ids:
                return self._ids[group]
            name = cv.server_group_name(group)
            found = [g for g in self.listed() if g.get("name") == name]
            if found:
                gid = str(found[0]["id"])
            else:
                _, body = self._compute("POST", "/os-server-groups", what=f"server group {name}",
                                        json={"server_group": {"name": name, "policies": [policy]}})
                gid = str(((body or {}).get("server_group") or {})["id"])
            self._ids[group] = gid
            return gid

    def drop_empty(self, deleted: Sequence[str]) -> None:
        """Delete skyctl's server groups left with no member but the servers just deleted."""
        gone = set(deleted)
        for g in self.listed():
            if cv.server_group_owner(g) is None or set(g.get("members") or ()) - gone:
                continue
            self._compute("DELETE", f"/os-server-groups/{g['id']}", ok=(404,), what=f"server group {g.get('name')}")
            with self._lock:
                for k in [k for k, v in self._ids.items() if v == g["id"]]:
                    del self._ids[k]
