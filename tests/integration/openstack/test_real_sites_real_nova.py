"""Issue 13 against real Nova and Neutron: what the sandbox's stricter sites imitate, proved on
the real services.

- A project that sees two networks: Nova's "auto" is a 409 "Multiple possible networks found",
  which skyctl says with the field to set; left unset, skyctl takes the project's own network.
- The security group letting SSH in: made once, with the rule, and attached (with `default`).
- A diskless flavor (seeded d1.small): Nova's 403 "Only volume-backed servers are allowed for
  flavors with zero disk." is an InvalidRequest, not an authentication error; placement passes
  such flavors over.

The second network is the member project's own and lives only while this module runs: seeded
for good, it would turn every `networks="auto"` of the SDK-level tests run in this tier into
Nova's 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.errors import AuthError, InvalidRequest
from skyctl.model import FLAVOR_UNUSABLE, NodeSpec, RenderedContext, node_labels
from skyctl.polling import iterate_timeout
from skyctl_openstack.driver import OpenStackDriver
from skyctl_openstack.network import ssh_group_name

pytestmark = pytest.mark.integration

OWN_NETWORK = "it-own-net"
DISKLESS = ("d1.small", 1, 2048, 0)



@pytest.fixture(scope="module")
def own_network(real_cloud: Any) -> Iterator[Any]:
    conn = real_cloud.conn
    for old in conn.network.networks(name=OWN_NETWORK):   # left by a run that died
        conn.network.delete_network(old, ignore_missing=True)
    net = conn.network.create_network(name=OWN_NETWORK)
    conn.network.create_subnet(network_id=net.id, name=f"{OWN_NETWORK}-subnet", ip_version=4, cidr="10.98.0.0/24")
    yield net
    for _ in iterate_timeout(60, "the test network to be free to delete", interval=0.5):
        try:
            conn.network.delete_network(net, ignore_missing=True)
            break
        except Exception:  # noqa: BLE001 - ports of servers being deleted: try again
            continue


@pytest.fixture(scope="module")
def diskless_flavor(real_cloud: Any) -> str:
    name, vcpus, ram, disk = DISKLESS
    if real_cloud.admin.compute.find_flavor(name) is None:   # a stack seeded before d1.small
        real_cloud.admin.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
    return name


def _spec(driver: OpenStackDriver, real: Any, group: str, index: int, flavor: str | None = None) -> NodeSpec:
    image = next(i for i in driver.images() if i.name == real.image)
    size = next(f for f in driver.flavors() if f.name == (flavor or real.flavor))
    return NodeSpec(group=group, site=driver.site_name, image=image, flavor=size,
                    labels=node_labels(group, "l-it13", "integration", index, f"{group}-{index}"),
                    image_name=real.image)


def test_auto_with_two_networks_is_nova_409_said_with_the_field(real_cloud: Any, own_network: Any) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    d = real_cloud.driver(network="auto")
    try:
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d, real_cloud, group, 0), f"{group}-0", RenderedContext())
    finally:
        d.close()
    err = info.value
    assert err.field == "network" and "Multiple possible networks found" in err.line(), err.line()
    assert real_cloud.servers(tags=f"skyctl-group={group}") == []


def test_unset_network_takes_the_project_own_and_the_ssh_group_is_made_once(
        real_cloud: Any, own_network: Any) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    try:
        for index in range(2):   # two commands: the second finds the group the first made
            d = real_cloud.driver()
            try:
                made.append(d.create(_spec(d, real_cloud, group, index), f"{group}-{index}", RenderedContext()).id)
            finally:
                d.close()
        name = ssh_group_name("0.0.0.0/0", 22)
        groups = list(real_cloud.conn.network.security_groups(name=name, project_id=real_cloud.project_id))
        assert len(groups) == 1
        rules = [r for r in groups[0].security_group_rules if r["direction"] == "ingress"]
        assert [(r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"]) for r in rules] \
            == [("tcp", 22, 22, "0.0.0.0/0")]
        default = next(iter(real_cloud.conn.network.security_groups(name="default",
                                                                     project_id=real_cloud.project_id)))
        for sid in made:
            for _ in iterate_timeout(60, f"a port for server {sid}", interval=0.3):
                if ports := list(real_cloud.conn.network.ports(device_id=sid)):
                    break
            assert ports[0].network_id == own_network.id
            assert sorted(ports[0].security_group_ids) == sorted([groups[0].id, default.id])
    finally:
        real_cloud.delete_servers(made)


def test_a_diskless_flavor_is_refused_as_a_request_and_placement_passes_it_over(
        real_cloud: Any, diskless_flavor: str) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    d = real_cloud.driver(network="none")
    try:
        flavors = {f.name: f for f in d.flavors()}
        assert flavors[diskless_flavor].extra.get(FLAVOR_UNUSABLE)
        assert not flavors[real_cloud.flavor].extra.get(FLAVOR_UNUSABLE)
        with pytest.raises(InvalidRequest) as info:
            d.create(_spec(d, real_cloud, group, 0, diskless_flavor), f"{group}-0", RenderedContext())
    finally:
        d.close()
    err = info.value
    assert not isinstance(err, AuthError) and err.exit_code != 5
    assert "Only volume-backed servers are allowed for flavors with zero disk." in err.line()
    assert real_cloud.servers(tags=f"skyctl-group={group}") == []
