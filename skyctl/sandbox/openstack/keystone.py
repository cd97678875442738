"""Keystone v3 imitated (`/identity`): a member and an admin user, their projects, password and
token authentication with project scope, the service catalog, and the token check every other
service calls first. Also who owns a server and who may see it, which Nova and Neutron share.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from skyctl.sandbox.openstack.http import HttpError, Principal, Reply, Request, iso_us, stable_id
from skyctl.sandbox.world import SVM

TOKEN_TTL = 3600.0
KEYSTONE_VERSION = "v3.14"


class Keystone:
    """The identity service of one site: users, projects and the tokens it issued."""

    def __init__(self, site: str, *, region: str, username: str, password: str, project: str,
                 admin_username: str, admin_password: str, admin_project: str,
                 block_storage: bool = False) -> None:
        self.site = site
        self.block_storage = block_storage
        self.region = region
        # name -> (password, user id, home project, roles); a same-named admin replaces the member.
        self._users = {
            username: (password, stable_id(site, "user", username), project, ("member", "reader")),
            admin_username: (admin_password, stable_id(site, "user", admin_username), admin_project,
                             ("admin", "member", "reader")),
        }
        self.projects = {project: stable_id(site, "project", project),
                         admin_project: stable_id(site, "project", admin_project)}
        self.project_id = self.projects[project]
        self.domain = {"id": "default", "name": "Default"}
        self._tokens: dict[str, tuple[Principal, float, float]] = {}   # token -> (who, issued, expires)
        self._token_lock = threading.Lock()

    # ------------------------------------------------------------------ for the other services
    def authenticate(self, req: Request) -> Principal:
        token = req.headers.get("X-Auth-Token")
        now = time.time()
        with self._token_lock:
            entry = self._tokens.get(token or "")
        if entry is None or entry[2] < now:
            raise HttpError(401, "The request you have made requires authentication.", None,
                            {"WWW-Authenticate": f'Keystone uri="{req.base_url}/identity"'})
        return entry[0]

    def owner(self, vm: SVM) -> str:
        """The project a server belongs to: its creator's; the member project's if the world made it."""
        owner: str = vm.extra.get("project_id", self.project_id)
        return owner

    def visible(self, req: Request, vm: SVM) -> bool:
        assert req.principal is not None
        return self.owner(vm) == req.principal.project_id or req.principal.is_admin

    # ------------------------------------------------------------------ routes
    def versions(self, req: Request, rest: list[str]) -> Reply:
        """The answer at `/` and `/identity`."""
        return Reply(300, {"versions": {"values": [self._version(req)]}})

    def route(self, req: Request, rest: list[str]) -> Reply:
        if not rest:
            return self.versions(req, rest)
        if rest[0] != "v3":
            raise HttpError(404, "Could not find version.", None)
        rest = rest[1:]
        if not rest:
            return Reply(200, {"version": self._version(req)})
        if rest[:2] == ["auth", "tokens"]:
            if req.method == "POST":
                return self._issue_token(req)
            who = self.authenticate(req)
            subject = req.headers.get("X-Subject-Token") or ""
            with self._token_lock:
                entry = self._tokens.get(subject)
                if req.method == "DELETE" and entry is not None:
                    del self._tokens[subject]
                    return Reply(204)
            if entry is None or entry[2] < time.time() or (subject != req.headers.get("X-Auth-Token")
                                                          and not who.is_admin):
                raise HttpError(404, f"Could not find token: {subject[:8]}...", None)
            if req.method == "HEAD":
                return Reply(200)
            return Reply(200, {"token": self._token_body(req, *entry)}, {"X-Subject-Token": subject})
        who = self.authenticate(req)
        if rest[:2] == ["auth", "catalog"]:
            return Reply(200, {"catalog": self._catalog(req), "links": {"self": None}})
        if rest[:2] == ["auth", "projects"] or rest[:3] == ["users", who.user_id, "projects"]:
            return Reply(200, {"projects": [self._project(req, who.project_name)], "links": {"self": None}})
        if rest[0] == "projects":
            if len(rest) == 1:
                name = req.q("name")
                names = [n for n in self.projects if (who.is_admin or n == who.project_name)
                         and (name is None or n == name)]
                return Reply(200, {"projects": [self._project(req, n) for n in names],
                                   "links": {"self": None, "next": None, "previous": None}})
            for n, pid in self.projects.items():
                if rest[1] == pid and (who.is_admin or n == who.project_name):
                    return Reply(200, {"project": self._project(req, n)})
            raise HttpError(404, f"Could not find project: {rest[1]}.", None)
        raise HttpError(404, "The resource could not be found.", None)

    # ------------------------------------------------------------------ bodies
    def _version(self, req: Request) -> dict[str, Any]:
        return {"id": KEYSTONE_VERSION, "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{req.base_url}/identity/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def _project(self, req: Request, name: str) -> dict[str, Any]:
        pid = self.projects[name]
        return {"id": pid, "name": name, "domain_id": "default", "description": "", "enabled": True,
                "parent_id": "default", "is_domain": False, "tags": [], "options": {},
                "links": {"self": f"{req.base_url}/identity/v3/projects/{pid}"}}

    def _issue_token(self, req: Request) -> Reply:
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
        principal = Principal(uid, name, self.projects[project], project, roles)
        token = "gAAAAA" + secrets.token_urlsafe(96)
        now = time.time()
        with self._token_lock:
            expired = [t for t, (_, _, exp) in self._tokens.items() if exp < now]
            for t in expired:
                del self._tokens[t]
            self._tokens[token] = (principal, now, now + TOKEN_TTL)
        return Reply(201, {"token": self._token_body(req, principal, now, now + TOKEN_TTL)},
                     {"X-Subject-Token": token})

    def _domain_ok(self, domain: Any) -> bool:
        if not isinstance(domain, dict):
            return domain is None
        return domain.get("id") == "default" or domain.get("name") == "Default"

    def _token_body(self, req: Request, who: Principal, issued: float, expires: float) -> dict[str, Any]:
        return {
            "methods": ["password"],
            "user": {"id": who.user_id, "name": who.user_name, "domain": self.domain,
                     "password_expires_at": None},
            "project": {"id": who.project_id, "name": who.project_name, "domain": self.domain},
            "roles": [{"id": stable_id("role", r), "name": r} for r in who.roles],
            "catalog": self._catalog(req),
            "is_domain": False,
            "audit_ids": [secrets.token_urlsafe(16)],
            "issued_at": iso_us(issued),
            "expires_at": iso_us(expires),
        }

    def _catalog(self, req: Request) -> list[dict[str, Any]]:
        def service(kind: str, name: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": name, "id": stable_id(self.site, "service", kind),
                    "endpoints": [{"id": stable_id(self.site, "ep", kind, iface), "interface": iface,
                                   "region_id": self.region, "region": self.region, "url": url}
                                  for iface in ("public", "internal", "admin")]}

        catalog = [service("identity", "keystone", f"{req.base_url}/identity"),
                   service("compute", "nova", f"{req.base_url}/compute/v2.1"),
                   service("image", "glance", f"{req.base_url}/image"),
                   service("network", "neutron", f"{req.base_url}/network")]
        if self.block_storage:
            # As devstack registers Cinder: under the official type and the old alias.
            catalog += [service("block-storage", "cinder", f"{req.base_url}/volume/v3"),
                        service("volumev3", "cinderv3", f"{req.base_url}/volume/v3")]
        return catalog
