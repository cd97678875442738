"""What the driver asks Neutron before it creates servers: the network a server goes on (the
site's `network:`, or the documented choice when it names none) and the security group that
lets SSH in from the client (made once per site, then reused).

The choices are pure functions of Neutron's answers; `Neutron` does the few requests.
"""

from __future__ import annotations

import ipaddress
import threading
from urllib.parse import parse_qs, urlsplit
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from skyctl.errors import InvalidRequest
from skyctl_openstack.errors import error_for_status, error_message

if TYPE_CHECKING:  # pragma: no cover
    from skyctl_openstack.transport import Client

SSH_GROUP_PREFIX = "skyctl-ssh"


def neutron_get(api: Any, path: str, *, params: Mapping[str, Any] | None = None, ok: tuple[int, ...] = (),
                what: str = "") -> tuple[int, Any]:
    """A Neutron GET whose list follows the `next` links a paging Neutron sends (its
    pagination_max_limit pages every list, asked or not): the pages come back as one list."""
    status, body = api.request("network", "GET", path, params=dict(params) if params else None, ok=ok, what=what)
    if not isinstance(body, dict):
        return status, body
    merged = dict(body)
    page_body: Mapping[str, Any] = body
    while True:
        links_key = next((k for k in page_body if k.endswith("_links")), None)
        if links_key is None:
            break
        collection = links_key[:-len("_links")]
        href = next((str(link.get("href")) for link in page_body.get(links_key) or []
                     if link.get("rel") == "next" and link.get("href")), None)
        if href is None or not page_body.get(collection):
            break
        query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(urlsplit(href).query).items()}
        _, page_body = api.request("network", "GET", path, params={**(params or {}), **query}, what=what)
        page_body = page_body if isinstance(page_body, dict) else {}
        merged[collection] = list(merged.get(collection) or []) + list(page_body.get(collection) or [])
    return status, {k: v for k, v in merged.items() if not k.endswith("_links")}


def choose_network(networks: Sequence[Mapping[str, Any]], site: str) -> Mapping[str, Any] | None:
    """The network for a site whose `network:` is not set (the rule the README states): of the
    networks that are not external, the only one; else the only one not shared (the
    project's own). None when there is none (Nova's "auto" then decides). Anything else is
    refused, naming the candidates and the field to set."""
    usable = sorted((n for n in networks if not n.get("router:external")), key=lambda n: str(n.get("id")))
    if len(usable) <= 1:
        return usable[0] if usable else None
    own = [n for n in usable if not n.get("shared")]
    if len(own) == 1:
        return own[0]
    names = ", ".join(f"{n.get('name') or '(no name)'} ({n.get('id')})" for n in usable)
    raise InvalidRequest(f"{len(usable)} networks could take the nodes and {len(own) or 'none'} of them "
                         f"{'is' if len(own) == 1 else 'are'} the project's own: {names}; set sites.{site}.network "
                         f"to one of them (a name, an id, or a list for several NICs)", site=site, field="network")


def ssh_group_name(cidr: str, port: int) -> str:
    """The security group skyctl makes for SSH from `cidr` on `port`: one per site and rule."""
    return f"{SSH_GROUP_PREFIX}-{port}-{cidr}"


def ssh_rule(group_id: str, cidr: str, port: int) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr, strict=False)
    return {"security_group_id": group_id, "direction": "ingress",
            "ethertype": "IPv4" if network.version == 4 else "IPv6", "protocol": "tcp",
            "port_range_min": port, "port_range_max": port, "remote_ip_prefix": str(network),
            "description": "SSH for skyctl"}


def has_rule(group: Mapping[str, Any], rule: Mapping[str, Any]) -> bool:
    keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix")
    return any(all(r.get(k) == rule[k] for k in keys) for r in group.get("security_group_rules") or [])


class Neutron:
    """The driver's Neutron lookups for one site, each made once per driver."""

    def __init__(self, api: Any, site: str) -> None:
        self._api = api          # a callable returning the site's Client
        self.site = site
        self._lock = threading.Lock()
        self._networks: list[dict[str, Any]] | None = None
        self._ssh_groups: dict[tuple[str, int], str] = {}
        self._routed: set[str] | None = None

    def _client(self) -> Client:
        return self._api()   # type: ignore[no-any-return]

    def find_network(self, ref: str, field: str) -> dict[str, Any]:
        """One network by id, else by name."""
        api = self._client()
        _, body = neutron_get(api, "/networks", params={"id": ref}, what="networks")
        found = (body or {}).get("networks") or []
        if not found:
            _, body = neutron_get(api, "/networks", params={"name": ref}, what="networks")
            found = (body or {}).get("networks") or []
        if len(found) != 1:
            problem = "not found" if not found else f"ambiguous ({len(found)} networks have that name)"
            raise InvalidRequest(f"network {ref!r} {problem}", site=self.site, field=field)
        return dict(found[0])

    def networks(self, wanted: str | list[str] | None) -> Any:
        """Nova's `networks` for a server: the site's `network:` resolved to ids, or the choice."""
        if wanted in ("auto", "none"):
            return wanted
        with self._lock:
            if self._networks is None:
                if wanted is None:
                    _, body = neutron_get(self._client(), "/networks", what="networks")
                    chosen = choose_network((body or {}).get("networks") or [], self.site)
                    self._networks = [dict(chosen)] if chosen is not None else []
                else:
                    refs = [wanted] if isinstance(wanted, str) else list(wanted)
                    self._networks = [self.find_network(ref, "network") for ref in refs]
            if not self._networks:
                return "auto"
            return [{"uuid": str(n["id"])} for n in self._networks]

    def routed_networks(self) -> set[str]:
        """Networks the client reaches only through a floating IP: not external, and joined by a
        router to an external network (a tenant network behind NAT)."""
        with self._lock:
            if self._routed is not None:
                return self._routed
        # Asked without the lock (the network choice may be asked meanwhile); the same answer
        # whoever asks, so two callers at once only cost a second look.
        api = self._client()
        # 404: Neutron without the L3 service (provider networks only): no routers.
        status, body = neutron_get(api, "/routers", ok=(404,), what="routers")
        gateways = set() if status == 404 else {str(r["id"]) for r in (body or {}).get("routers") or []
                                                 if (r.get("external_gateway_info") or {}).get("network_id")}
        routed: set[str] = set()
        if gateways:
            _, body = neutron_get(api, "/ports", what="router ports",
                                  params={"device_owner": "network:router_interface"})
            routed = {str(p["network_id"]) for p in (body or {}).get("ports") or []
                      if str(p.get("device_id")) in gateways}
            _, body = neutron_get(api, "/networks", what="external networks", params={"router:external": "true"})
            routed -= {str(n["id"]) for n in (body or {}).get("networks") or [] if n.get("router:external")}
        with self._lock:
            self._routed = routed
            return self._routed

    def has_ssh_group(self, cidr: str, port: int) -> bool:
        """Whether skyctl's SSH group for `cidr`/`port` exists already (capacity: a launch that
        must make it needs one security group of quota)."""
        with self._lock:
            if (cidr, port) in self._ssh_groups:
                return True
        api = self._client()
        params: dict[str, Any] = {"name": ssh_group_name(cidr, port), "fields": "id"}
        _, body = neutron_get(api, "/security-groups", params=params, what="security groups")
        return bool((body or {}).get("security_groups"))

    def ssh_group(self, cidr: str, port: int) -> str:
        """The id of the project's group letting SSH in from `cidr` on `port`: found by name
        (the oldest if a race made two), else made; its rule added if it went missing."""
        key = (cidr, port)
        with self._lock:
            if key in self._ssh_groups:
                return self._ssh_groups[key]
            api = self._client()
            name = ssh_group_name(cidr, port)
            params: dict[str, Any] = {"name": name}
            project = api.project_id()
            if project:
                params["project_id"] = project
            _, body = neutron_get(api, "/security-groups", params=params, what="security groups")
            found = sorted((body or {}).get("security_groups") or [],
                           key=lambda g: (str(g.get("created_at") or ""), str(g.get("id"))))
            if found:
                group = found[0]
            else:
                _, body = api.request("network", "POST", "/security-groups", what=f"security group {name}",
                                      json={"security_group": {
                                          "name": name, "description": f"SSH from {cidr}, made by skyctl"}})
                group = (body or {}).get("security_group") or {}
            rule = ssh_rule(str(group["id"]), cidr, port)
            if not has_rule(group, rule):
                what = f"security group {name}"
                status, body = api.request("network", "POST", "/security-group-rules",
                                           json={"security_group_rule": rule}, ok=(409,), what=what)
                message = error_message(body)
                if status == 409 and "already exists" not in message:   # a quota, not a rule added meanwhile
                    raise error_for_status(409, message, self.site, what=what, service="network")
            self._ssh_groups[key] = str(group["id"])
            return self._ssh_groups[key]
