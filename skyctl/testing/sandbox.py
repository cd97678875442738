"""In-process sandbox sites for tests: one `SiteWorld` behind its OpenStack-compatible or
OpenNebula-compatible front on an ephemeral loopback port, with the credentials a driver needs
(a clouds.yaml, a ONE_AUTH file). The plugin's `openstack_sandbox_site` and
`opennebula_sandbox_site` fixtures start one per test; these functions serve other shapes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from skyctl.sandbox import spec as sandbox_spec
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.sandbox.openstack import OpenStackFront
from skyctl.sandbox.world import Quota, SiteWorld

OPENSTACK_IMAGE = "AlmaLinux-9-GenericCloud"    # a Glance image every sandbox OpenStack site offers
OPENNEBULA_IMAGE = "AlmaLinux 9"                # a VM template every sandbox OpenNebula site offers


def _build_world(name: str, site: dict[str, Any], *, boot_delay: float, seed: int) -> SiteWorld:
    spec = sandbox_spec.resolve({"sites": {name: site}} if site else None)
    world = sandbox_spec.build_world(name, spec["sites"][name], spec, seed=seed)
    world.faults.boot_delay = boot_delay
    return world


@dataclass
class OpenStackSite:
    """A running sandbox OpenStack site; `cloud` (member) and `admin_cloud` name its entries in
    `clouds_yaml`, next to `<cloud>-appcred` (an application credential of the member) and
    `<cloud>-oidc` (an OpenID Connect access token, auth_type v3oidcaccesstoken)."""

    world: SiteWorld
    front: OpenStackFront
    clouds_yaml: Path
    cloud: str
    admin_cloud: str
    password: str
    default_quota: Quota = field(init=False)

    def __post_init__(self) -> None:
        self.default_quota = replace(self.world.quota)

    def set_instance_quota(self, n: int | None) -> None:
        """The member project's instance quota (None: back to the site's own number)."""
        self.world.quota.instances = self.default_quota.instances if n is None else n

    def stop(self) -> None:
        self.front.stop()


def start_openstack_site(directory: Path, name: str = "home", *, boot_delay: float = 0.05,
                         site_overrides: dict[str, Any] | None = None) -> OpenStackSite:
    """Start the sandbox federation's OpenStack site `name` (fields in `site_overrides` merged
    over it) and write `directory`/clouds.yaml with a member cloud `name` and `name`-admin."""
    world = _build_world(name, {"driver": "openstack", **(site_overrides or {})}, boot_delay=boot_delay, seed=1)
    password = secrets.token_urlsafe(12)
    front = OpenStackFront(world, password=password)
    front.start()
    auth = {"auth_url": front.auth_url, "user_domain_name": "Default", "project_domain_name": "Default"}
    from skyctl.sandbox.openstack.keystone import OIDC_IDP, OIDC_PROTOCOL

    cred_id, cred_secret = front.keystone.add_application_credential("skyctl")
    access_token = secrets.token_urlsafe(32)
    front.keystone.oidc_tokens[access_token] = "alice@example.org"
    clouds = {"clouds": {
        f"{name}-appcred": {"auth_type": "v3applicationcredential",
                            "auth": {"auth_url": front.auth_url, "application_credential_id": cred_id,
                                     "application_credential_secret": cred_secret},
                            "region_name": "RegionOne", "identity_api_version": 3},
        f"{name}-oidc": {"auth_type": "v3oidcaccesstoken",
                         "auth": {"auth_url": front.auth_url, "identity_provider": OIDC_IDP,
                                  "protocol": OIDC_PROTOCOL, "access_token": access_token,
                                  "project_name": "demo", "project_domain_name": "Default"},
                         "region_name": "RegionOne", "identity_api_version": 3},
        name: {"auth": {**auth, "username": "demo", "password": password, "project_name": "demo"},
               "region_name": "RegionOne", "identity_api_version": 3},
        f"{name}-admin": {"auth": {**auth, "username": "admin", "password": front.admin_password,
                                   "project_name": "admin"},
                          "region_name": "RegionOne", "identity_api_version": 3},
    }}
    path = directory / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds), encoding="utf-8")
    path.chmod(0o600)
    return OpenStackSite(world, front, path, name, f"{name}-admin", password)


def make_opennebula_world(boot_delay: float = 0.05, *, seed: int = 1, **site: object) -> SiteWorld:
    """The default federation's OpenNebula site `cc`, with `site` fields merged over it."""
    return _build_world("cc", dict(site), boot_delay=boot_delay, seed=seed)


@contextmanager
def serving_opennebula(world: SiteWorld, password: str) -> Iterator[OpenNebulaFront]:
    """`world` behind an XML-RPC front (the ordinary user `skyuser`) while the block runs."""
    front = OpenNebulaFront(world, password=password)
    front.start()
    try:
        yield front
    finally:
        front.stop()


@dataclass
class OpenNebulaSite:
    """A running sandbox OpenNebula site; `one_auth` is a ONE_AUTH file that logs in to it."""

    world: SiteWorld
    front: OpenNebulaFront
    one_auth: Path
    ca_bundle: Path | None = None     # with tls=True: the CA that signed the front's certificate
    default_quota: Quota = field(init=False)

    def __post_init__(self) -> None:
        self.default_quota = replace(self.world.quota)

    @property
    def endpoint(self) -> str:
        return self.front.endpoint

    def set_instance_quota(self, n: int | None) -> None:
        """The user's VM quota (None: back to the site's own number)."""
        self.world.quota.instances = self.default_quota.instances if n is None else n

    def stop(self) -> None:
        self.front.stop()


def start_opennebula_site(directory: Path, *, boot_delay: float = 0.05, seed: int = 1, tls: bool = False,
                          **site: object) -> OpenNebulaSite:
    """Start the sandbox federation's OpenNebula site (fields in `site` merged over it) and write
    `directory`/one_auth for its user (an ordinary one, in group users). `tls`: serve HTTPS
    with a certificate from a fresh CA written in `directory`."""
    from skyctl.sandbox.opennebula.methods import SANDBOX_USER as front_user

    world = make_opennebula_world(boot_delay, seed=seed, **site)
    password = secrets.token_urlsafe(12)
    one_auth = directory / "one_auth"
    one_auth.write_text(f"{front_user}:{password}\n", encoding="utf-8")
    one_auth.chmod(0o600)
    server_tls = None
    if tls:
        from skyctl.sandbox.tls import make_server_tls

        server_tls = make_server_tls(directory, "one")
    front = OpenNebulaFront(world, username=front_user, password=password,
                            tls=server_tls.context() if server_tls else None)
    front.start()
    return OpenNebulaSite(world, front, one_auth, server_tls.ca_pem if server_tls else None)
