"""Nova v2.1 imitated (`/compute`): versions and microversion negotiation (2.1 to 2.93, Zed),
the token check, routing to servers and quotas (their own modules), and the small resources:
flavors, key pairs (Nova's checks and texts) and the availability zone.

Facts measured on a real Nova Zed: quota 403 text, tag filters on the server side, `networks`
required from 2.37, flavor embedded from 2.47, tags at create from 2.52...
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from typing import Any
from urllib.parse import urlencode

from skyctl.sandbox.openstack.http import HttpError, Reply, Request, iso_us, nova_error, short
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.openstack.neutron import Neutron
from skyctl.sandbox.openstack.quota import Quotas
from skyctl.sandbox.openstack.servergroups import ServerGroups
from skyctl.sandbox.openstack.servers import MAX_LIMIT, Servers
from skyctl.sandbox.world import SFlavor, SiteWorld

MIN_MICROVERSION = (2, 1)
MAX_MICROVERSION = (2, 93)        # Nova Zed, the release the reference control plane runs


class Nova:
    """The compute service of one site."""

    def __init__(self, world: SiteWorld, keystone: Keystone, neutron: Neutron) -> None:
        self.world = world
        self.keystone = keystone
        self.server_groups = ServerGroups(world)
        self.servers = Servers(world, keystone, neutron, self.server_groups)
        self.quotas = Quotas(world, keystone, self.server_groups)

    def route(self, req: Request, rest: list[str]) -> Reply:
        try:
            return self._compute(req, rest)
        except HttpError as e:
            # Nova's error answers name the microversion too (2.1 when the header was not read).
            if req.microversion != MIN_MICROVERSION or req.path.startswith("/compute/v2"):
                mv = "%d.%d" % req.microversion
                e.headers = {**e.headers, "OpenStack-API-Version": f"compute {mv}",
                             "X-OpenStack-Nova-API-Version": mv}
            raise

    def _compute(self, req: Request, rest: list[str]) -> Reply:
        if not rest:
            return Reply(200, {"versions": [self._version(req, False), self._version(req, True)]})
        if rest[0] not in ("v2.1", "v2"):
            raise nova_error(404, "The resource could not be found.")
        rest = rest[1:]
        req.microversion = self._microversion(req)
        mv = "%d.%d" % req.microversion
        reply = self._routes(req, rest)
        hdrs = dict(reply.headers or {})
        hdrs.update({"OpenStack-API-Version": f"compute {mv}", "X-OpenStack-Nova-API-Version": mv,
                     "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"})
        reply.headers = hdrs
        return reply

    def _routes(self, req: Request, rest: list[str]) -> Reply:
        if not rest:
            return Reply(200, {"version": self._version(req, True)})
        req.principal = self.keystone.authenticate(req)
        # Older clients put the project id in the path (/v2.1/{project_id}/servers).
        if rest[0] == req.principal.project_id:
            rest = rest[1:]
        m, head = req.method, rest[0] if rest else ""
        n = len(rest)
        if head == "servers":
            return self.servers.route(req, rest[1:])
        elif head == "flavors" and m == "GET":
            if n == 1:
                return self._flavors(req, detail=False)
            if n == 2 and rest[1] == "detail":
                return self._flavors(req, detail=True)
            flavor = self.world.flavors.get(rest[1])
            if flavor is None:
                raise nova_error(404, f"Flavor {rest[1]} could not be found.")
            if n == 2:
                return Reply(200, {"flavor": self._flavor_view(req, flavor, True)})
            if n == 3 and rest[2] == "os-extra_specs":
                return Reply(200, {"extra_specs": dict(flavor.extra_specs)})
        elif head == "os-server-groups":
            return self.server_groups.route(req, rest[1:])
        elif head == "os-keypairs":
            return self._keypairs(req, rest[1:])
        elif head == "limits" and m == "GET" and n == 1:
            return self.quotas.limits(req)
        elif head == "os-quota-sets" and n >= 2:
            return self.quotas.quota_sets(req, rest[1], rest[2:])
        elif head == "os-availability-zone" and m == "GET":
            return Reply(200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                         "hosts": None}]})
        raise nova_error(404, "The resource could not be found.")

    def _version(self, req: Request, v21: bool) -> dict[str, Any]:
        if not v21:
            return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
                    "updated": "2025-07-04T12:00:00Z",
                    "links": [{"rel": "self", "href": f"{req.base_url}/compute/v2/"}]}
        return {"id": "v2.1", "status": "CURRENT", "version": "%d.%d" % MAX_MICROVERSION,
                "min_version": "%d.%d" % MIN_MICROVERSION, "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{req.base_url}/compute/v2.1/"},
                          {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def _microversion(self, req: Request) -> tuple[int, int]:
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
            raise nova_error(400, f"Invalid API version request string: {raw}")
        ver = (int(m.group(1)), int(m.group(2)))
        if not MIN_MICROVERSION <= ver <= MAX_MICROVERSION:
            raise HttpError(406, "Version %s is not supported by the API. Minimum is %d.%d and maximum is %d.%d."
                            % (raw, *MIN_MICROVERSION, *MAX_MICROVERSION), "computeFault")
        return ver

    # ------------------------------------------------------------------ flavors, key pairs
    def _flavor_view(self, req: Request, f: SFlavor, detail: bool) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{req.base_url}/compute/v2.1/flavors/{f.id}"},
                 {"rel": "bookmark", "href": f"{req.base_url}/compute/flavors/{f.id}"}]
        body: dict[str, Any] = {"id": f.id, "name": f.name, "links": links}
        if req.mv(2, 55):
            body["description"] = None
        if detail:
            body.update({"ram": f.ram_mib, "disk": f.disk_gib, "vcpus": f.vcpus,
                         "swap": 0 if req.mv(2, 75) else "", "OS-FLV-EXT-DATA:ephemeral": 0,
                         "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
                         "rxtx_factor": 1.0})
            if req.mv(2, 61):
                body["extra_specs"] = dict(f.extra_specs)
        return body

    def _flavors(self, req: Request, detail: bool) -> Reply:
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
            body["flavors_links"] = [{"rel": "next", "href": f"{req.base_url}/compute/v2.1/flavors"
                                      f"{'/detail' if detail else ''}?{urlencode(params)}"}]
        return Reply(200, body)

    def _keypair_view(self, req: Request, name: str, public: str, detail: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "public_key": public, "fingerprint": _fingerprint(public)}
        if req.mv(2, 2):
            body["type"] = "ssh"
        if detail:
            assert req.principal is not None
            body.update({"user_id": req.principal.user_id, "deleted": False, "created_at": iso_us(time.time()),
                         "updated_at": None, "deleted_at": None, "id": abs(hash(name)) % 100000})
        return body

    def _keypairs(self, req: Request, rest: list[str]) -> Reply:
        kp = self.world.keypairs
        m = req.method
        with self.world.lock:
            if not rest and m == "GET":
                return Reply(200, {"keypairs": [{"keypair": self._keypair_view(req, n, k, False)}
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
                        raise nova_error(400, f"Invalid input for field/attribute keypair. Value: {short(data)}. "
                                              "'public_key' is a required property")
                    public, private = _generate_keypair()   # Nova before 2.92 makes one
                if not isinstance(public, str) or not _valid_public_key(public):
                    raise nova_error(400, "Keypair data is invalid: failed to generate fingerprint")
                kp[name] = public.strip()
                view = {**self._keypair_view(req, name, kp[name], False),
                        "user_id": req.principal.user_id if req.principal else ""}
                if private is not None:
                    view["private_key"] = private
                return Reply(201 if req.mv(2, 2) else 200, {"keypair": view})
            if len(rest) == 1:
                name = rest[0]
                if name not in kp:
                    raise nova_error(404, f"Keypair {name} not found for user "
                                          f"{req.principal.user_id if req.principal else ''}")
                if m == "GET":
                    return Reply(200, {"keypair": self._keypair_view(req, name, kp[name], True)})
                if m == "DELETE":
                    del kp[name]
                    return Reply(204 if req.mv(2, 2) else 202)
        raise nova_error(404, "The resource could not be found.")


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
