"""Keystone v3 imitated (`/identity`): a member and an admin user, their projects, password,
token and application-credential authentication with project scope, OpenID Connect access
tokens exchanged at the OS-FEDERATION auth URL (as Apache's mod_auth_openidc and Keystone's
mapping do it) and rescoped, the service catalog, and the token check every other service
calls first. Also who owns a server and who may see it, which Nova and Neutron share.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from skyctl.sandbox.openstack.http import HttpError, Principal, Reply, Request, iso_us, stable_id
from skyctl.sandbox.world import SVM

TOKEN_TTL = 3600.0
KEYSTONE_VERSION = "v3.14"
# The identity provider and protocol of the site's OpenID Connect federation (clouds.yaml:
# auth_type v3oidcaccesstoken, identity_provider, protocol, access_token).
OIDC_IDP, OIDC_PROTOCOL = "sandbox-idp", "openid"
# keystone/exception.py Unauthorized (a SecurityError: details hidden unless insecure_debug).
DENIED = "The request you have made requires authentication."


@dataclass
class _Token:
    who: Principal
    issued: float
    expires: float
    methods: list[str]
    scoped: bool = True                        # False: an unscoped (federated) token
    app_cred: dict[str, Any] | None = None     # the application credential it came from
    federated: dict[str, Any] | None = None    # OS-FEDERATION of the user


@dataclass
class _AppCred:
    id: str
    name: str
    secret: str
    user_name: str
    project: str
    description: str = ""
    unrestricted: bool = False
    roles: tuple[str, ...] = field(default_factory=tuple)


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
        self._tokens: dict[str, _Token] = {}
        self._token_lock = threading.Lock()
        self._app_creds: dict[str, _AppCred] = {}
        # OIDC access tokens the site's OpenID provider accepts -> the subject's user name
        self.oidc_tokens: dict[str, str] = {}
        self.token_requests = 0                 # POSTs to /v3/auth/tokens and federated auth

    # ------------------------------------------------------------ credentials the tests hand out
    def add_application_credential(self, name: str, *, user: str | None = None, secret: str | None = None) -> \
            tuple[str, str]:
        """An application credential of `user` (the member) for its project: (id, secret)."""
        user = user or next(iter(self._users))
        entry = self._users[user]
        cred = _AppCred(id=secrets.token_hex(16), name=name, secret=secret or secrets.token_urlsafe(32),
                        user_name=user, project=entry[2], roles=entry[3])
        with self._token_lock:
            self._app_creds[cred.id] = cred
        return cred.id, cred.secret

    def revoke_all_tokens(self) -> None:
        """What a Keystone restart with rotated fernet keys does to every token issued."""
        with self._token_lock:
            self._tokens.clear()

    # ------------------------------------------------------------------ for the other services
    def authenticate(self, req: Request) -> Principal:
        token = req.headers.get("X-Auth-Token")
        now = time.time()
        with self._token_lock:
            entry = self._tokens.get(token or "")
        # keystonemiddleware refuses an unscoped token for a project's service
        if entry is None or entry.expires < now or not entry.scoped:
            raise HttpError(401, DENIED, None, {"WWW-Authenticate": f'Keystone uri="{req.base_url}/identity"'})
        return entry.who

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
            if entry is None or entry.expires < time.time() or (subject != req.headers.get("X-Auth-Token")
                                                                and not who.is_admin):
                raise HttpError(404, f"Could not find token: {subject[:8]}...", None)
            if req.method == "HEAD":
                return Reply(200)
            return Reply(200, {"token": self._token_body(req, entry)}, {"X-Subject-Token": subject})
        if rest[:1] == ["OS-FEDERATION"] and len(rest) == 6 and rest[1] == "identity_providers" \
                and rest[3] == "protocols" and rest[5] == "auth" and req.method in ("GET", "POST"):
            return self._federated_token(req, rest[2], rest[4])
        who = self.authenticate(req)
        if rest[0] == "users" and len(rest) == 3 and rest[2] == "application_credentials" and req.method == "POST":
            return self._create_app_cred(req, who, rest[1])
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
        with self._token_lock:
            self.token_requests += 1
        try:
            auth = json.loads(req.body)["auth"]
            identity = auth["identity"]
            methods = identity["methods"]
        except (ValueError, KeyError, TypeError):
            raise HttpError(400, "Invalid input for field 'identity': 'methods' is a required property", None) \
                from None
        denied = HttpError(401, DENIED, None)
        scope = auth.get("scope")
        app_cred: _AppCred | None = None
        token_methods = list(methods) if isinstance(methods, list) else []
        federated = None
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
        elif "application_credential" in methods:
            # keystone/auth/plugins/application_credential.py: by id, or by name with its user;
            # a wrong secret is Unauthorized, and the credential fixes the scope itself.
            given = identity.get("application_credential") or {}
            with self._token_lock:
                creds = list(self._app_creds.values())
            if given.get("id"):
                match = [c for c in creds if c.id == given["id"]]
            else:
                user = given.get("user") or {}
                match = [c for c in creds if c.name == given.get("name")
                         and (user.get("name") == c.user_name or user.get("id") == self._users[c.user_name][1])]
            secret = given.get("secret")
            if not match or not isinstance(secret, str) \
                    or not secrets.compare_digest(secret.encode(), match[0].secret.encode()):
                raise denied
            if scope is not None:
                raise denied   # "Application credentials cannot request a scope." (hidden detail)
            app_cred = match[0]
            name = app_cred.user_name
            _, uid, home_project, roles = self._users[name]
            roles = app_cred.roles or roles
        elif "token" in methods:
            old = ((identity.get("token") or {}).get("id")) or ""
            with self._token_lock:
                entry = self._tokens.get(old)
            if entry is None or entry.expires < time.time():
                raise denied
            p = entry.who
            name, uid, home_project, roles = p.user_name, p.user_id, p.project_name, p.roles
            federated = entry.federated
            token_methods = ["token", *entry.methods]
        else:
            raise denied
        project = home_project
        if isinstance(scope, dict) and "project" in scope:
            want = scope["project"] or {}
            match_p = [n for n, pid in self.projects.items()
                       if want.get("id") == pid or (want.get("name") == n and self._domain_ok(want.get("domain")))]
            if not match_p or match_p[0] != home_project:
                raise denied
        elif scope is not None:
            raise denied   # domain/system scope: no role assignment here
        principal = Principal(uid, name, self.projects[project], project, roles)
        cred_view = None if app_cred is None else {"id": app_cred.id, "name": app_cred.name,
                                                    "restricted": not app_cred.unrestricted}
        return self._new_token(req, _Token(principal, 0, 0, token_methods, True, cred_view, federated))

    def _new_token(self, req: Request, entry: _Token) -> Reply:
        token = "gAAAAA" + secrets.token_urlsafe(96)
        now = time.time()
        entry.issued, entry.expires = now, now + TOKEN_TTL
        with self._token_lock:
            for t in [t for t, e in self._tokens.items() if e.expires < now]:
                del self._tokens[t]
            self._tokens[token] = entry
        return Reply(201, {"token": self._token_body(req, entry)}, {"X-Subject-Token": token})

    def _federated_token(self, req: Request, idp: str, protocol: str) -> Reply:
        """An unscoped token for an OpenID Connect access token. In front of Keystone, Apache's
        mod_auth_openidc checks the bearer token (its 401 carries `WWW-Authenticate: Bearer
        error="invalid_token"`); Keystone maps the claims to a user and a group
        (keystone/api/os_federation.py, keystone/auth/plugins/mapped.py)."""
        with self._token_lock:
            self.token_requests += 1
        if idp != OIDC_IDP:
            raise HttpError(404, f"Could not find Identity Provider: {idp}.", None)
        if protocol != OIDC_PROTOCOL:
            raise HttpError(404, f"Could not find federated protocol {protocol} for Identity Provider: {idp}.", None)
        bearer = (req.headers.get("Authorization") or "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        subject = next((u for t, u in self.oidc_tokens.items() if secrets.compare_digest(t.encode(), token.encode())),
                       None) if token else None
        if subject is None:
            raise HttpError(401, "Unauthorized", None, {
                "WWW-Authenticate": 'Bearer error="invalid_token", error_description="Token not active"'})
        member = next(iter(self._users))
        _, _, home_project, roles = self._users[member]
        principal = Principal(stable_id(self.site, "user", "federated", subject), subject,
                              self.projects[home_project], home_project, roles)
        federated = {"identity_provider": {"id": idp}, "protocol": {"id": protocol},
                     "groups": [{"id": stable_id(self.site, "group", "federated-users")}]}
        return self._new_token(req, _Token(principal, 0, 0, [protocol], False, None, federated))

    def _create_app_cred(self, req: Request, who: Principal, user_id: str) -> Reply:
        """POST /v3/users/{user_id}/application_credentials (keystone/api/users.py)."""
        token = req.headers.get("X-Auth-Token") or ""
        with self._token_lock:
            entry = self._tokens.get(token)
        if user_id != who.user_id:
            raise HttpError(403, "You are not authorized to perform the requested action: "
                                 "identity:create_application_credential.", None)
        if entry is not None and entry.app_cred is not None and entry.app_cred.get("restricted"):
            raise HttpError(403, "Using method 'application_credential' is not allowed for managing "
                                 "additional application credentials.", None)
        try:
            body = json.loads(req.body)["application_credential"]
            name = body["name"]
        except (ValueError, KeyError, TypeError):
            raise HttpError(400, "Invalid input for field 'application_credential': 'name' is a required property",
                            None) from None
        with self._token_lock:
            if any(c.name == name and c.user_name == who.user_name for c in self._app_creds.values()):
                raise HttpError(409, "Conflict occurred attempting to store application_credential - "
                                     "Duplicate application credential.", None)
        cred_id, secret = self.add_application_credential(name, user=who.user_name, secret=body.get("secret"))
        return Reply(201, {"application_credential": {
            "id": cred_id, "name": name, "description": body.get("description"), "expires_at": None,
            "project_id": who.project_id, "user_id": who.user_id, "secret": secret,
            "unrestricted": bool(body.get("unrestricted", False)), "access_rules": [], "system": None,
            "roles": [{"id": stable_id("role", r), "name": r, "domain_id": None} for r in who.roles],
            "links": {"self": f"{req.base_url}/identity/v3/users/{user_id}/application_credentials/{cred_id}"}}})

    def _domain_ok(self, domain: Any) -> bool:
        if not isinstance(domain, dict):
            return domain is None
        return domain.get("id") == "default" or domain.get("name") == "Default"

    def _token_body(self, req: Request, entry: _Token) -> dict[str, Any]:
        who = entry.who
        user: dict[str, Any] = {"id": who.user_id, "name": who.user_name, "domain": self.domain,
                                "password_expires_at": None}
        if entry.federated is not None:
            user["domain"] = {"id": "Federated", "name": "Federated"}
            user["OS-FEDERATION"] = entry.federated
        body: dict[str, Any] = {"methods": entry.methods, "user": user, "audit_ids": [secrets.token_urlsafe(16)],
                                "issued_at": iso_us(entry.issued), "expires_at": iso_us(entry.expires)}
        if entry.scoped:
            body.update(project={"id": who.project_id, "name": who.project_name, "domain": self.domain},
                        roles=[{"id": stable_id("role", r), "name": r} for r in who.roles],
                        catalog=self._catalog(req), is_domain=False)
        if entry.app_cred is not None:
            body["application_credential"] = entry.app_cred
        return body

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
