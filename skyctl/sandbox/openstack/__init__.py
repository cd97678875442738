"""An OpenStack-compatible HTTP front for one sandbox `SiteWorld`: `OpenStackFront` puts the
imitated services on one loopback port, each under its path: Keystone v3 (`/identity`), Nova
v2.1 (`/compute`), Glance v2 (`/image`), Neutron v2.0 (`/network`) and, where the site has
block storage, Cinder v3 (`/volume`). They answer what
openstacksdk/keystoneauth send for everything skyctl does, with the bodies, status codes and
error texts the real services use.

Design: the standard library's threading HTTP server speaking HTTP/1.1 with keep-alive
(`http`); one object per service, each handed the services it asks (Nova asks Keystone and
Neutron, as the real one does), registered with the router by path.
"""

from __future__ import annotations

import secrets
import ssl

from skyctl.sandbox.openstack.cinder import Cinder
from skyctl.sandbox.openstack.glance import Glance
from skyctl.sandbox.openstack.http import ApiServer, Router
from skyctl.sandbox.openstack.keystone import Keystone
from skyctl.sandbox.openstack.neutron import Neutron
from skyctl.sandbox.openstack.nova import Nova
from skyctl.sandbox.world import SiteWorld


class OpenStackFront:
    """Keystone + Nova + Glance + Neutron (+ Cinder) for one `SiteWorld`, on one loopback port."""

    def __init__(self, world: SiteWorld, *, host: str = "127.0.0.1", port: int = 0,
                 username: str = "demo", password: str | None = None, project: str = "demo",
                 region: str = "RegionOne", admin_username: str = "admin",
                 admin_password: str | None = None, admin_project: str = "admin",
                 tls: ssl.SSLContext | None = None) -> None:
        self.world = world
        self.tls = tls          # serve HTTPS with this context (a site with its own CA)
        self.host = host
        self.port = port
        # Not guessable unless given: tests and the sandbox runtime read them from here.
        self.password = password or secrets.token_urlsafe(16)
        self.admin_password = admin_password or secrets.token_urlsafe(16)
        self.keystone = Keystone(world.name, region=region, username=username, password=self.password,
                                 project=project, admin_username=admin_username,
                                 admin_password=self.admin_password, admin_project=admin_project,
                                 block_storage=world.block_storage)
        self.project_id = self.keystone.project_id     # the member project's
        self.neutron = Neutron(world, self.keystone)
        self.nova = Nova(world, self.keystone, self.neutron)
        self.glance = Glance(world, self.keystone)
        self.cinder = Cinder(world, self.keystone)
        self._router = Router(root=self.keystone.versions)
        self._router.add("identity", self.keystone.route)
        self._router.add("compute", self.nova.route)
        self._router.add("image", self.glance.route)
        self._router.add("network", self.neutron.route)
        if world.block_storage:
            self._router.add("volume", self.cinder.route)
        self._httpd: ApiServer | None = None

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    def start(self) -> None:
        if self._httpd is not None:
            return
        httpd = ApiServer((self.host, self.port), self._router, self.world, tls=self.tls)
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
