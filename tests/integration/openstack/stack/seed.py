"""Seed the local OpenStack for skyctl's integration tier. Idempotent.

  seed.py catalog    Keystone services/endpoints, project 'demo' with member user 'demo'
  seed.py resources  flavors m1.tiny..m1.large and diskless d1.small, image 'cirros' (1 KiB dummy), shared network
  seed.py probe      boot one server as the member user, wait for ACTIVE, delete it: proves the
                     stack schedules and builds, and pays the services' first-request costs

Runs with any Python that has openstacksdk; reads OS_CLIENT_CONFIG_FILE (cloud 'skyctl-admin').
"""

from __future__ import annotations

import io
import sys
import time

import openstack

ADMIN_CLOUD = "skyctl-admin"
MEMBER_CLOUD = "skyctl"
REGION = "RegionOne"
SERVICES = [
    ("nova", "compute", "http://127.0.0.1:8774/v2.1"),
    ("placement", "placement", "http://127.0.0.1:8778"),
    ("glance", "image", "http://127.0.0.1:9292"),
    ("neutron", "network", "http://127.0.0.1:9696"),
]
# d1.small is diskless (Sovereign Cloud Stack's kind): Nova boots it only from a volume.
FLAVORS = [("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20),
           ("m1.medium", 2, 4096, 40), ("m1.large", 4, 8192, 80), ("d1.small", 1, 2048, 0)]
NETWORK, SUBNET, CIDR = "skyctl-net", "skyctl-subnet", "10.99.0.0/24"


def seed_catalog(conn: openstack.connection.Connection) -> None:
    ident = conn.identity
    for name, service_type, url in SERVICES:
        service = next((s for s in ident.services() if s.type == service_type), None) \
            or ident.create_service(name=name, type=service_type, is_enabled=True)
        have = {e.interface for e in ident.endpoints(service_id=service.id)}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                ident.create_endpoint(service_id=service.id, interface=interface, url=url,
                                      region_id=REGION)
    project = ident.find_project("demo") or ident.create_project(name="demo", domain_id="default")
    user = ident.find_user("demo") or ident.create_user(
        name="demo", password="demo", domain_id="default", default_project_id=project.id)
    for role in ("member", "reader"):
        ident.assign_project_role_to_user(project, user, ident.find_role(role))
    print(f"catalog ready; project demo = {project.id}")


def seed_resources(conn: openstack.connection.Connection) -> None:
    have = {f.name for f in conn.compute.flavors()}
    for name, vcpus, ram, disk in FLAVORS:
        if name not in have:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
    if not conn.image.find_image("cirros"):
        # The fake virt driver boots nothing: a tiny blob is enough to be a real Glance image.
        conn.image.create_image(name="cirros", disk_format="qcow2", container_format="bare",
                                visibility="public", data=io.BytesIO(b"\0" * 1024),
                                validate_checksum=False)
    # One shared network, so networks='auto' resolves to it and servers get an address.
    net = conn.network.find_network(NETWORK) or conn.network.create_network(name=NETWORK,
                                                                            is_shared=True)
    if not list(conn.network.subnets(network_id=net.id)):
        conn.network.create_subnet(network_id=net.id, name=SUBNET, ip_version=4, cidr=CIDR,
                                   enable_dhcp=False)
    print("flavors:", sorted(f.name for f in conn.compute.flavors()),
          "images:", [i.name for i in conn.image.images()],
          "networks:", [n.name for n in conn.network.networks()])


def probe(conn: openstack.connection.Connection) -> None:
    image = conn.image.find_image("cirros", ignore_missing=False)
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    t0 = time.monotonic()
    server = conn.compute.create_server(name="t-probe-ready", image_id=image.id, flavor_id=flavor.id,
                                        networks="none")
    server = conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=120)
    active = time.monotonic() - t0
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.2, wait=120)
    print(f"probe server ACTIVE in {active:.1f}s, deleted in {time.monotonic() - t0 - active:.1f}s")


def main() -> None:
    phase = sys.argv[1]
    if phase == "probe":
        probe(openstack.connect(cloud=MEMBER_CLOUD))
        return
    conn = openstack.connect(cloud=ADMIN_CLOUD)
    {"catalog": seed_catalog, "resources": seed_resources}[phase](conn)


if __name__ == "__main__":
    main()
