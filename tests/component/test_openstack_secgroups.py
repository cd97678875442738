"""The sandbox's Neutron security groups, spoken to with openstacksdk as a real cloud is (issue
13): each project's `default` group lets nothing in from outside, a VM answers SSH only when a
group allowing tcp/22 from the client is attached; groups and rules have Neutron's shapes,
errors and quotas; Nova resolves groups by name or id. And the networks a tenant-network site
shows: Nova's 409 when "auto" could mean two of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from openstack import exceptions as os_exc

from skyctl.sandbox.guest.server import VmSshFabric, new_host_key
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite
from skyctl.testing.sandbox import start_openstack_site as start_site


def _boot(os_conn: Any, name: str, **kw: Any) -> Any:
    image = os_conn.image.find_image(IMAGE, ignore_missing=False)
    flavor = os_conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = os_conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, networks="auto", **kw)
    return os_conn.compute.wait_for_server(server, interval=0.05, wait=30)


def _login(address: str, port: int, key: paramiko.PKey) -> None:
    transport = paramiko.Transport((address, port))
    try:
        transport.start_client(timeout=5)
        transport.auth_publickey("cloud-user", key)
    finally:
        transport.close()


def _ssh_group(os_conn: Any, name: str, cidr: str = "0.0.0.0/0", port: int = 22) -> Any:
    group = os_conn.network.create_security_group(name=name, description="ssh")
    os_conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv4",
                                            protocol="tcp", port_range_min=port, port_range_max=port,
                                            remote_ip_prefix=cidr)
    return group


def test_the_default_group_lets_nothing_in_from_outside(os_conn: Any) -> None:
    default = list(os_conn.network.security_groups(name="default"))
    assert len(default) == 1
    rules = default[0].security_group_rules
    assert sorted((r["direction"], r["ethertype"]) for r in rules) == [
        ("egress", "IPv4"), ("egress", "IPv6"), ("ingress", "IPv4"), ("ingress", "IPv6")]
    # Ingress only from the group's own members.
    assert all(r["remote_group_id"] == default[0].id for r in rules if r["direction"] == "ingress")


def test_ssh_answers_only_with_a_group_allowing_it(os_conn: Any, os_site: tuple[SandboxSite, VmSshFabric]) -> None:
    key = new_host_key()
    os_conn.compute.create_keypair(name="k", public_key=f"ssh-ed25519 {key.get_base64()} me@x")
    closed = _boot(os_conn, "closed", key_name="k")
    vm = os_site[0].world.get_vm(closed.id)
    assert [g["name"] for g in os_conn.compute.get_server(closed.id).security_groups] == ["default"]
    with pytest.raises(paramiko.SSHException):
        _login(vm.address, vm.ssh_port, key)

    group = _ssh_group(os_conn, "ssh-in")
    opened = _boot(os_conn, "open", key_name="k", security_groups=[{"name": group.id}, {"name": "default"}])
    vm2 = os_site[0].world.get_vm(opened.id)
    _login(vm2.address, vm2.ssh_port, key)
    port = list(os_conn.network.ports(device_id=opened.id))[0]
    default = next(iter(os_conn.network.security_groups(name="default")))
    assert sorted(port.security_group_ids) == sorted([group.id, default.id])

    # A rule for another address range does not let this client in.
    elsewhere = _ssh_group(os_conn, "ssh-elsewhere", cidr="192.0.2.0/24")
    far = _boot(os_conn, "far", key_name="k", security_groups=[{"name": elsewhere.name}])
    vm3 = os_site[0].world.get_vm(far.id)
    with pytest.raises(paramiko.SSHException):
        _login(vm3.address, vm3.ssh_port, key)


def test_group_and_rule_errors_as_neutron_sends_them(os_conn: Any) -> None:
    group = _ssh_group(os_conn, "dup")
    with pytest.raises(os_exc.ConflictException, match="Security group rule already exists"):
        os_conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv4",
                                                protocol="tcp", port_range_min=22, port_range_max=22,
                                                remote_ip_prefix="0.0.0.0/0")
    with pytest.raises(os_exc.BadRequestException, match="protocol"):
        os_conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                                port_range_min=22, port_range_max=22)
    default = next(iter(os_conn.network.security_groups(name="default")))
    with pytest.raises(os_exc.ConflictException, match="default security group"):
        os_conn.network.delete_security_group(default)
    # Two groups with one name: Nova wants an id.
    os_conn.network.create_security_group(name="dup")
    image = os_conn.image.find_image(IMAGE, ignore_missing=False)
    with pytest.raises(os_exc.ConflictException, match="Multiple security groups found matching 'dup'"):
        os_conn.compute.create_server(name="x", image_id=image.id, flavor_id="1", networks="auto",
                                   security_groups=[{"name": "dup"}])
    # In use: not deleted; after the server, it goes.
    server = _boot(os_conn, "user", security_groups=[{"name": group.id}])
    with pytest.raises(os_exc.ConflictException, match="in use"):
        os_conn.network.delete_security_group(group)
    os_conn.compute.delete_server(server)
    os_conn.compute.wait_for_delete(server, interval=0.05, wait=30)
    os_conn.network.delete_security_group(group)
    assert os_conn.network.find_security_group(group.id) is None


def test_the_security_group_quota_is_neutrons(os_conn: Any) -> None:
    for i in range(9):   # the default group counts: 10 in all
        os_conn.network.create_security_group(name=f"g{i}")
    with pytest.raises(os_exc.ConflictException, match=r"Quota exceeded for resources: \['security_group'\]"):
        os_conn.network.create_security_group(name="one-too-many")


def test_a_tenant_network_site_answers_nova_409_when_auto_could_mean_two(tmp_path: Path,
                                                                         connect: Callable[[Path, str], Any]) -> None:
    site = start_site(tmp_path, "sara", site_overrides={"tenant_network": True})
    conn = connect(site.clouds_yaml, site.cloud)
    try:
        nets = {n.name: n for n in conn.network.networks()}
        assert set(nets) == {"private", "shared", "public"}
        assert not nets["private"].is_shared and nets["shared"].is_shared and nets["public"].is_router_external
        assert nets["private"].project_id == conn.current_project_id
        image = conn.image.find_image(IMAGE, ignore_missing=False)
        with pytest.raises(os_exc.ConflictException) as info:
            conn.compute.create_server(name="x", image_id=image.id, flavor_id="1", networks="auto")
        assert info.value.status_code == 409
        assert "Multiple possible networks found, use a Network ID to be more specific." in str(info.value)
        server = conn.compute.create_server(name="y", image_id=image.id, flavor_id="1",
                                            networks=[{"uuid": nets["shared"].id}])
        server = conn.compute.wait_for_server(server, interval=0.05, wait=30)
        assert list(server.addresses) == ["shared"]
        assert list(conn.network.ports(device_id=server.id))[0].network_id == nets["shared"].id
    finally:
        conn.close()
        site.stop()
