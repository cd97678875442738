"""A sandbox OpenStack site for tests: one `SiteWorld` behind an `OpenStackFront` on an
ephemeral loopback port, plus a clouds.yaml with a member cloud and an admin cloud."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skyctl.sandbox import spec as specmod
from skyctl.sandbox.openstack import OpenStackFront
from skyctl.sandbox.world import SiteWorld

IMAGE = "AlmaLinux-9-GenericCloud"


@dataclass
class SandboxSite:
    world: SiteWorld
    front: OpenStackFront
    clouds_yaml: Path
    cloud: str
    admin_cloud: str
    password: str

    def stop(self) -> None:
        self.front.stop()


def start_site(directory: Path, name: str = "home", *, boot_delay: float = 0.05,
               site_overrides: dict[str, Any] | None = None) -> SandboxSite:
    spec = specmod.resolve({"sites": {name: {"driver": "openstack", **(site_overrides or {})}}})
    world = specmod.build_world(name, spec["sites"][name], spec, seed=1)
    world.faults.boot_delay = boot_delay
    password = secrets.token_urlsafe(12)
    front = OpenStackFront(world, password=password)
    front.start()
    auth = {"auth_url": front.auth_url, "user_domain_name": "Default", "project_domain_name": "Default"}
    clouds = {"clouds": {
        name: {"auth": {**auth, "username": "demo", "password": password, "project_name": "demo"},
               "region_name": "RegionOne", "identity_api_version": 3},
        f"{name}-admin": {"auth": {**auth, "username": "admin", "password": front.admin_password,
                                   "project_name": "admin"},
                          "region_name": "RegionOne", "identity_api_version": 3},
    }}
    path = directory / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds), encoding="utf-8")
    path.chmod(0o600)
    return SandboxSite(world, front, path, name, f"{name}-admin", password)


def connect(clouds_yaml: Path, cloud: str) -> Any:
    """An openstacksdk connection for one entry of a given clouds.yaml."""
    import openstack
    import openstack.config

    region = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False).get_one(cloud=cloud)
    return openstack.connection.Connection(config=region)
