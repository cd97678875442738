"""An OpenStack-compatible HTTP front-end for one sandbox `SiteWorld`.

One port serves Keystone v3 (`/identity`), Nova v2.1 (`/compute`), Glance v2 (`/image`) and
Neutron v2.0 (`/network`), answering what openstacksdk/keystoneauth send for everything skyctl
does, with the bodies, status codes and error texts real services use (facts measured on a
real Nova Zed: quota 403 text, tag filters on the server side, `networks` required from 2.37,
flavor embedded from 2.47, tags at create from 2.52...).

Design: the standard library's threading HTTP server speaking HTTP/1.1 with keep-alive; each
response goes out in one write (no Nagle stalls); lifecycle (BUILD -> ACTIVE) is computed from
timestamps when a server is shown, so no timer threads per VM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from skyctl.sandbox.serving import KeepAliveServer
from skyctl.sandbox.world import FloatingIPError, NoHostError, Quota, QuotaError, SFloatingIP, SiteWorld, SVM

MIN_MICROVERSION = (2, 1)
MAX_MICROVERSION = (2, 93)        # Nova Zed, the release the reference control plane runs
MAX_LIMIT = 1000                  # Nova's osapi max_limit default
TOKEN_TTL = 3600.0
KEYSTONE_VERSION = "v3.14"
NETWORK_NAME = "private"
EXTERNAL_NETWORK_NAME = "public"     # router:external, where floating IPs come from
DEFAULT_SG = "default"
_STATUSES = {"ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
             "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
             "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE"}
_BASE_QUOTA_KEYS = ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups",
                    "server_group_members")
_OLD_QUOTA_KEYS = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")  # < 2.57
_NET_QUOTA_KEYS = ("floating_ips", "fixed_ips", "security_groups", "security_group_rules")      # < 2.36
# The Nova quotas the member project's world keeps, by their attribute on `world.Quota`.
_WORLD_QUOTA_FIELDS = {"instances": "instances", "cores": "cores", "ram": "ram_mib", "key_pairs": "key_pairs"}
_QUOTA_DEFAULTS = {"key_pairs": 100, "metadata_items": 128, "server_groups": 10, "server_group_members": 10,
                   "injected_files": 5, "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
                   "floating_ips": -1, "fixed_ips": -1, "security_groups": -1, "security_group_rules": -1}
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


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _iso_us(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def _stable_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "skyctl-sandbox/" + "/".join(parts)).hex


class HttpError(Exception):
    """An error answer. `key` is the body's top-level key (Nova style) or None (Keystone)."""

    def __init__(self, status: int, message: str, key: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.key = key
        self.headers = headers or {}


_NOVA_KEYS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest",
              406: "notAcceptable", 413: "overLimit", 500: "computeFault"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def nova_error(status: int, message: str) -> HttpError:
    return HttpError(status, message, _NOVA_KEYS.get(status, "computeFault"))


@dataclass
class _Reply:
    status: int
    body: Any = None                 # dict/list -> JSON; bytes -> as is; None -> empty
    headers: dict[str, str] | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class _Principal:
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    principal: _Principal | None = None
    microversion: tuple[int, int] = MIN_MICROVERSION

    def json(self) -> Any:
        if not self.body:
            raise HttpError(400, "Malformed request body", _NOVA_KEYS[400])
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, "Malformed request body", _NOVA_KEYS[400]) from None

    def q(self, name: str) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else None

    def mv(self, major: int, minor: int) -> bool:
        return self.microversion >= (major, minor)


class OpenStackFront:
    """Keystone + Nova + Glance + Neutron for one `SiteWorld`, on one loopback port."""

    def __init__(self, world: SiteWorld, *, host: str = "127.0.0.1", port: int = 0,
                 username: str = "demo", password: str | None = None, project: str = "demo",
                 region: str = "RegionOne", admin_username: str = "admin",
                 admin_password: str | None = None, admin_project: str = "admin") -> None:
        self.world = world
        self.host = host
        self.port = port
        self.region = region
        self.username = username
        self.project = project
        self.admin_username = admin_username
        # Not guessable unless given: tests and the sandbox runtime read them from here.
        self.password = password or secrets.token_urlsafe(16)
        self.admin_password = admin_password or secrets.token_urlsafe(16)
        self._users = {
            username: (self.password, _stable_id(world.name, "user", username), project, ("member", "reader")),
            admin_username: (self.admin_password, _stable_id(world.name, "user", admin_username), admin_project,
                             ("admin", "member", "reader")),
        }
        self.projects = {project: _stable_id(world.name, "project", project),
                         admin_project: _stable_id(world.name, "project", admin_project)}
        self.project_id = self.projects[project]
        self.domain = {"id": "default", "name": "Default"}
        self._tokens: dict[str, tuple[_Principal, float, float]] = {}   # token -> (who, issued, expires)
        self._token_lock = threading.Lock()
        # The world's quota is the member project's; other projects keep their own numbers. The
        # spec's numbers are its defaults: what deleting its quota set goes back to.
        self._default_quota = replace(world.quota)
        self._other_quotas: dict[str, dict[str, int]] = {}
        self.network_id = _stable_id(world.name, "network", NETWORK_NAME)
        self.subnet_id = _stable_id(world.name, "subnet", NETWORK_NAME)
        self.external_network_id = _stable_id(world.name, "network", EXTERNAL_NETWORK_NAME)
        self.external_subnet_id = _stable_id(world.name, "subnet", EXTERNAL_NETWORK_NAME)
        self.router_id = _stable_id(world.name, "router", "router1")
        self.security_groups = {DEFAULT_SG: _stable_id(world.name, "sg", DEFAULT_SG)}
        self._httpd: _Server | None = None
        self._mac_counter = itertools.count(1)
        # server id -> {(microversion, admin, detail): (what it showed, JSON bytes)}
        self._views: dict[str, dict[tuple[Any, ...], tuple[tuple[Any, ...], bytes]]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    def start(self) -> None:
        if self._httpd is not None:
            return
        httpd = _Server((self.host, self.port), _Handler)
        httpd.front = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        httpd.serve_in_thread(f"openstack-{self.world.name}", poll_interval=0.2)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop_serving()

    def __enter__(self) -> OpenStackFront:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ dispatch
    def handle(self, req: _Request) -> _Reply:
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return _Reply(300, {"versions": {"values": [self._identity_version()]}})
        service, rest = parts[0], parts[1:]
        if service == "identity":
            return self._identity(req, rest)
        if service == "compute":
            return self._compute(req, rest)
        if service == "image":
            return self._image(req, rest)
        if service == "network":
            return self._network(req, rest)
        raise HttpError(404, "The resource could not be found.", "itemNotFound")

    def _authenticate(self, req: _Request) -> _Principal:
        token = req.headers.get("X-Auth-Token")
        now = time.time()
        with self._token_lock:
            entry = self._tokens.get(token or "")
        if entry is None or entry[2] < now:
            raise HttpError(401, "The request you have made requires authentication.", None,
                            {"WWW-Authenticate": f'Keystone uri="{self.base_url}/identity"'})
        return entry[0]

    # ------------------------------------------------------------------ Keystone v3
    def _identity_version(self) -> dict[str, Any]:
        return {"id": KEYSTONE_VERSION, "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base_url}/identity/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def _identity(self, req: _Request, rest: list[str]) -> _Reply:
        if not rest:
            return _Reply(300, {"versions": {"values": [self._identity_version()]}})
        if rest[0] != "v3":
            raise HttpError(404, "Could not find version.", None)
        rest = rest[1:]
        if not rest:
            return _Reply(200, {"version": self._identity_version()})
        if rest[:2] == ["auth", "tokens"]:
            if req.method == "POST":
                return self._issue_token(req)
            who = self._authenticate(req)
            subject = req.headers.get("X-Subject-Token") or ""
            with self._token_lock:
                entry = self._tokens.get(subject)
                if req.method == "DELETE" and entry is not None:
                    del self._tokens[subject]
                    return _Reply(204)
            if entry is None or entry[2] < time.time() or (subject != req.headers.get("X-Auth-Token")
                                                          and not who.is_admin):
                raise HttpError(404, f"Could not find token: {subject[:8]}...", None)
            if req.method == "HEAD":
                return _Reply(200)
            return _Reply(200, {"token": self._token_body(*entry)}, {"X-Subject-Token": subject})
        who = self._authenticate(req)
        if rest[:2] == ["auth", "catalog"]:
            return _Reply(200, {"catalog": self._catalog(), "links": {"self": None}})
        if rest[:2] == ["auth", "projects"] or rest[:3] == ["users", who.user_id, "projects"]:
            return _Reply(200, {"projects": [self._project(who.project_name)], "links": {"self": None}})
        if rest[0] == "projects":
            if len(rest) == 1:
                name = req.q("name")
                names = [n for n in self.projects if (who.is_admin or n == who.project_name)
                         and (name is None or n == name)]
                return _Reply(200, {"projects": [self._project(n) for n in names],
                                    "links": {"self": None, "next": None, "previous": None}})
            for n, pid in self.projects.items():
                if rest[1] == pid and (who.is_admin or n == who.project_name):
                    return _Reply(200, {"project": self._project(n)})
            raise HttpError(404, f"Could not find project: {rest[1]}.", None)
        raise HttpError(404, "The resource could not be found.", None)

    def _project(self, name: str) -> dict[str, Any]:
        pid = self.projects[name]
        return {"id": pid, "name": name, "domain_id": "default", "description": "", "enabled": True,
                "parent_id": "default", "is_domain": False, "tags": [], "options": {},
                "links": {"self": f"{self.auth_url}/projects/{pid}"}}

    def _issue_token(self, req: _Request) -> _Reply:
        try:
            auth = json.loads(req.body)["auth"]
            identity = auth["identity"]
            methods = identity["methods"]
        except (ValueError, KeyError, TypeError):
            raise HttpError(400, "Invalid input for field 'identity': 'methods' is a required property", None) \
                from None
        denied = HttpError(401, "The request you have made requires authentication.", None)
        if "password" in methods:
            user = (identity.get("password") or {}).get("user") or {}
            found = None
            if "id" not in user and "domain" not in user:
                raise HttpError(400, "Expecting to find domain in user. The server could not comply with the "
                                     "request since it is either malformed or otherwise incorrect. The client "
                                     "is assumed to be in error.", None)
            for name, (pw, uid, proj, roles) in self._users.items():
                if user.get("id") == uid or (user.get("name") == name and self._domain_ok(user.get("domain"))):
                    found = (name, pw, uid, proj, roles)
            if found is None or not isinstance(user.get("password"), str) \
                    or not secrets.compare_digest(user["password"].encode(), found[1].encode()):
                raise denied
            name, _, uid, home_project, roles = found
        elif "token" in methods:
            old = ((identity.get("token") or {}).get("id")) or ""
            with self._token_lock:
                entry = self._tokens.get(old)
            if entry is None or entry[2] < time.time():
                raise denied
            p = entry[0]
            name, uid, home_project, roles = p.user_name, p.user_id, p.project_name, p.roles
        else:
            raise denied
        scope = auth.get("scope")
        project = home_project
        if isinstance(scope, dict) and "project" in scope:
            want = scope["project"] or {}
            match = [n for n, pid in self.projects.items()
                     if want.get("id") == pid or (want.get("name") == n and self._domain_ok(want.get("domain")))]
            if not match or match[0] != home_project:
                raise denied
        elif scope is not None:
            raise denied   # domain/system scope: no role assignment here
        principal = _Principal(uid, name, self.projects[project], project, roles)
        token = "gAAAAA" + secrets.token_urlsafe(96)
        now = time.time()
        with self._token_lock:
            expired = [t for t, (_, _, exp) in self._tokens.items() if exp < now]
            for t in expired:
                del self._tokens[t]
            self._tokens[token] = (principal, now, now + TOKEN_TTL)
        return _Reply(201, {"token": self._token_body(principal, now, now + TOKEN_TTL)},
                      {"X-Subject-Token": token})

    def _domain_ok(self, domain: Any) -> bool:
        if not isinstance(domain, dict):
            return domain is None
        return domain.get("id") == "default" or domain.get("name") == "Default"

    def _token_body(self, who: _Principal, issued: float, expires: float) -> dict[str, Any]:
        return {
            "methods": ["password"],
            "user": {"id": who.user_id, "name": who.user_name, "domain": self.domain,
                     "password_expires_at": None},
            "project": {"id": who.project_id, "name": who.project_name, "domain": self.domain},
            "roles": [{"id": _stable_id("role", r), "name": r} for r in who.roles],
            "catalog": self._catalog(),
            "is_domain": False,
            "audit_ids": [secrets.token_urlsafe(16)],
            "issued_at": _iso_us(issued),
            "expires_at": _iso_us(expires),
        }

    def _catalog(self) -> list[dict[str, Any]]:
        def service(kind: str, name: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": name, "id": _stable_id(self.world.name, "service", kind),
                    "endpoints": [{"id": _stable_id(self.world.name, "ep", kind, iface), "interface": iface,
                                   "region_id": self.region, "region": self.region, "url": url}
                                  for iface in ("public", "internal", "admin")]}

        return [service("identity", "keystone", f"{self.base_url}/identity"),
                service("compute", "nova", f"{self.base_url}/compute/v2.1"),
                service("image", "glance", f"{self.base_url}/image"),
                service("network", "neutron", f"{self.base_url}/network")]

    # ------------------------------------------------------------------ Nova
    def _nova_version(self, v21: bool) -> dict[str, Any]:
        if not v21:
            return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
                    "updated": "2025-07-04T12:00:00Z",
                    "links": [{"rel": "self", "href": f"{self.base_url}/compute/v2/"}]}
        return {"id": "v2.1", "status": "CURRENT", "version": "%d.%d" % MAX_MICROVERSION,
                "min_version": "%d.%d" % MIN_MICROVERSION, "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base_url}/compute/v2.1/"},
                          {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def _microversion(self, req: _Request) -> tuple[int, int]:
        raw = None
        header = req.headers.get("OpenStack-API-Version")
        if header:
            for item in header.split(","):
                kind, _, value = item.strip().partition(" ")
                if kind.lower() == "compute":
                    raw = value.strip()
        if raw is None:
            raw = req.headers.get("X-OpenStack-Nova-API-Version")
        if not raw:
            return MIN_MICROVERSION
        if raw.lower() == "latest":
            return MAX_MICROVERSION
        m = re.fullmatch(r"(\d+)\.(\d+)", raw.strip())
        if not m:
            raise HttpError(400, f"Invalid API version request string: {raw}", _NOVA_KEYS[400])
        ver = (int(m.group(1)), int(m.group(2)))
        if not MIN_MICROVERSION <= ver <= MAX_MICROVERSION:
            raise HttpError(406, "Version %s is not supported by the API. Minimum is %d.%d and maximum is %d.%d."
                            % (raw, *MIN_MICROVERSION, *MAX_MICROVERSION), "computeFault")
        return ver

    def _compute(self, req: _Request, rest: list[str]) -> _Reply:
        if not rest:
            return _Reply(200, {"versions": [self._nova_version(False), self._nova_version(True)]})
        if rest[0] not in ("v2.1", "v2"):
            raise nova_error(404, "The resource could not be found.")
        rest = rest[1:]
        req.microversion = self._microversion(req)
        mv = "%d.%d" % req.microversion
        reply = self._compute_routes(req, rest)
        hdrs = dict(reply.headers or {})
        hdrs.update({"OpenStack-API-Version": f"compute {mv}", "X-OpenStack-Nova-API-Version": mv,
                     "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"})
        reply.headers = hdrs
        return reply

    def _compute_routes(self, req: _Request, rest: list[str]) -> _Reply:
        if not rest:
            return _Reply(200, {"version": self._nova_version(True)})
        req.principal = self._authenticate(req)
        # Older clients put the project id in the path (/v2.1/{project_id}/servers).
        if rest[0] == req.principal.project_id:
            rest = rest[1:]
        m, head = req.method, rest[0] if rest else ""
        n = len(rest)
        if head == "servers":
            if n == 1 and m == "GET":
                return self._list_servers(req, detail=False)
            if n == 1 and m == "POST":
                return self._create_server(req)
            if n == 2 and rest[1] == "detail" and m == "GET":
                return self._list_servers(req, detail=True)
            if n >= 2:
                vm = self._find_vm(req, rest[1])
                if n == 2 and m == "GET":
                    with self.world.lock:
                        return _Reply(200, {"server": self._server_view(req, vm, True, time.time())})
                if n == 2 and m == "DELETE":
                    self.world.delete_vm(vm.id)
                    return _Reply(204)
                if n == 3 and rest[2] == "action" and m == "POST":
                    return self._server_action(req, vm)
                if rest[2] == "metadata":
                    return self._server_metadata(req, vm, rest[3:])
                if rest[2] == "tags" and req.mv(2, 26):
                    return self._server_tags(req, vm, rest[3:])
        elif head == "flavors" and m == "GET":
            if n == 1:
                return self._flavors(req, detail=False)
            if n == 2 and rest[1] == "detail":
                return self._flavors(req, detail=True)
            flavor = self.world.flavors.get(rest[1])
            if flavor is None:
                raise nova_error(404, f"Flavor {rest[1]} could not be found.")
            if n == 2:
                return _Reply(200, {"flavor": self._flavor_view(req, flavor, True)})
            if n == 3 and rest[2] == "os-extra_specs":
                return _Reply(200, {"extra_specs": {}})
        elif head == "os-keypairs":
            return self._keypairs(req, rest[1:])
        elif head == "limits" and m == "GET" and n == 1:
            return self._limits(req)
        elif head == "os-quota-sets" and n >= 2:
            return self._quota_sets(req, rest[1], rest[2:])
        elif head == "os-availability-zone" and m == "GET":
            return _Reply(200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                          "hosts": None}]})
        raise nova_error(404, "The resource could not be found.")

    # -- servers
    def _find_vm(self, req: _Request, server_id: str) -> SVM:
        vm = self.world.get_vm(server_id)
        if vm is None or not self._visible(req, vm):
            raise nova_error(404, f"Instance {server_id} could not be found.")
        return vm

    def _visible(self, req: _Request, vm: SVM) -> bool:
        assert req.principal is not None
        owner = vm.extra.get("project_id", self.project_id)
        return owner == req.principal.project_id or req.principal.is_admin

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

    def _server_view(self, req: _Request, vm: SVM, detail: bool, now: float) -> dict[str, Any]:
        link = f"{self.base_url}/compute/v2.1/servers/{vm.id}"
        links = [{"rel": "self", "href": link},
                 {"rel": "bookmark", "href": f"{self.base_url}/compute/servers/{vm.id}"}]
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
                {"rel": "bookmark", "href": f"{self.base_url}/compute/flavors/{vm.flavor_id}"}]}
        owner = vm.extra.get("project_id", self.project_id)
        body: dict[str, Any] = {
            "id": vm.id, "name": vm.name, "status": status,
            "tenant_id": owner, "user_id": vm.extra.get("user_id", ""),
            "metadata": dict(vm.metadata),
            "hostId": hashlib.sha224((owner + "sandbox-host").encode()).hexdigest() if status != "BUILD" else "",
            "image": {"id": vm.image_id, "links": [
                {"rel": "bookmark", "href": f"{self.base_url}/compute/images/{vm.image_id}"}]},
            "flavor": flavor_view,
            "created": _iso(vm.created), "updated": _iso(updated),
            "addresses": self._addresses(vm, status),
            "accessIPv4": "", "accessIPv6": "", "links": links,
            "OS-DCF:diskConfig": "MANUAL", "progress": 0,
            "OS-EXT-AZ:availability_zone": "nova" if status != "BUILD" else "",
            "config_drive": vm.extra.get("config_drive", ""),
            "key_name": vm.key_name,
            "OS-SRV-USG:launched_at": _iso_us(launched).replace("Z", "") if status not in ("BUILD", "ERROR")
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
            fault: dict[str, Any] = {"code": 500, "created": _iso(vm.created), "message": vm.error}
            if req.principal is not None and req.principal.is_admin:
                fault["details"] = "Traceback (most recent call last): nova.exception.NoValidHost"
            body["fault"] = fault
        return body

    def _list_servers(self, req: _Request, detail: bool) -> _Reply:
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
            return _Reply(200, {"servers": []})
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
                if not all_tenants and vm.extra.get("project_id", self.project_id) != project:
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
                page.append(self._server_json(req, vm, detail, now))
                last_id = vm.id
        out = b'{"servers":[' + b",".join(page) + b"]"
        if page and len(page) >= limit:
            params = {k: v[-1] for k, v in req.query.items()}
            params["marker"] = last_id
            suffix = "/detail" if detail else ""
            links = [{"rel": "next", "href": f"{self.base_url}/compute/v2.1/servers{suffix}?{urlencode(params)}"}]
            out += b',"servers_links":' + json.dumps(links, separators=(",", ":")).encode()
        return _Reply(200, out + b"}")

    def _server_json(self, req: _Request, vm: SVM, detail: bool, now: float) -> bytes:
        """A server's JSON, cached until anything it shows changes (1000 servers per list)."""
        assert req.principal is not None
        status = self._status(vm, now)[0]
        key = (req.microversion, req.principal.is_admin, detail)
        stamp = (status, vm.name, vm.address, tuple(vm.floating_addresses), vm.key_name, tuple(vm.tags), tuple(vm.metadata.items()),
                 vm.extra.get("updated"), vm.error)
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
        data = json.dumps(self._server_view(req, vm, detail, now), separators=(",", ":")).encode()
        cache[key] = (stamp, data)
        return data

    def _create_server(self, req: _Request) -> _Reply:
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
                             % (_short(server), ", ".join(repr(u) for u in unexpected),
                                "was" if len(unexpected) == 1 else "were"))
        name = server.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise nova_error(400, "Invalid input for field/attribute name. Value: %r. %s"
                             % (name, "'name' is a required property" if name is None else "is not valid"))
        if "networks" not in server and req.mv(2, 37):
            raise nova_error(400, "Invalid input for field/attribute server. Value: %s. "
                                  "'networks' is a required property" % _short(server))
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
                                  "keys and values must be strings of at most 255 characters" % _short(metadata))
        if len(metadata) > _QUOTA_DEFAULTS["metadata_items"]:
            raise nova_error(403, "Quota exceeded for metadata_items: Requested %d, but already used 0 of %d "
                                  "metadata_items" % (len(metadata), _QUOTA_DEFAULTS["metadata_items"]))
        tags = server.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 50 or not all(isinstance(t, str) and _TAG_RE.match(t)
                                                                     for t in tags):
            raise nova_error(400, "Invalid input for field/attribute tags. Value: %s. Tags must be at most 50 "
                                  "strings of 1-60 characters without '/' or ','" % _short(tags))
        key_name = server.get("key_name")
        ssh_keys: list[str] = []
        if key_name is not None:
            with self.world.lock:
                public = self.world.keypairs.get(key_name)
            if public is None:
                raise nova_error(400, "Invalid key_name provided.")
            ssh_keys.append(public)
        network = self._pick_network(req, server.get("networks", "auto"))
        groups = []
        for sg in server.get("security_groups") or []:
            sg_name = sg.get("name") if isinstance(sg, dict) else None
            if sg_name not in self.security_groups and sg_name not in self.security_groups.values():
                raise nova_error(400, f"Security group {sg_name} not found for project "
                                      f"{req.principal.project_id}.")
            groups.append(sg_name)
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
                       "network": network, "security_groups": groups or [DEFAULT_SG],
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
            return _Reply(202, {"reservation_id": "r-" + first.id[:8]})
        body = {"server": {"id": first.id, "links": self._server_view(req, first, False, time.time())["links"],
                           "OS-DCF:diskConfig": "MANUAL",
                           "security_groups": [{"name": g} for g in (groups or [DEFAULT_SG])],
                           "adminPass": secrets.token_urlsafe(9)}}
        return _Reply(202, body, {"Location": f"{self.base_url}/compute/v2.1/servers/{first.id}"})

    def _pick_network(self, req: _Request, networks: Any) -> str | None:
        if networks == "none":
            return None
        if networks == "auto" or networks is None:
            return NETWORK_NAME
        if isinstance(networks, list):
            if not networks:
                return NETWORK_NAME
            for n in networks:
                if not isinstance(n, dict):
                    break
                if "port" in n:
                    raise nova_error(400, f"Port {n['port']} could not be found.")
                uid = n.get("uuid")
                if uid not in (self.network_id, NETWORK_NAME) and uid is not None:
                    raise nova_error(400, f"Network {uid} could not be found.")
            else:
                return NETWORK_NAME
        raise nova_error(400, "Invalid input for field/attribute networks. Value: %s. %s is not valid under any "
                              "of the given schemas" % (_short(networks), _short(networks)))

    def _next_mac(self) -> str:
        c = next(self._mac_counter)
        return "fa:16:3e:%02x:%02x:%02x" % ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF)

    def _server_action(self, req: _Request, vm: SVM) -> _Reply:
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            raise nova_error(400, "There is no such action: None")
        action = next(iter(body))
        now = time.time()
        with self.world.lock:
            status, vm_state, _, _ = self._status(vm, now)
            if action in ("os-stop", "os-start"):
                verb = "stop" if action == "os-stop" else "start"
                want = "active" if verb == "stop" else "stopped"
                if vm_state != want:
                    raise nova_error(409, f"Cannot '{verb}' instance {vm.id} while it is in vm_state {vm_state}")
                vm.stopped = verb == "stop"
                vm.extra["updated"] = now
                return _Reply(202)
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
                return _Reply(200, {"output": text})
            if action in ("reboot",):
                if vm_state != "active":
                    raise nova_error(409, f"Cannot 'reboot' instance {vm.id} while it is in vm_state {vm_state}")
                vm.extra["updated"] = now
                return _Reply(202)
        raise nova_error(400, f"There is no such action: {action}")

    def _server_metadata(self, req: _Request, vm: SVM, rest: list[str]) -> _Reply:
        m = req.method
        with self.world.lock:
            if not rest:
                if m == "GET":
                    return _Reply(200, {"metadata": dict(vm.metadata)})
                if m in ("PUT", "POST"):
                    md = (req.json() or {}).get("metadata")
                    if not isinstance(md, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in md.items()):
                        raise nova_error(400, "Malformed request body")
                    if m == "PUT":
                        vm.metadata.clear()
                    vm.metadata.update(md)
                    vm.extra["updated"] = time.time()
                    return _Reply(200, {"metadata": dict(vm.metadata)})
            elif len(rest) == 1:
                key = rest[0]
                if m == "GET":
                    if key not in vm.metadata:
                        raise nova_error(404, "Metadata item was not found")
                    return _Reply(200, {"meta": {key: vm.metadata[key]}})
                if m == "PUT":
                    meta = (req.json() or {}).get("meta")
                    if not isinstance(meta, dict) or list(meta) != [key]:
                        raise nova_error(400, "Request body and URI mismatch")
                    vm.metadata[key] = str(meta[key])
                    vm.extra["updated"] = time.time()
                    return _Reply(200, {"meta": meta})
                if m == "DELETE":
                    if vm.metadata.pop(key, None) is None:
                        raise nova_error(404, "Metadata item was not found")
                    return _Reply(204)
        raise nova_error(404, "The resource could not be found.")

    def _server_tags(self, req: _Request, vm: SVM, rest: list[str]) -> _Reply:
        m = req.method
        with self.world.lock:
            if not rest:
                if m == "GET":
                    return _Reply(200, {"tags": list(vm.tags)})
                if m == "PUT":
                    tags = (req.json() or {}).get("tags")
                    if not isinstance(tags, list) or len(tags) > 50 or not all(
                            isinstance(t, str) and _TAG_RE.match(t) for t in tags):
                        raise nova_error(400, "Invalid input for field/attribute tags.")
                    vm.tags[:] = list(dict.fromkeys(tags))
                    return _Reply(200, {"tags": list(vm.tags)})
                if m == "DELETE":
                    vm.tags.clear()
                    return _Reply(204)
            elif len(rest) == 1:
                tag = rest[0]
                if m == "GET":
                    if tag not in vm.tags:
                        raise nova_error(404, f"Tag '{tag}' could not be found.")
                    return _Reply(204)
                if m == "PUT":
                    if not _TAG_RE.match(tag):
                        raise nova_error(400, f"Invalid input for field/attribute tag. Value: {tag}.")
                    if tag in vm.tags:
                        return _Reply(204)
                    if len(vm.tags) >= 50:
                        raise nova_error(400, "The number of tags exceeded the per-server limit 50")
                    vm.tags.append(tag)
                    return _Reply(201, None, {"Location": f"{self.base_url}/compute/v2.1/servers/{vm.id}/tags/{tag}"})
                if m == "DELETE":
                    if tag not in vm.tags:
                        raise nova_error(404, f"Tag '{tag}' could not be found.")
                    vm.tags.remove(tag)
                    return _Reply(204)
        raise nova_error(404, "The resource could not be found.")

    # -- flavors, keypairs, limits, quotas
    def _flavor_view(self, req: _Request, f: Any, detail: bool) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{self.base_url}/compute/v2.1/flavors/{f.id}"},
                 {"rel": "bookmark", "href": f"{self.base_url}/compute/flavors/{f.id}"}]
        body: dict[str, Any] = {"id": f.id, "name": f.name, "links": links}
        if req.mv(2, 55):
            body["description"] = None
        if detail:
            body.update({"ram": f.ram_mib, "disk": f.disk_gib, "vcpus": f.vcpus,
                         "swap": 0 if req.mv(2, 75) else "", "OS-FLV-EXT-DATA:ephemeral": 0,
                         "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
                         "rxtx_factor": 1.0})
            if req.mv(2, 61):
                body["extra_specs"] = {}
        return body

    def _flavors(self, req: _Request, detail: bool) -> _Reply:
        # Nova sorts flavors by flavorid (as text) unless asked otherwise.
        flavors = sorted(self.world.flavors.values(), key=lambda f: f.id)
        marker = req.q("marker")
        if marker is not None:
            ids = [f.id for f in flavors]
            if marker not in ids:
                raise nova_error(400, f"marker [{marker}] not found")
            flavors = flavors[ids.index(marker) + 1:]
        limit = int(req.q("limit") or MAX_LIMIT)
        flavors = flavors[:limit]
        body: dict[str, Any] = {"flavors": [self._flavor_view(req, f, detail) for f in flavors]}
        if flavors and len(flavors) >= limit:
            params = {k: v[-1] for k, v in req.query.items()}
            params["marker"] = flavors[-1].id
            body["flavors_links"] = [{"rel": "next", "href": f"{self.base_url}/compute/v2.1/flavors"
                                      f"{'/detail' if detail else ''}?{urlencode(params)}"}]
        return _Reply(200, body)

    def _keypair_view(self, req: _Request, name: str, public: str, detail: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "public_key": public, "fingerprint": _fingerprint(public)}
        if req.mv(2, 2):
            body["type"] = "ssh"
        if detail:
            assert req.principal is not None
            body.update({"user_id": req.principal.user_id, "deleted": False, "created_at": _iso_us(time.time()),
                         "updated_at": None, "deleted_at": None, "id": abs(hash(name)) % 100000})
        return body

    def _keypairs(self, req: _Request, rest: list[str]) -> _Reply:
        kp = self.world.keypairs
        m = req.method
        with self.world.lock:
            if not rest and m == "GET":
                return _Reply(200, {"keypairs": [{"keypair": self._keypair_view(req, n, k, False)}
                                                 for n, k in sorted(kp.items())]})
            if not rest and m == "POST":
                data = (req.json() or {}).get("keypair")
                if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                    raise nova_error(400, "Invalid input for field/attribute keypair. Value: None. "
                                          "'name' is a required property")
                name = data["name"]
                if not re.fullmatch(r"[A-Za-z0-9 _.@-]{1,255}", name):
                    raise nova_error(400, "Keypair data is invalid: Keypair name contains unsafe characters")
                # Nova checks the quota before it finds a duplicate (that one comes from the DB).
                if -1 < self.world.quota.key_pairs <= len(kp):
                    raise nova_error(403, "Quota exceeded, too many key pairs.")
                if name in kp:
                    raise nova_error(409, f"Key pair '{name}' already exists.")
                public = data.get("public_key")
                private = None
                if public is None:
                    if req.mv(2, 92):
                        raise nova_error(400, f"Invalid input for field/attribute keypair. Value: {_short(data)}. "
                                              "'public_key' is a required property")
                    public, private = _generate_keypair()   # Nova before 2.92 makes one
                if not isinstance(public, str) or not _valid_public_key(public):
                    raise nova_error(400, "Keypair data is invalid: failed to generate fingerprint")
                kp[name] = public.strip()
                view = {**self._keypair_view(req, name, kp[name], False),
                        "user_id": req.principal.user_id if req.principal else ""}
                if private is not None:
                    view["private_key"] = private
                return _Reply(201 if req.mv(2, 2) else 200, {"keypair": view})
            if len(rest) == 1:
                name = rest[0]
                if name not in kp:
                    raise nova_error(404, f"Keypair {name} not found for user "
                                          f"{req.principal.user_id if req.principal else ''}")
                if m == "GET":
                    return _Reply(200, {"keypair": self._keypair_view(req, name, kp[name], True)})
                if m == "DELETE":
                    del kp[name]
                    return _Reply(204 if req.mv(2, 2) else 202)
        raise nova_error(404, "The resource could not be found.")

    def _limits(self, req: _Request) -> _Reply:
        q = self.world.quota
        with self.world.lock:
            n, cores, ram = self.world.usage()
        absolute: dict[str, Any] = {
            "maxTotalInstances": q.instances, "totalInstancesUsed": n,
            "maxTotalCores": q.cores, "totalCoresUsed": cores,
            "maxTotalRAMSize": q.ram_mib, "totalRAMUsed": ram,
            "maxServerMeta": 128, "maxTotalKeypairs": 100, "maxServerGroups": 10,
            "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0,
        }
        if not req.mv(2, 57):
            absolute.update({"maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240})
        if not req.mv(2, 36):
            absolute.update({"maxSecurityGroups": -1, "maxSecurityGroupRules": -1, "maxTotalFloatingIps": -1,
                             "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0})
        return _Reply(200, {"limits": {"rate": [], "absolute": absolute}})

    def _quota_values(self, project_id: str) -> dict[str, int]:
        if project_id == self.project_id:
            base = _world_quota(self.world.quota)
        else:
            base = dict(self._other_quotas.get(project_id, {}))
            base.setdefault("instances", 10)
            base.setdefault("cores", 20)
            base.setdefault("ram", 51200)
        out = dict(_QUOTA_DEFAULTS)
        out.update(base)
        return out

    def _quota_keys(self, req: _Request) -> tuple[str, ...]:
        keys = _BASE_QUOTA_KEYS
        if not req.mv(2, 57):
            keys += _OLD_QUOTA_KEYS
        if not req.mv(2, 36):
            keys += _NET_QUOTA_KEYS
        return keys

    def _quota_sets(self, req: _Request, project_id: str, rest: list[str]) -> _Reply:
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
                    values = dict(_QUOTA_DEFAULTS, instances=10, cores=20, ram=51200)
                    if project_id == self.project_id:
                        values.update(_world_quota(self._default_quota))
                elif rest == ["detail"]:
                    n, cores, ram = self.world.usage() if project_id == self.project_id else (0, 0, 0)
                    used = {"instances": n, "cores": cores, "ram": ram}
                    return _Reply(200, {"quota_set": {"id": project_id, **{
                        k: {"limit": values[k], "in_use": used.get(k, 0), "reserved": 0} for k in keys}}})
                elif rest:
                    raise nova_error(404, "The resource could not be found.")
                return _Reply(200, {"quota_set": {"id": project_id, **{k: values[k] for k in keys}}})
            if rest:
                raise nova_error(404, "The resource could not be found.")
            if not who.is_admin:
                action = "update" if m == "PUT" else "delete"
                raise nova_error(403, f"Policy doesn't allow os_compute_api:os-quota-sets:{action} "
                                      "to be performed.")
            if m == "DELETE":
                if project_id == self.project_id:
                    _set_world_quota(self.world.quota, _world_quota(self._default_quota))
                else:
                    self._other_quotas.pop(project_id, None)
                return _Reply(202)
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
                                     % (_short(qs), ", ".join(repr(b) for b in bad)))
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
                if project_id == self.project_id and not force:
                    n, cores, ram = self.world.usage()
                    for k, used in (("instances", n), ("cores", cores), ("ram", ram)):
                        if k in new and new[k] != -1 and new[k] < used:
                            raise nova_error(400, f"Quota limit {new[k]} for {k} must be greater than or "
                                                  f"equal to already used and reserved {used}.")
                if project_id == self.project_id:
                    _set_world_quota(self.world.quota, new)
                else:
                    self._other_quotas.setdefault(project_id, {}).update(new)
                values = self._quota_values(project_id)
                return _Reply(200, {"quota_set": {k: values[k] for k in keys}})
        raise nova_error(404, "The resource could not be found.")

    # ------------------------------------------------------------------ Glance v2
    def _glance_versions(self) -> dict[str, Any]:
        vals = []
        for i, minor in enumerate(range(16, -1, -1)):
            vals.append({"id": f"v2.{minor}", "status": "CURRENT" if i == 0 else "SUPPORTED",
                         "links": [{"rel": "self", "href": f"{self.base_url}/image/v2/"}]})
        return {"versions": vals}

    def _image_view(self, img: Any) -> dict[str, Any]:
        created = _iso(0)
        return {"id": img.id, "name": img.name, "status": "active", "visibility": "public", "protected": False,
                "os_hidden": False, "checksum": img.checksum, "os_hash_algo": "sha512",
                "os_hash_value": img.sha512, "size": img.size, "virtual_size": None, "min_disk": 0,
                "min_ram": 0, "disk_format": "qcow2", "container_format": "bare",
                "owner": _stable_id(self.world.name, "project", "admin"), "tags": [],
                "created_at": created, "updated_at": created, "self": f"/v2/images/{img.id}",
                "file": f"/v2/images/{img.id}/file", "schema": "/v2/schemas/image"}

    def _image(self, req: _Request, rest: list[str]) -> _Reply:
        if not rest or (rest == ["v2"] and req.method == "GET"):
            return _Reply(300, self._glance_versions())
        if rest[0] != "v2":
            raise HttpError(404, "Not Found", None)
        req.principal = self._authenticate(req)
        rest = rest[1:]
        if rest and rest[0] == "images" and req.method == "GET":
            images = sorted(self.world.images.values(), key=lambda i: i.id)
            if len(rest) == 2:
                img = self.world.images.get(rest[1])
                if img is None:
                    return _Reply(404, f"<html><body><h1>404 Not Found</h1>No image found with ID {rest[1]}"
                                       "<br /><br /></body></html>".encode(), content_type="text/html")
                return _Reply(200, self._image_view(img))
            if len(rest) == 1:
                # Glance sorts by created_at desc then id; all sandbox images share created_at.
                images.sort(key=lambda i: i.id, reverse=True)
                name, status = req.q("name"), req.q("status")
                vis = req.q("visibility")
                images = [i for i in images if _glance_match(name, i.name) and _glance_match(req.q("id"), i.id)
                          and _glance_match(status, "active")
                          and (vis is None or vis in ("public", "all"))]
                marker = req.q("marker")
                if marker is not None:
                    ids = [i.id for i in images]
                    if marker not in ids:
                        return _Reply(400, f"<html><body><h1>400 Bad Request</h1>marker [{marker}] not found"
                                           "<br /><br /></body></html>".encode(), content_type="text/html")
                    images = images[ids.index(marker) + 1:]
                limit = int(req.q("limit") or 25)
                page = images[:limit]
                body: dict[str, Any] = {"images": [self._image_view(i) for i in page],
                                        "first": "/v2/images", "schema": "/v2/schemas/images"}
                if len(images) > limit:
                    params = {k: v[-1] for k, v in req.query.items()}
                    params["marker"] = page[-1].id
                    body["next"] = f"/v2/images?{urlencode(params)}"
                return _Reply(200, body)
        if rest == ["schemas", "image"] or rest == ["schemas", "images"]:
            return _Reply(200, {"name": rest[1].rstrip("s"), "properties": {}, "additionalProperties": {
                "type": "string"}})
        raise HttpError(404, "Not Found", None)

    # ------------------------------------------------------------------ Neutron v2.0
    def _network_view(self, external: bool = False) -> dict[str, Any]:
        pid = _stable_id(self.world.name, "project", "admin")
        return {"id": self.external_network_id if external else self.network_id,
                "name": EXTERNAL_NETWORK_NAME if external else NETWORK_NAME, "status": "ACTIVE",
                "admin_state_up": True, "shared": not external,
                "subnets": [self.external_subnet_id if external else self.subnet_id], "tenant_id": pid,
                "project_id": pid, "router:external": external, "mtu": 1500 if external else 1450,
                "availability_zones": ["nova"],
                "availability_zone_hints": [], "ipv4_address_scope": None, "ipv6_address_scope": None,
                "port_security_enabled": True, "is_default": external, "description": "", "tags": [],
                "created_at": _iso(0), "updated_at": _iso(0), "revision_number": 1,
                "provider:network_type": "flat" if external else "geneve", "l2_adjacency": True}

    def _subnet_view(self, external: bool = False) -> dict[str, Any]:
        pid = _stable_id(self.world.name, "project", "admin")
        if external:
            octet = self.world.floating_octet
            return {"id": self.external_subnet_id, "name": f"{EXTERNAL_NETWORK_NAME}-subnet",
                    "network_id": self.external_network_id, "ip_version": 4, "cidr": f"127.{octet}.0.0/16",
                    "gateway_ip": f"127.{octet}.0.1", "enable_dhcp": False, "tenant_id": pid, "project_id": pid,
                    "allocation_pools": [{"start": f"127.{octet}.0.2", "end": f"127.{octet}.255.254"}],
                    "dns_nameservers": [], "host_routes": [], "description": "", "tags": []}
        return {"id": self.subnet_id, "name": f"{NETWORK_NAME}-subnet", "network_id": self.network_id,
                "ip_version": 4, "cidr": "127.0.0.0/8", "gateway_ip": None, "enable_dhcp": True,
                "tenant_id": pid, "project_id": pid, "allocation_pools": [
                    {"start": "127.0.0.2", "end": "127.255.255.254"}], "dns_nameservers": [],
                "host_routes": [], "description": "", "tags": []}

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
        owner = vm.extra.get("project_id", self.project_id)
        return {"id": self._port_id(vm), "name": "", "network_id": self.network_id, "tenant_id": owner,
                "project_id": owner, "mac_address": vm.extra.get("mac", "fa:16:3e:00:00:01"),
                "admin_state_up": True, "status": "ACTIVE" if vm.booted(now) and not vm.stopped else "DOWN",
                "device_id": vm.id, "device_owner": "compute:nova",
                "fixed_ips": [{"subnet_id": self.subnet_id, "ip_address": vm.address or "127.0.0.1"}],
                "allowed_address_pairs": [], "extra_dhcp_opts": [],
                "security_groups": [self.security_groups.get(g, g) for g in
                                    vm.extra.get("security_groups", [DEFAULT_SG])],
                "description": "", "binding:vnic_type": "normal", "port_security_enabled": True,
                "dns_name": "", "dns_assignment": [], "tags": [], "created_at": _iso(vm.created),
                "updated_at": _iso(vm.created), "revision_number": 1}

    def _port_vm(self, req: _Request, port_id: str) -> SVM | None:
        """The VM owning a port the caller may use, or None."""
        assert req.principal is not None
        with self.world.lock:
            for vm in self.world.vms.values():
                if self._has_port(vm) and self._port_id(vm) == port_id and self._visible(req, vm):
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
                "created_at": _iso(fip.created), "updated_at": _iso(fip.updated),
                "revision_number": fip.revision, "qos_policy_id": None, "dns_domain": "", "dns_name": "",
                "port_forwardings": [],
                "port_details": {k: port[k] for k in ("name", "network_id", "mac_address", "admin_state_up",
                                                      "status", "device_id", "device_owner")} if port else None}

    def _find_floating(self, req: _Request, fip_id: str) -> SFloatingIP | None:
        assert req.principal is not None
        fip = self.world.floating_ips.get(fip_id)
        if fip is None or (fip.project_id != req.principal.project_id and not req.principal.is_admin):
            return None
        return fip

    def _floating_attach(self, req: _Request, fip: SFloatingIP, port_id: Any) -> _Reply | None:
        """Attach/detach per a request's `port_id`; an error reply, or None when done."""
        if port_id is None:
            self.world.attach_floating_ip(fip.id, None)
            return None
        if not isinstance(port_id, str):
            return _neutron_error(400, "HTTPBadRequest", f"Invalid input for port_id. Reason: '{port_id}' is "
                                                          f"not a valid UUID.")
        vm = self._port_vm(req, port_id)
        if vm is None:
            return _neutron_404("Port", port_id)
        try:
            self.world.attach_floating_ip(fip.id, vm.id)
        except FloatingIPError as e:
            if e.kind == "already_associated":
                return _neutron_error(409, "FloatingIPPortAlreadyAssociated",
                                      f"Cannot associate floating IP {fip.address} ({fip.id}) with port {port_id} "
                                      f"using fixed IP {vm.address or '127.0.0.1'}, as that fixed IP already has a "
                                      f"floating IP on external network {self.external_network_id}.")
            return _neutron_404("Port", port_id)
        return None

    def _floatingips(self, req: _Request, rest: list[str]) -> _Reply:
        assert req.principal is not None
        m, now = req.method, time.time()
        if len(rest) == 1 and m == "GET":
            with self.world.lock:
                fips = [f for f in self.world.floating_ips.values()
                        if f.project_id == req.principal.project_id or req.principal.is_admin]
                views = [self._floating_view(f, now) for f in sorted(fips, key=lambda f: f.created)]
            return _Reply(200, {"floatingips": [v for v in views if _neutron_match(v, req.query)]})
        if len(rest) == 1 and m == "POST":
            data = _json_or_none(req.body)
            body = data.get("floatingip") if isinstance(data, dict) else None
            if not isinstance(body, dict):
                return _neutron_error(400, "HTTPBadRequest", "Resource body required")
            unknown = sorted(set(body) - {"floating_network_id", "port_id", "fixed_ip_address", "description",
                                          "floating_ip_address", "subnet_id", "project_id", "tenant_id",
                                          "dns_domain", "dns_name", "qos_policy_id"})
            if unknown:
                return _neutron_error(400, "HTTPBadRequest", f"Unrecognized attribute(s) '{', '.join(unknown)}'")
            net = body.get("floating_network_id")
            if not net:
                return _neutron_error(400, "HTTPBadRequest", "Failed to parse request. Required attribute "
                                                              "'floating_network_id' not specified")
            if net == self.network_id:
                return _neutron_error(400, "BadRequest", f"Bad floatingip request: Network {net} is not a valid "
                                                         f"external network.")
            if net != self.external_network_id:
                return _neutron_404("Network", str(net))
            if body.get("floating_ip_address") is not None and not req.principal.is_admin:
                return _neutron_error(403, "PolicyNotAuthorized", "(rule:create_floatingip:floating_ip_address) "
                                                                  "is disallowed by policy")
            project = req.principal.project_id
            vm = None
            if body.get("port_id") is not None:
                vm = self._port_vm(req, str(body["port_id"]))
                if vm is None:
                    return _neutron_404("Port", str(body["port_id"]))
            try:
                fip = self.world.allocate_floating_ip(project, description=str(body.get("description") or ""),
                                                      vm_id=vm.id if vm is not None else None)
            except QuotaError:
                return _neutron_error(409, "OverQuota", "Quota exceeded for resources: ['floatingip'].")
            except FloatingIPError as e:
                if e.kind == "exhausted":
                    return _neutron_error(409, "IpAddressGenerationFailure",
                                          f"No more IP addresses available on network {net}.")
                assert vm is not None
                return _neutron_error(409, "FloatingIPPortAlreadyAssociated",
                                      f"Cannot associate floating IP with port {body['port_id']} using fixed IP "
                                      f"{vm.address or '127.0.0.1'}, as that fixed IP already has a floating IP on "
                                      f"external network {net}.")
            with self.world.lock:
                return _Reply(201, {"floatingip": self._floating_view(fip, now)})
        if len(rest) == 2:
            fip = self._find_floating(req, rest[1])
            if fip is None:
                return _neutron_404("Floating IP", rest[1], kind="FloatingIP")
            if m == "GET":
                with self.world.lock:
                    return _Reply(200, {"floatingip": self._floating_view(fip, now)})
            if m == "PUT":
                data = _json_or_none(req.body)
                body = data.get("floatingip") if isinstance(data, dict) else None
                if not isinstance(body, dict):
                    return _neutron_error(400, "HTTPBadRequest", "Resource body required")
                if "description" in body:
                    with self.world.lock:
                        fip.description = str(body["description"] or "")
                if "port_id" in body:
                    problem = self._floating_attach(req, fip, body["port_id"])
                    if problem is not None:
                        return problem
                with self.world.lock:
                    return _Reply(200, {"floatingip": self._floating_view(fip, time.time())})
            if m == "DELETE":
                try:
                    self.world.release_floating_ip(fip.id)
                except FloatingIPError:
                    return _neutron_404("Floating IP", rest[1], kind="FloatingIP")
                return _Reply(204)
        return _neutron_error(405, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")

    def _ports(self, req: _Request, rest: list[str]) -> _Reply:
        assert req.principal is not None
        now = time.time()
        if len(rest) == 2:
            vm = self._port_vm(req, rest[1])
            if vm is None:
                return _neutron_404("Port", rest[1])
            with self.world.lock:
                return _Reply(200, {"port": self._port_view(vm, now)})
        # Cheap pre-filter on the usual query (ports of given servers) before building views.
        devices = set(req.query.get("device_id") or [])
        with self.world.lock:
            vms = [self.world.vms[d] for d in devices if d in self.world.vms] if devices \
                else list(self.world.vms.values())
            views = [self._port_view(vm, now) for vm in vms if self._has_port(vm) and self._visible(req, vm)]
        return _Reply(200, {"ports": [v for v in views if _neutron_match(v, req.query)]})

    def _network(self, req: _Request, rest: list[str]) -> _Reply:
        if not rest:
            return _Reply(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": f"{self.base_url}/network/v2.0/"}]}]})
        if rest[0] != "v2.0":
            raise HttpError(404, "The resource could not be found.", "NeutronError")
        req.principal = self._authenticate(req)
        rest = rest[1:]
        if not rest:
            return _Reply(200, {"resources": [
                {"name": n, "collection": n + "s", "links": [
                    {"rel": "self", "href": f"{self.base_url}/network/v2.0/{n}s"}]}
                for n in ("network", "subnet", "port", "security_group", "floatingip")]})
        coll = rest[0].removesuffix(".json")
        rest = [coll, *rest[1:]]
        if coll == "networks" and req.method == "GET":
            nets = [self._network_view(), self._network_view(external=True)]
            if len(rest) == 2:
                found = [n for n in nets if n["id"] == rest[1]]
                return _Reply(200, {"network": found[0]}) if found else _neutron_404("Network", rest[1])
            return _Reply(200, {"networks": [n for n in nets if _neutron_match(n, req.query)]})
        if coll == "subnets" and req.method == "GET":
            subs = [self._subnet_view(), self._subnet_view(external=True)]
            if len(rest) == 2:
                found = [s for s in subs if s["id"] == rest[1]]
                return _Reply(200, {"subnet": found[0]}) if found else _neutron_404("Subnet", rest[1])
            return _Reply(200, {"subnets": [s for s in subs if _neutron_match(s, req.query)]})
        if coll == "security-groups" and req.method == "GET":
            assert req.principal is not None
            groups = [{"id": gid, "name": name, "description": "Default security group", "tenant_id":
                       req.principal.project_id, "project_id": req.principal.project_id, "stateful": True,
                       "security_group_rules": [], "tags": []} for name, gid in self.security_groups.items()]
            return _Reply(200, {"security_groups": [g for g in groups if _neutron_match(g, req.query)]})
        if coll == "ports" and req.method == "GET" and len(rest) <= 2:
            return self._ports(req, rest)
        if coll == "floatingips" and len(rest) <= 2:
            return self._floatingips(req, rest)
        if coll == "quotas" and req.method == "GET" and len(rest) == 2:
            fips = self.world.quota.floating_ips
            return _Reply(200, {"quota": {"network": 100, "subnet": 100, "port": 500, "router": 10,
                                          "floatingip": fips, "security_group": 10, "security_group_rule": 100,
                                          "rbac_policy": 10, "subnetpool": -1}})
        if coll == "extensions" and req.method == "GET":
            return _Reply(200, {"extensions": []})
        raise HttpError(404, "The resource could not be found.", "NeutronError")


def _glance_match(wanted: str | None, have: str) -> bool:
    """Glance's filter syntax: a value, or `in:a,b,c`."""
    if wanted is None:
        return True
    if wanted.startswith("in:"):
        return have in wanted[3:].split(",")
    return wanted == have


def _neutron_error(status: int, kind: str, message: str) -> _Reply:
    return _Reply(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def _neutron_404(what: str, rid: str, *, kind: str | None = None) -> _Reply:
    # Neutron's texts: "Port X could not be found." but "Floating IP X could not be found" (no dot).
    dot = "" if what == "Floating IP" else "."
    return _neutron_error(404, f"{kind or what}NotFound", f"{what} {rid} could not be found{dot}")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _neutron_match(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    for k, vals in query.items():
        if k in ("fields", "limit", "marker", "sort_key", "sort_dir") or k not in obj:
            continue
        have = obj[k]
        if isinstance(have, bool):
            have = str(have)
        if not any(str(have).lower() == v.lower() if isinstance(obj[k], bool) else str(have) == v for v in vals):
            return False
    return True


def _split_tags(value: str | None) -> list[str]:
    return [t for t in (value or "").split(",") if t]


def _parse_time(value: str | None, field: str) -> float | None:
    if not value:
        return None
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise nova_error(400, f"Invalid input for query parameters {field}. Value: {value}. "
                              f"'{value}' is not a 'date-time'") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."


def _hostname(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"


def _valid_public_key(text: str) -> bool:
    """Nova parses the key (cryptography); a key it could not load is refused."""
    parts = text.strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        return False
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    except ImportError:  # pragma: no cover - cryptography comes with paramiko
        return True
    if parts[0].startswith("sk-"):
        return True   # security-key types: cryptography cannot load them, Nova stores them as given
    try:
        load_ssh_public_key(" ".join(parts[:2]).encode())
    except (ValueError, TypeError):
        return False
    return True


def _world_quota(q: Quota) -> dict[str, int]:
    return {key: getattr(q, attr) for key, attr in _WORLD_QUOTA_FIELDS.items()}


def _set_world_quota(q: Quota, values: dict[str, int]) -> None:
    """Set those of `values` that the world keeps (the rest are other projects' or fixed)."""
    for key, attr in _WORLD_QUOTA_FIELDS.items():
        if key in values:
            setattr(q, attr, values[key])


def _generate_keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return public + " Generated-by-Nova", private


def _fingerprint(public: str) -> str:
    parts = public.split()
    try:
        blob = base64.b64decode(parts[1])
    except (IndexError, binascii.Error, ValueError):
        blob = public.encode()
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


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
    if custom:
        return str(custom)
    booted = vm.created + vm.boot_delay
    host = vm.extra.get("hostname") or _hostname(vm.name)
    lines = [
        "[    0.000000] Linux version 5.14.0-427.el9.x86_64 (sandbox) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt3)/vmlinuz root=UUID=sandbox console=ttyS0,115200n8",
        f"[    1.204711] cloud-init[612]: Cloud-init v. 23.4 running 'init-local' at {_iso(booted)}.",
        f"[    2.518804] cloud-init[701]: Cloud-init v. 23.4 running 'init' at {_iso(booted)}.",
        f"[    2.603317] cloud-init[701]: ci-info: | eth0 | True | {vm.address or '127.0.0.1'} | 255.0.0.0 |",
        f"[    3.110212] cloud-init[798]: Cloud-init v. 23.4 running 'modules:config' at {_iso(booted)}.",
        *_host_key_block(vm, host),
        f"[    3.402019] cloud-init[812]: Cloud-init v. 23.4 finished at {_iso(booted)}. "
        "Datasource DataSourceOpenStackLocal [net,ver=2].  Up 3.40 seconds",
        "",
        f"{host} login: ",
    ]
    if vm.stopped:
        lines.append("[  OK  ] Reached target System Power Off.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- HTTP plumbing


class _Server(KeepAliveServer, HTTPServer):
    front: OpenStackFront
    quiet_errors = (OSError,)   # any socket error: a client that hung up or an outage drill


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-openstack/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60            # idle keep-alive connections are closed, as real API servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no request log on stderr
        pass

    def _serve(self) -> None:
        front = self.server.front
        world = front.world
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if world.faults.down:
            # An outage: the connection drops without an answer.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if world.inject():
            self._send(_overload_reply(self.path))
            return
        split = urlsplit(self.path)
        req = _Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True), self.headers, body)
        try:
            reply = front.handle(req)
        except HttpError as e:
            if e.key is None:
                reply = _Reply(e.status, {"error": {"code": e.status, "title": _TITLES.get(e.status, "Error"),
                                                    "message": e.message}}, e.headers)
            else:
                reply = _Reply(e.status, {e.key: {"code": e.status, "message": e.message}}, e.headers)
            if req.microversion != MIN_MICROVERSION or split.path.startswith("/compute/v2"):
                mv = "%d.%d" % req.microversion
                reply.headers = {**(reply.headers or {}), "OpenStack-API-Version": f"compute {mv}",
                                 "X-OpenStack-Nova-API-Version": mv}
        except Exception as e:  # a bug in the sandbox must look like a 500, not a hung client
            reply = _Reply(500, {"computeFault": {"code": 500, "message": "Unexpected API Error. "
                                                  f"{type(e).__name__}: {e}"}})
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        if reply.body is None:
            payload = b""
        elif isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body, separators=(",", ":")).encode()
        phrase = self.responses.get(reply.status, ("",))[0]
        head = [f"HTTP/1.1 {reply.status} {phrase}",
                f"Content-Type: {reply.content_type}" if payload or reply.status != 204 else "",
                f"Content-Length: {len(payload) if reply.status != 204 else 0}",
                f"X-Openstack-Request-Id: req-{uuid.uuid4()}",
                f"Date: {self.date_time_string()}"]
        for k, v in (reply.headers or {}).items():
            head.append(f"{k}: {v}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(h for h in head if h) + "\r\n\r\n").encode("latin-1")
        if reply.status != 204 and self.command != "HEAD":
            data += payload
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def _overload_reply(path: str) -> _Reply:
    if path.startswith("/compute"):
        return _Reply(500, {"computeFault": {"code": 500, "message": "Unexpected API Error. Please report this at "
                                             "http://bugs.launchpad.net/nova/ and attach the Nova API log if "
                                             "possible.\n<class 'oslo_db.exceptions.DBConnectionError'>"}})
    return _Reply(503, b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this "
                       b"request.\n</body></html>\n", content_type="text/html")
