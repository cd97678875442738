"""The sandbox's Neutron floating IPs and ports, spoken to with openstacksdk as a real cloud is:
allocate from the external network, attach to a server's port, see it in Nova's addresses,
detach, release, the Neutron error bodies (404, quota 409), and that an attached floating IP
really reaches the VM's SSH endpoint (the guest server binds it)."""

from __future__ import annotations

from typing import Any

import paramiko
import pytest
from openstack import exceptions as os_exc

from skyctl.sandbox.guest.server import VmSshFabric, fingerprint, new_host_key
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite


def _external(os_conn: Any) -> Any:
    nets = list(os_conn.network.networks(is_router_external=True))
    assert len(nets) == 1
    return nets[0]


def _boot(os_conn: Any, name: str, **kw: Any) -> Any:
    image = os_conn.image.find_image(IMAGE, ignore_missing=False)
    flavor = os_conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = os_conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, networks="auto", **kw)
    return os_conn.compute.wait_for_server(server, interval=0.05, wait=30)


def _port(os_conn: Any, server: Any) -> Any:
    ports = list(os_conn.network.ports(device_id=server.id))
    assert len(ports) == 1 and ports[0].device_owner == "compute:nova"
    return ports[0]


def _floating_in_nova(os_conn: Any, server_id: str) -> list[str]:
    server = os_conn.compute.get_server(server_id)
    return [a["addr"] for entries in server.addresses.values() for a in entries
            if a.get("OS-EXT-IPS:type") == "floating"]


def test_allocate_attach_show_detach_release(os_conn: Any) -> None:
    ext = _external(os_conn)
    assert ext.name == "public" and all(not n.is_router_external for n in os_conn.network.networks(name="private"))
    server = _boot(os_conn, "fl-a")
    port = _port(os_conn, server)
    fixed = port.fixed_ips[0]["ip_address"]

    fip = os_conn.network.create_ip(floating_network_id=ext.id, description="skyctl test")
    assert fip.status == "DOWN" and fip.port_id is None and fip.fixed_ip_address is None
    assert fip.floating_ip_address.startswith("127.200.") and fip.floating_network_id == ext.id
    assert fip.floating_ip_address != fixed and fip.project_id == os_conn.current_project_id
    assert _floating_in_nova(os_conn, server.id) == []

    attached = os_conn.network.update_ip(fip, port_id=port.id)
    assert attached.status == "ACTIVE" and attached.port_id == port.id and attached.fixed_ip_address == fixed
    assert attached.router_id and attached.port_details["device_id"] == server.id
    assert _floating_in_nova(os_conn, server.id) == [fip.floating_ip_address]
    assert [f.id for f in os_conn.network.ips(port_id=port.id)] == [fip.id]
    assert [f.id for f in os_conn.network.ips(floating_ip_address=fip.floating_ip_address)] == [fip.id]
    assert os_conn.network.get_ip(fip.id).description == "skyctl test"

    detached = os_conn.network.update_ip(fip, port_id=None)
    assert detached.status == "DOWN" and detached.port_id is None
    assert _floating_in_nova(os_conn, server.id) == []

    os_conn.network.delete_ip(fip)
    with pytest.raises(os_exc.NotFoundException):
        os_conn.network.get_ip(fip.id)
    assert list(os_conn.network.ips()) == []


def test_the_neutron_error_bodies(os_conn: Any, os_site: tuple[SandboxSite, VmSshFabric]) -> None:
    ext = _external(os_conn)
    missing = "3c5d4c6b-0000-4000-8000-000000000000"
    resp = os_conn.network.get(f"/floatingips/{missing}")
    assert resp.status_code == 404
    assert resp.json() == {"NeutronError": {"type": "FloatingIPNotFound",
                                            "message": f"Floating IP {missing} could not be found", "detail": ""}}
    assert os_conn.network.delete(f"/floatingips/{missing}").status_code == 404
    with pytest.raises(os_exc.ResourceNotFound):
        os_conn.network.delete_ip(missing, ignore_missing=False)

    resp = os_conn.network.post("/floatingips", json={"floatingip": {"floating_network_id": ext.id,
                                                                   "port_id": missing}})
    assert resp.status_code == 404 and resp.json()["NeutronError"]["type"] == "PortNotFound"
    private = next(iter(os_conn.network.networks(name="private")))
    resp = os_conn.network.post("/floatingips", json={"floatingip": {"floating_network_id": private.id}})
    assert resp.status_code == 400 and "not a valid external network" in resp.json()["NeutronError"]["message"]
    resp = os_conn.network.post("/floatingips", json={"floatingip": {}})
    assert resp.status_code == 400 and "floating_network_id" in resp.json()["NeutronError"]["message"]

    os_site[0].world.quota.floating_ips = 1
    os_conn.network.create_ip(floating_network_id=ext.id)
    resp = os_conn.network.post("/floatingips", json={"floatingip": {"floating_network_id": ext.id}})
    assert resp.status_code == 409
    assert resp.json()["NeutronError"] == {"type": "OverQuota",
                                           "message": "Quota exceeded for resources: ['floatingip'].", "detail": ""}
    assert os_conn.network.get_quota(os_conn.current_project_id).floating_ips == 1


def test_one_floating_ip_per_port_and_allocate_attached(os_conn: Any) -> None:
    ext = _external(os_conn)
    server = _boot(os_conn, "fl-b")
    port = _port(os_conn, server)
    first = os_conn.network.create_ip(floating_network_id=ext.id, port_id=port.id)
    assert first.status == "ACTIVE" and first.port_id == port.id
    resp = os_conn.network.post("/floatingips", json={"floatingip": {"floating_network_id": ext.id,
                                                                   "port_id": port.id}})
    assert resp.status_code == 409 and resp.json()["NeutronError"]["type"] == "FloatingIPPortAlreadyAssociated"
    assert [f.id for f in os_conn.network.ips()] == [first.id]   # the refused one was not kept


def test_deleting_the_server_disassociates_but_keeps_the_floating_ip(os_conn: Any) -> None:
    ext = _external(os_conn)
    server = _boot(os_conn, "fl-c")
    fip = os_conn.network.create_ip(floating_network_id=ext.id, port_id=_port(os_conn, server).id)
    os_conn.compute.delete_server(server)
    os_conn.compute.wait_for_delete(server, interval=0.05, wait=30)
    assert list(os_conn.network.ports(device_id=server.id)) == []
    left = os_conn.network.get_ip(fip.id)
    assert left.status == "DOWN" and left.port_id is None and left.floating_ip_address == fip.floating_ip_address


def _handshake(address: str, port: int, key: paramiko.PKey) -> str:
    """Log in over SSH; the fingerprint of the host key that answered. Checks that the guest
    saw the connection arrive on `address` (sshd's SSH_CONNECTION)."""
    transport = paramiko.Transport((address, port))
    try:
        transport.start_client(timeout=10)
        seen = fingerprint(transport.get_remote_server_key())
        transport.auth_publickey("cloud-user", key)
        channel = transport.open_session(timeout=10)
        channel.exec_command("echo $SSH_CONNECTION")
        words = channel.makefile("rb").read().decode().split()
        assert channel.recv_exit_status() == 0 and words[2:] == [address, str(port)]
        return seen
    finally:
        transport.close()


def test_an_attached_floating_ip_reaches_the_vms_ssh(os_conn: Any, os_site: tuple[SandboxSite, VmSshFabric]) -> None:
    key = new_host_key()
    os_conn.compute.create_keypair(name="fl-key", public_key=f"ssh-ed25519 {key.get_base64()} me@x")
    # The default group lets nothing in: a group allowing SSH goes with it.
    ssh = os_conn.network.create_security_group(name="ssh")
    os_conn.network.create_security_group_rule(security_group_id=ssh.id, direction="ingress", protocol="tcp",
                                            port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    server = _boot(os_conn, "fl-d", key_name="fl-key", security_groups=[{"name": "ssh"}])
    vm = os_site[0].world.get_vm(server.id)
    assert vm is not None and vm.ssh_port
    fip = os_conn.network.create_ip(floating_network_id=_external(os_conn).id, port_id=_port(os_conn, server).id)
    address = fip.floating_ip_address
    assert address != vm.address
    assert _handshake(address, vm.ssh_port, key) == vm.host_key_fingerprint

    os_conn.network.update_ip(fip, port_id=None)
    with pytest.raises(paramiko.SSHException, match="Connection refused"):
        _handshake(address, vm.ssh_port, key)
    assert _handshake(vm.address, vm.ssh_port, key) == vm.host_key_fingerprint   # the fixed one still works
