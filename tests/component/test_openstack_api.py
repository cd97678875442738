"""openstacksdk, used directly (not through skyctl), against the sandbox's OpenStack front.

The assertions only use what a real cloud offers (a member connection, an admin connection, an
image and a flavor name), so the same tests can be pointed at real Nova: the `cloud` fixture
is the only place that knows it is the sandbox. Tests that need the sandbox's own knobs
(faults, the recorded user-data, host capacity) take the `sandbox` fixture as well.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite
from skyctl.testing.sandbox import start_openstack_site as start_site

# The Nova microversion skyctl's driver speaks (tags at create).
MV = "2.52"


@dataclass
class Cloud:
    conn: Any                  # member (demo) connection
    admin: Any                 # admin connection, for quota sets
    image: str                 # an image name
    flavor: str                # the smallest flavor's name
    clouds_yaml: str
    cloud: str

    @property
    def project_id(self) -> str:
        return self.conn.current_project_id


# Point these tests at a real cloud: SKYCTL_TEST_OPENSTACK_CLOUD names a clouds.yaml entry
# (found as openstacksdk finds it), SKYCTL_TEST_OPENSTACK_ADMIN_CLOUD its admin twin,
# SKYCTL_TEST_OPENSTACK_IMAGE / _FLAVOR an image and the smallest flavor.
REAL_CLOUD = os.environ.get("SKYCTL_TEST_OPENSTACK_CLOUD")


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxSite]:
    if REAL_CLOUD:
        pytest.skip("needs the sandbox's own knobs")
    site = start_site(tmp_path)
    yield site
    site.stop()


@pytest.fixture
def cloud(request: pytest.FixtureRequest, connect) -> Iterator[Cloud]:  # type: ignore[no-untyped-def]
    if REAL_CLOUD:
        import openstack

        conn = openstack.connect(cloud=REAL_CLOUD)
        admin = openstack.connect(cloud=os.environ.get("SKYCTL_TEST_OPENSTACK_ADMIN_CLOUD", f"{REAL_CLOUD}-admin"))
        c = Cloud(conn, admin, os.environ.get("SKYCTL_TEST_OPENSTACK_IMAGE", "cirros"),
                  os.environ.get("SKYCTL_TEST_OPENSTACK_FLAVOR", "m1.tiny"), "", REAL_CLOUD)
    else:
        site: SandboxSite = request.getfixturevalue("sandbox")
        conn = connect(site.clouds_yaml, site.cloud)
        admin = connect(site.clouds_yaml, site.admin_cloud)
        c = Cloud(conn, admin, IMAGE, "m1.tiny", str(site.clouds_yaml), site.cloud)
    yield c
    # Only what these tests made (names start with "t-").
    mine = [s for s in conn.compute.servers() if s.name.startswith("t-")]
    for s in mine:
        conn.compute.delete_server(s, ignore_missing=True)
    for s in mine:
        conn.compute.wait_for_delete(s, interval=0.2, wait=120)
    conn.close()
    admin.close()


def _boot(c: Cloud, name: str, *, tags: list[str] | None = None, metadata: dict[str, str] | None = None,
          flavor: str | None = None, **kw: Any) -> Any:
    image = c.conn.image.find_image(c.image, ignore_missing=False)
    fl = c.conn.compute.find_flavor(flavor or c.flavor, ignore_missing=False)
    args: dict[str, Any] = dict(name=name, image_id=image.id, flavor_id=fl.id, networks="none",
                                metadata=metadata or {})
    if tags is not None:
        args["tags"] = tags
    args.update(kw)
    return c.conn.compute.create_server(**args)


def _set_quota(c: Cloud, **values: int) -> None:
    c.admin.set_compute_quotas(c.project_id, **values)


def _reset_quota(c: Cloud) -> None:
    resp = c.admin.compute.delete(f"/os-quota-sets/{c.project_id}")
    assert resp.status_code == 202


# ---------------------------------------------------------------- identity


def test_password_auth_gives_token_and_catalog(cloud: Cloud) -> None:
    token = cloud.conn.session.get_token()
    assert isinstance(token, str) and len(token) > 20
    assert re.fullmatch(r"[0-9a-f]{32}", cloud.project_id)
    access = cloud.conn.session.auth.get_access(cloud.conn.session)
    kinds = {entry["type"] for entry in access.service_catalog.catalog}
    assert {"compute", "image", "network", "identity"} <= kinds
    assert cloud.conn.compute.get_endpoint_data().max_microversion >= (2, 52)


def test_wrong_password_is_401(cloud: Cloud, tmp_path) -> None:
    import openstack

    bad = openstack.connect(auth_url=cloud.conn.session.auth.auth_url, username="demo", password="wrong-password",
                            project_name="demo", user_domain_name="Default", project_domain_name="Default")
    with pytest.raises(ks_exc.Unauthorized) as info:
        bad.session.get_token()
    assert info.value.http_status == 401
    assert "wrong-password" not in str(info.value)
    with pytest.raises(os_exc.SDKException, match="HTTP 401"):
        bad.authorize()


def test_wrong_token_is_401(cloud: Cloud) -> None:
    endpoint = cloud.conn.compute.get_endpoint()
    resp = requests.get(f"{endpoint}/servers", headers={"X-Auth-Token": "not-a-token"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 401


# ---------------------------------------------------------------- flavors and images


def test_flavors_list_with_details(cloud: Cloud) -> None:
    flavors = {f.name: f for f in cloud.conn.compute.flavors(details=True)}
    assert cloud.flavor in flavors
    tiny = flavors[cloud.flavor]
    assert tiny.vcpus >= 1 and tiny.ram > 0
    assert cloud.conn.compute.get_flavor(tiny.id).name == cloud.flavor


def test_images_carry_checksum_and_multihash(cloud: Cloud) -> None:
    image = cloud.conn.image.find_image(cloud.image, ignore_missing=False)
    assert image.status == "active"
    assert re.fullmatch(r"[0-9a-f]{32}", image.checksum)
    assert image.hash_algo == "sha512"
    assert re.fullmatch(r"[0-9a-f]{128}", image.hash_value)
    assert cloud.conn.image.get_image(image.id).checksum == image.checksum


def test_images_page_with_limit_and_marker(cloud: Cloud) -> None:
    everything = [i["id"] for i in cloud.conn.image.get("/images").json()["images"]]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        body = cloud.conn.image.get("/images", params=params).json()
        assert len(body["images"]) <= 1
        seen += [i["id"] for i in body["images"]]
        if "next" not in body or not body["images"]:
            break
        params = {"limit": 1, "marker": body["images"][-1]["id"]}
    assert seen == everything


def test_networks_list(cloud: Cloud) -> None:
    nets = list(cloud.conn.network.networks())
    assert nets and all(n.id and n.name for n in nets)


# ---------------------------------------------------------------- servers


def test_keypair_import_generate_and_refuse_garbage(cloud: Cloud) -> None:
    made = cloud.conn.compute.create_keypair(name=f"t-gen-{uuid.uuid4().hex[:6]}")
    try:
        assert made.private_key.startswith("-----BEGIN") and made.public_key.startswith("ssh-rsa ")
        assert re.fullmatch(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", made.fingerprint)
        bad = cloud.conn.compute.post("/os-keypairs", json={"keypair": {"name": "t-bad",
                                                                       "public_key": "ssh-rsa AAAAnotakey"}})
        assert bad.status_code == 400 and "Keypair data is invalid" in bad.json()["badRequest"]["message"]
        dup = cloud.conn.compute.post("/os-keypairs", json={"keypair": {"name": made.name,
                                                                       "public_key": made.public_key}})
        assert dup.status_code == 409
    finally:
        cloud.conn.compute.delete_keypair(made, ignore_missing=True)


def test_create_goes_active_with_everything_asked(cloud: Cloud, request: pytest.FixtureRequest) -> None:
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4or+mPFCfpQb8fn4sPzAJTxfP6f+VsWBuxUqHaKpsn t@x"
    kp = cloud.conn.compute.create_keypair(name=f"k-{uuid.uuid4().hex[:6]}", public_key=pub)
    request.addfinalizer(lambda: cloud.conn.compute.delete_keypair(kp, ignore_missing=True))
    ud = "#cloud-config\nruncmd:\n - echo hello\n"
    server = _boot(cloud, "t-active", tags=["skyctl", "skyctl-group=g1"], metadata={"skyctl:group": "g1"},
                   key_name=kp.name, user_data=base64.b64encode(ud.encode()).decode(), networks="auto")
    server = cloud.conn.compute.wait_for_server(server, status="ACTIVE", interval=0.05, wait=30)
    assert server.status == "ACTIVE"
    assert server.key_name == kp.name
    assert server.metadata == {"skyctl:group": "g1"}
    assert sorted(server.tags) == ["skyctl", "skyctl-group=g1"]
    addrs = [a["addr"] for net in server.addresses.values() for a in net]
    assert addrs
    assert server.flavor.original_name == cloud.flavor
    admin_view = cloud.admin.compute.get(f"/servers/{server.id}", microversion="2.3").json()["server"]
    assert base64.b64decode(admin_view["OS-EXT-SRV-ATTR:user_data"]).decode() == ud


def test_create_starts_in_build(cloud: Cloud, sandbox: SandboxSite) -> None:
    sandbox.world.faults.boot_delay = 30
    server = _boot(cloud, "t-build")
    assert cloud.conn.compute.get_server(server.id).status == "BUILD"


def test_list_filters_by_tags_on_the_server(cloud: Cloud) -> None:
    a = _boot(cloud, "t-a", tags=["skyctl", "skyctl-group=a"])
    b = _boot(cloud, "t-b", tags=["skyctl", "skyctl-group=b"])
    _boot(cloud, "t-c", tags=[])
    def names(**params: str) -> set[str]:
        resp = cloud.conn.compute.get("/servers/detail", params=params, microversion=MV)
        assert resp.status_code == 200
        return {s["name"] for s in resp.json()["servers"]}
    assert names(tags="skyctl,skyctl-group=a") == {"t-a"}
    assert names(**{"tags-any": "skyctl-group=a,skyctl-group=b"}) == {"t-a", "t-b"}
    assert names(**{"not-tags": "skyctl"}) == {"t-c"}
    assert names(tags="skyctl-group=none") == set()
    assert {s.id for s in cloud.conn.compute.servers(tags="skyctl-group=b")} == {b.id}
    assert a.id not in {s.id for s in cloud.conn.compute.servers(tags="skyctl-group=b")}


def test_list_by_metadata_is_client_side_in_the_sdk(cloud: Cloud) -> None:
    _boot(cloud, "t-m1", metadata={"job": "one"})
    _boot(cloud, "t-m2", metadata={"job": "two"})
    found = cloud.conn.search_servers(filters={"metadata": {"job": "two"}})
    assert [s.name for s in found] == ["t-m2"]


def test_list_pages_with_limit_and_marker(cloud: Cloud) -> None:
    made = [_boot(cloud, f"t-p{i}").id for i in range(5)]
    # Paged while servers still build, real Nova merges build requests with cell instances and
    # can repeat or miss one (the driver dedupes by id); the paging contract holds once they run.
    for server_id in made:
        cloud.conn.compute.wait_for_server(cloud.conn.compute.get_server(server_id), interval=0.05, wait=60)
    seen: list[str] = []
    created: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        body = cloud.conn.compute.get("/servers/detail", params=params, microversion=MV).json()
        pages += 1
        seen += [s["id"] for s in body["servers"]]
        created += [s["created"] for s in body["servers"]]
        nxt = [link for link in body.get("servers_links", []) if link["rel"] == "next"]
        if not nxt:
            break
        assert "marker=" in nxt[0]["href"]
        params = {"limit": 2, "marker": body["servers"][-1]["id"]}
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert pages == 3
    assert created == sorted(created, reverse=True)  # newest first, as Nova sorts
    if not REAL_CLOUD:
        # Nova breaks same-second ties by its internal row id, i.e. the order in which its
        # conductor wrote them; the sandbox writes them in request order.
        assert seen == list(reversed(made))
    by_name = cloud.conn.compute.get("/servers", params={"sort_key": "display_name", "sort_dir": "asc",
                                                          "name": "^t-p"}).json()["servers"]
    assert [s["name"] for s in by_name] == [f"t-p{i}" for i in range(5)]
    bad = cloud.conn.compute.get("/servers/detail", params={"marker": str(uuid.uuid4())}, microversion=MV)
    assert bad.status_code == 400 and "marker" in bad.json()["badRequest"]["message"]


def test_show_and_delete_then_404(cloud: Cloud) -> None:
    server = _boot(cloud, "t-del")
    assert cloud.conn.compute.get_server(server.id).name == "t-del"
    cloud.conn.compute.delete_server(server)
    cloud.conn.compute.wait_for_delete(server, interval=0.05, wait=30)
    with pytest.raises(os_exc.NotFoundException):
        cloud.conn.compute.get_server(server.id)
    resp = cloud.conn.compute.get(f"/servers/{server.id}")
    assert resp.status_code == 404
    assert resp.json()["itemNotFound"]["code"] == 404
    assert cloud.conn.compute.delete(f"/servers/{server.id}").status_code == 404


def test_stop_start_and_console_output(cloud: Cloud) -> None:
    server = cloud.conn.compute.wait_for_server(_boot(cloud, "t-power"), interval=0.05, wait=30)
    cloud.conn.compute.stop_server(server)
    cloud.conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.05, wait=30)
    again = cloud.conn.compute.post(f"/servers/{server.id}/action", json={"os-stop": None})
    assert again.status_code == 409 and "vm_state stopped" in again.json()["conflictingRequest"]["message"]
    cloud.conn.compute.start_server(server)
    cloud.conn.compute.wait_for_server(server, status="ACTIVE", interval=0.05, wait=30)
    out = cloud.conn.compute.get_server_console_output(server)["output"]
    assert isinstance(out, str) and out


def test_create_validation_errors_are_400(cloud: Cloud) -> None:
    image = cloud.conn.image.find_image(cloud.image, ignore_missing=False)
    base = {"name": "t-bad", "imageRef": image.id, "flavorRef": "nope", "networks": "none"}
    resp = cloud.conn.compute.post("/servers", json={"server": base}, microversion=MV)
    assert resp.status_code == 400 and "Flavor nope could not be found" in resp.json()["badRequest"]["message"]
    flavor = cloud.conn.compute.find_flavor(cloud.flavor, ignore_missing=False)
    no_net = {"name": "t-bad", "imageRef": image.id, "flavorRef": flavor.id}
    resp = cloud.conn.compute.post("/servers", json={"server": no_net}, microversion=MV)
    assert resp.status_code == 400 and "networks" in resp.json()["badRequest"]["message"]
    tagged = {**no_net, "networks": "none", "tags": ["x"]}
    resp = cloud.conn.compute.post("/servers", json={"server": tagged}, microversion="2.51")
    assert resp.status_code == 400 and "tags" in resp.json()["badRequest"]["message"]
    resp = cloud.conn.compute.post("/servers", json={"server": {**tagged, "key_name": "missing"}}, microversion=MV)
    assert resp.status_code == 400 and resp.json()["badRequest"]["message"] == "Invalid key_name provided."


def test_microversion_is_negotiated_and_bounded(cloud: Cloud) -> None:
    ok = cloud.conn.compute.get("/servers", microversion=MV)
    assert ok.headers["OpenStack-API-Version"] == f"compute {MV}"
    too_new = cloud.conn.compute.get("/servers", microversion="2.999")
    assert too_new.status_code == 406


# ---------------------------------------------------------------- limits and quotas


def test_limits_count_usage(cloud: Cloud) -> None:
    before = cloud.conn.compute.get_limits().absolute
    server = _boot(cloud, "t-lim", flavor="m1.small")
    # Real Nova counts usage from the cell database, which its conductor writes a moment after
    # the 202; once the server runs, both count it.
    cloud.conn.compute.wait_for_server(server, interval=0.05, wait=60)
    after = cloud.conn.compute.get_limits().absolute
    assert after.instances_used == before.instances_used + 1
    assert after.total_cores_used == before.total_cores_used + 1
    assert after.total_ram_used == before.total_ram_used + 2048
    assert after.instances == before.instances


def test_instance_quota_exhaustion_is_nova_403(cloud: Cloud) -> None:
    used = cloud.conn.compute.get_limits().absolute.instances_used
    _set_quota(cloud, instances=used + 1)
    try:
        assert cloud.admin.get_compute_quotas(cloud.project_id).instances == used + 1
        # Right after the first 202, real Nova's API check may not see it yet (the conductor then
        # fails the second create with a late 413, which launch handles); once it runs, both 403.
        cloud.conn.compute.wait_for_server(_boot(cloud, "t-q1"), interval=0.05, wait=60)
        with pytest.raises(os_exc.ForbiddenException) as info:
            _boot(cloud, "t-q2")
        limit = used + 1
        message = f"Quota exceeded for instances: Requested 1, but already used {limit} of {limit} instances"
        assert info.value.status_code == 403
        assert info.value.details == message
        assert info.value.response.json() == {"forbidden": {"code": 403, "message": message}}
    finally:
        _reset_quota(cloud)


def test_cores_quota_exhaustion_is_nova_403(cloud: Cloud) -> None:
    used = cloud.conn.compute.get_limits().absolute.total_cores_used
    _set_quota(cloud, cores=used + 1)
    try:
        with pytest.raises(os_exc.ForbiddenException) as info:
            _boot(cloud, "t-big", flavor="m1.large")
        assert info.value.details == (f"Quota exceeded for cores: Requested 4, but already used {used} of "
                                      f"{used + 1} cores")
    finally:
        _reset_quota(cloud)


def test_key_pair_quota_exhaustion_is_nova_403(cloud: Cloud) -> None:
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4or+mPFCfpQb8fn4sPzAJTxfP6f+VsWBuxUqHaKpsn t@x"
    have = len(list(cloud.conn.compute.keypairs()))
    _set_quota(cloud, key_pairs=have + 1)
    made = []
    try:
        made.append(cloud.conn.compute.create_keypair(name=f"k-{uuid.uuid4().hex[:6]}", public_key=pub))
        resp = cloud.conn.compute.post("/os-keypairs", json={"keypair": {"name": f"k-{uuid.uuid4().hex[:6]}",
                                                                        "public_key": pub}})
        assert resp.status_code == 403
        assert resp.json() == {"forbidden": {"code": 403, "message": "Quota exceeded, too many key pairs."}}
    finally:
        for kp in made:
            cloud.conn.compute.delete_keypair(kp, ignore_missing=True)
        _reset_quota(cloud)


def test_deleting_a_quota_set_goes_back_to_the_specs_numbers(tmp_path, connect) -> None:  # type: ignore[no-untyped-def]
    if REAL_CLOUD:
        pytest.skip("needs the sandbox's own knobs")
    site = start_site(tmp_path, site_overrides={"quota": {"instances": 3, "key_pairs": 2}})
    admin = connect(site.clouds_yaml, site.admin_cloud)
    path = f"/os-quota-sets/{site.front.project_id}"
    try:
        put = admin.compute.put(path, json={"quota_set": {"instances": 5, "key_pairs": 7}})
        assert put.status_code == 200
        assert (put.json()["quota_set"]["instances"], put.json()["quota_set"]["key_pairs"]) == (5, 7)
        assert admin.compute.delete(path).status_code == 202
        for shown in (admin.compute.get(path), admin.compute.get(f"{path}/defaults")):
            assert (shown.json()["quota_set"]["instances"], shown.json()["quota_set"]["key_pairs"]) == (3, 2)
    finally:
        admin.close()
        site.stop()


def test_member_cannot_set_quota(cloud: Cloud) -> None:
    resp = cloud.conn.compute.put(f"/os-quota-sets/{cloud.project_id}", json={"quota_set": {"instances": 99}})
    assert resp.status_code == 403
    assert "os-quota-sets:update" in resp.json()["forbidden"]["message"]


# ---------------------------------------------------------------- sandbox-only: knobs and records


def test_sandbox_keeps_decoded_user_data(cloud: Cloud, sandbox: SandboxSite) -> None:
    ud = "#cloud-config\npackages: [htop]\n"
    server = _boot(cloud, "t-ud", user_data=base64.b64encode(ud.encode()).decode())
    assert sandbox.world.get_vm(server.id).user_data == ud


def test_sandbox_error_rate_answers_5xx(cloud: Cloud, sandbox: SandboxSite) -> None:
    # Token and version discovery done before the fault.
    assert cloud.conn.compute.get("/servers").status_code == 200
    assert cloud.conn.image.get("/images").status_code == 200
    sandbox.world.faults.error_rate = 1.0
    try:
        resp = cloud.conn.compute.get("/servers", microversion=MV)
        assert resp.status_code in (500, 503)
        assert resp.json()["computeFault"]["code"] == 500
        assert cloud.conn.image.get("/images", status_code_retries=0).status_code == 503
    finally:
        sandbox.world.faults.error_rate = 0.0
    assert cloud.conn.compute.get("/servers").status_code == 200


def test_sandbox_down_drops_connections(cloud: Cloud, sandbox: SandboxSite) -> None:
    cloud.conn.compute.get("/servers")
    sandbox.world.faults.down = True
    try:
        with pytest.raises(ks_exc.ConnectionError):
            cloud.conn.compute.get("/servers", connect_retries=0)
    finally:
        sandbox.world.faults.down = False
    assert cloud.conn.compute.get("/servers").status_code == 200


def test_sandbox_stop_and_restart_on_same_port(cloud: Cloud, sandbox: SandboxSite) -> None:
    port = sandbox.front.port
    sandbox.front.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/identity", timeout=5)
    sandbox.front.start()
    assert sandbox.front.port == port
    assert cloud.conn.compute.get("/servers").status_code == 200


def test_sandbox_no_valid_host_puts_server_in_error(tmp_path, connect) -> None:  # type: ignore[no-untyped-def]
    site = start_site(tmp_path, site_overrides={"host_cpus": 1})
    conn = connect(site.clouds_yaml, site.cloud)
    try:
        c = Cloud(conn, conn, IMAGE, "m1.tiny", str(site.clouds_yaml), site.cloud)
        _boot(c, "t-fits")
        server = conn.compute.get_server(_boot(c, "t-nohost").id)
        assert server.status == "ERROR"
        assert server.fault["code"] == 500
        assert server.fault["message"].startswith("No valid host was found.")
    finally:
        conn.close()
        site.stop()


def test_sandbox_reports_the_vm_address(cloud: Cloud, sandbox: SandboxSite) -> None:
    def give_address(world: Any, vm: Any) -> None:
        vm.address = "127.10.0.7"
    sandbox.world.on_create = give_address
    server = cloud.conn.compute.wait_for_server(_boot(cloud, "t-addr", networks="auto"), interval=0.05, wait=30)
    entries = [a for net in server.addresses.values() for a in net]
    assert entries == [{"addr": "127.10.0.7", "version": 4, "OS-EXT-IPS:type": "fixed",
                        "OS-EXT-IPS-MAC:mac_addr": entries[0]["OS-EXT-IPS-MAC:mac_addr"]}]


def test_console_lists_the_host_key_as_cloud_init_prints_it(sandbox: SandboxSite) -> None:
    """skyctl checks a VM's SSH host key against this block before trusting it."""
    import openstack
    from openstack import config as os_config

    from skyctl.ssh.hostkeys import console_fingerprints

    cfg = os_config.OpenStackConfig(config_files=[str(sandbox.clouds_yaml)], vendor_files=[], load_envvars=False)
    conn = openstack.connection.Connection(config=cfg.get_one(cloud=sandbox.cloud))
    try:
        vm = sandbox.world.create_vm(name="hk", vcpus=1, ram_mib=512, image_id=next(iter(sandbox.world.images)))
        vm.host_key_fingerprint = "SHA256:" + "A" * 43  # what the SSH runtime sets when it serves the VM
        conn.compute.wait_for_server(conn.compute.get_server(vm.id), interval=0.05, wait=30)
        out = conn.compute.get_server_console_output(vm.id)["output"]
        assert console_fingerprints(out) == {vm.host_key_fingerprint}
    finally:
        conn.close()
