"""The OpenStack driver's behaviour beyond the shared contract, against the sandbox front:
error mapping, key pairs, user-data, paging, foreign servers, lazy imports, no secrets out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skyctl.config import parse
from skyctl.site import SiteConfig
from skyctl.errors import AuthError, InvalidRequest, NotFound, QuotaExceeded, Transient
from skyctl.model import CAPACITY_FAULT, NodeState, RenderedContext
from skyctl.testing.contract import ContractTarget, make_spec
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import start_openstack_site as start_site
from skyctl_openstack.driver import OpenStackDriver

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4or+mPFCfpQb8fn4sPzAJTxfP6f+VsWBuxUqHaKpsn me@laptop"


def _target(driver: OpenStackDriver) -> ContractTarget:
    return ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)


def _create(driver, site, group="g", index=0, context=RenderedContext(), **kw):
    name = f"{group}-{index}"
    return driver.create(make_spec(driver, _target(driver), group, name, index, **kw), name, context)


def test_create_delivers_user_data_keypair_and_labels(driver, site) -> None:
    ud = "#cloud-config\nhostname: web\n"
    node = _create(driver, site, context=RenderedContext(user_data=ud, ssh_public_keys=(KEY,)))
    vm = site.world.get_vm(node.id)
    assert vm.user_data == ud
    assert vm.key_name and vm.key_name.startswith("skyctl-") and KEY in vm.ssh_keys
    assert site.world.keypairs[vm.key_name] == KEY
    assert set(vm.tags) == {"skyctl", "skyctl-group=g", "skyctl-launch=l-contract"}
    assert vm.metadata["skyctl:name"] == "g-0" and vm.metadata["skyctl:image"] == IMAGE
    assert node.image == IMAGE and node.labels["index"] == "0"
    # The same key again reuses the key pair.
    again = _create(driver, site, index=1, context=RenderedContext(ssh_public_keys=(KEY,)))
    assert site.world.get_vm(again.id).key_name == vm.key_name
    assert len(site.world.keypairs) == 1


def test_list_filters_on_labels_and_hides_foreign_servers(driver, site) -> None:
    a = _create(driver, site, "ga")
    b = _create(driver, site, "gb")
    site.world.create_vm(name="theirs", vcpus=1, ram_mib=512, image_id=next(iter(site.world.images)),
                         flavor_id="1", extra={"network": "private"})
    assert [n.id for n in driver.list({"group": "ga"})] == [a.id]
    assert {n.id for n in driver.list()} == {a.id, b.id}
    assert [n.id for n in driver.list({"group": "gb", "owner": "contract"})] == [b.id]
    assert driver.list({"group": "gb", "owner": "someone-else"}) == []
    everything = driver.list(managed_only=False)
    assert {n.name for n in everything} == {"ga-0", "gb-0", "theirs"}
    assert {n.name for n in driver.list({"group": "ga"}, managed_only=False)} == {"ga-0", "theirs"}


def test_list_follows_pages_past_a_thousand(driver, site) -> None:
    site.world.quota.instances = -1
    site.world.quota.cores = -1
    image = next(iter(site.world.images))
    for i in range(1003):
        site.world.create_vm(name=f"bulk-{i}", vcpus=1, ram_mib=1, image_id=image, flavor_id="1",
                             tags=["skyctl", "skyctl-group=bulk"], metadata={"skyctl:group": "bulk"})
    driver.capacity()  # token and version discovery out of the way
    requests_before = site.world.request_count
    nodes = driver.list({"group": "bulk"})
    assert len(nodes) == 1003 and len({n.id for n in nodes}) == 1003
    assert site.world.request_count - requests_before == 2  # one request per page of 1000


def test_capacity_flavors_images(driver, site) -> None:
    cap = driver.capacity()
    assert (cap.instances.limit, cap.cores.limit, cap.ram_mib.limit) == (8, 16, None)
    assert {f.name for f in driver.flavors()} >= {"m1.tiny", "m1.small", "m1.medium", "m1.large"}
    images = {i.name: i for i in driver.images()}
    assert images[IMAGE].checksum and len(images[IMAGE].checksum) == 32
    assert images[IMAGE].extra["os_hash_algo"] == "sha512"


def test_quota_on_cores_names_the_resource(driver, site) -> None:
    site.world.quota.cores = 1
    _create(driver, site)
    with pytest.raises(QuotaExceeded) as info:
        _create(driver, site, index=1)
    assert (info.value.resource, info.value.requested, info.value.used, info.value.limit) == ("cores", 1, 1, 1)
    assert info.value.site == "home"


def test_key_pair_quota_is_a_quota_and_creates_no_server(tmp_path, make_driver) -> None:
    # A user who already has all the key pairs Nova allows: the site is full for this key, and
    # the launch moves on to another site.
    site = start_site(tmp_path, site_overrides={"quota": {"key_pairs": 0}})
    d = make_driver(site)
    try:
        with pytest.raises(QuotaExceeded) as info:
            _create(d, site, context=RenderedContext(ssh_public_keys=(KEY,)))
        assert info.value.resource == "key_pairs" and info.value.site_full
        assert info.value.line() == "home: keypair: Quota exceeded, too many key pairs."
        assert site.world.vms == {} and site.world.keypairs == {}
    finally:
        d.close()
        site.stop()


def test_no_valid_host_is_marked_as_a_capacity_fault(tmp_path, make_driver) -> None:
    site = start_site(tmp_path, site_overrides={"host_cpus": 1})
    d = make_driver(site)
    try:
        _create(d, site)
        second = _create(d, site, index=1)  # accepted: Nova schedules after answering
        listed = {n.id: n for n in d.list({"group": "g"})}
        assert len(listed) == 2
        faulted = listed[second.id]
        assert faulted.state.value == "error"
        assert faulted.extra.get(CAPACITY_FAULT) is True
        assert "No valid host" in faulted.extra["fault"]
        assert not any(n.extra.get(CAPACITY_FAULT) for i, n in listed.items() if i != second.id)
    finally:
        d.close()
        site.stop()


def test_bad_password_is_auth_error_without_the_secret(site, tmp_path) -> None:
    text = site.clouds_yaml.read_text().replace(site.password, "not-the-password")
    bad = tmp_path / "bad" / "clouds.yaml"
    bad.parent.mkdir()
    bad.write_text(text)
    d = OpenStackDriver(SiteConfig(name="home", driver="openstack", options=OpenStackDriver.options_model(
        cloud=site.cloud, clouds_yaml=str(bad))))
    with pytest.raises(AuthError) as info:
        d.capacity()
    assert info.value.site == "home"
    assert "not-the-password" not in info.value.line() and site.password not in info.value.line()


def test_unknown_cloud_is_auth_error_naming_it(site) -> None:
    d = OpenStackDriver(SiteConfig(name="home", driver="openstack", options=OpenStackDriver.options_model(
        cloud="nope", clouds_yaml=str(site.clouds_yaml))))
    with pytest.raises(AuthError, match="nope") as info:
        d.flavors()
    assert info.value.site == "home"


def test_server_errors_and_outages_are_transient(driver, site) -> None:
    driver.capacity()
    site.world.faults.error_rate = 1.0
    with pytest.raises(Transient) as info:
        driver.list({"group": "g"})
    assert info.value.site == "home" and info.value.retryable
    with pytest.raises(Transient):
        driver.images()
    site.world.faults.error_rate = 0.0
    site.world.faults.down = True
    with pytest.raises(Transient):
        driver.capacity()
    site.world.faults.down = False
    assert driver.capacity().instances.limit == 8


def test_outage_before_first_contact_is_transient(site, make_driver) -> None:
    site.front.stop()
    d = make_driver(site)
    with pytest.raises(Transient) as info:
        d.capacity()
    assert info.value.site == "home"
    site.front.start()
    assert d.capacity().instances.limit == 8
    d.close()


def test_bad_request_names_the_field(driver, site) -> None:
    from dataclasses import replace

    spec = make_spec(driver, _target(driver), "g", "g-0")
    with pytest.raises(InvalidRequest) as info:
        driver.create(replace(spec, flavor=replace(spec.flavor, id="999")), "g-0", RenderedContext())
    assert info.value.field == "flavor" and info.value.site == "home"
    with pytest.raises(InvalidRequest) as info:
        driver.create(spec, "g-0", RenderedContext(user_data="x" * 60000))
    assert info.value.field == "user_data"


def test_named_network_and_none(site, make_driver) -> None:
    d = make_driver(site, network="private")
    node = d.create(make_spec(d, _target(d), "g", "g-0"), "g-0", RenderedContext())
    assert site.world.get_vm(node.id).extra["network"] == "private"
    d.close()
    d = make_driver(site, network="none")
    node = d.create(make_spec(d, _target(d), "g", "g-1"), "g-1", RenderedContext())
    assert site.world.get_vm(node.id).extra["network"] is None
    d.close()
    d = make_driver(site, network="missing-net")
    with pytest.raises(InvalidRequest) as info:
        d.create(make_spec(d, _target(d), "g", "g-2"), "g-2", RenderedContext())
    assert info.value.field == "network"
    d.close()


def test_stop_start_console_and_delete_many(driver, site) -> None:
    site.world.faults.boot_delay = 0
    nodes = [_create(driver, site, index=i) for i in range(3)]
    ids = [n.id for n in nodes]
    driver.stop(ids)
    assert {driver.get(i).state for i in ids} == {NodeState.STOPPED}
    driver.stop(ids[:1])  # already stopped: fine
    driver.start(ids)
    assert {driver.get(i).state for i in ids} == {NodeState.RUNNING}
    assert "Cloud-init" in driver.console_log(ids[0])
    driver.delete(ids + ["00000000-0000-0000-0000-000000000000"])
    assert driver.list({"group": "g"}) == []
    with pytest.raises(NotFound):
        driver.get(ids[0])


def test_running_node_reports_its_address(driver, site) -> None:
    site.world.faults.boot_delay = 0
    site.world.on_create = lambda world, vm: setattr(vm, "address", "127.10.0.9")
    node = _create(driver, site)
    assert driver.get(node.id).addresses == ("127.10.0.9",)


def test_describe_has_no_secrets(driver, site) -> None:
    facts = driver.describe()
    assert facts["cloud"] == site.cloud and facts["region"] == "RegionOne"
    assert facts["auth_url"] == site.front.auth_url
    assert site.password not in repr(facts)


def test_options_are_validated_strictly() -> None:
    fed = parse({"sites": {"home": {"driver": "openstack", "cloud": "c", "network": "none",
                                    "security_groups": ["default"]}}})
    assert fed.sites["home"].options.network == "none"
    from skyctl.errors import ConfigError

    with pytest.raises(ConfigError, match="sites.home.colud"):
        parse({"sites": {"home": {"driver": "openstack", "cloud": "c", "colud": "x"}}})
    with pytest.raises(ConfigError, match="sites.home.cloud"):
        parse({"sites": {"home": {"driver": "openstack"}}})


def test_importing_the_driver_and_validating_config_does_not_import_openstacksdk() -> None:
    code = ("import sys\n"
            "import skyctl_openstack.driver\n"
            "from skyctl.config import parse\n"
            "fed = parse({'sites': {'home': {'driver': 'openstack', 'cloud': 'c'}}})\n"
            "from skyctl.drivers import registry\n"
            "d = registry.load('openstack')(fed.sites['home'])\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('openstack', 'keystoneauth1', 'requests')]\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_slow_answer_past_request_timeout_is_transient(site) -> None:
    opts = OpenStackDriver.options_model(cloud=site.cloud, clouds_yaml=str(site.clouds_yaml))
    d = OpenStackDriver(SiteConfig(name="home", driver="openstack", request_timeout=0.3, options=opts))
    d.capacity()
    site.world.faults.latency_ms = 1500
    try:
        with pytest.raises(Transient) as info:
            d.capacity()
        assert info.value.site == "home"
    finally:
        site.world.faults.latency_ms = 0
        d.close()


def test_reboot_shows_reboot_and_nova_refuses_what_the_task_forbids(driver, site) -> None:
    """A reboot in progress is REBOOT (pending) with task_state reboot_started; meanwhile Nova
    refuses stop, start and a soft reboot with its own 409 words; a hard reboot goes through
    and also brings a stopped server back (nova/compute/api.py reboot, vm_states)."""
    site.world.faults.boot_delay = 0
    node = _create(driver, site)
    site.world.faults.boot_delay = 3600          # the reboot lasts until the test ends it
    driver.reboot([node.id])
    assert driver.get(node.id).state == NodeState.PENDING
    assert driver.get(node.id).extra["status"] == "REBOOT"
    for call in (lambda: driver.stop([node.id]), lambda: driver.reboot([node.id])):
        with pytest.raises(InvalidRequest) as info:
            call()
        assert f"instance {node.id} while it is in task_state reboot_started" in str(info.value)
        assert info.value.site == "home"
    driver.reboot([node.id], hard=True)          # HARD goes over a soft reboot
    site.world.get_vm(node.id).rebooting_until = 0
    assert driver.get(node.id).state == NodeState.RUNNING
    driver.stop([node.id])
    with pytest.raises(InvalidRequest, match="Cannot 'reboot' instance .* while it is in vm_state stopped"):
        driver.reboot([node.id])
    driver.reboot([node.id], hard=True)          # a hard reboot starts a stopped server
    site.world.get_vm(node.id).rebooting_until = 0
    assert driver.get(node.id).state == NodeState.RUNNING


def test_parallel_creates_stop_exactly_at_the_quota(driver, site) -> None:
    from concurrent.futures import ThreadPoolExecutor

    site.world.quota.instances = 3
    spec = make_spec(driver, _target(driver), "par", "par")

    def one(i: int):
        try:
            return driver.create(spec, f"par-{i}", RenderedContext())
        except QuotaExceeded as e:
            return e

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(8)))
    made = [r for r in results if not isinstance(r, QuotaExceeded)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(made) == 3 and len(refused) == 5
    assert all(e.resource == "instances" and e.limit == 3 and e.used == 3 for e in refused)
    assert len(driver.list({"group": "par"})) == 3


def test_create_whose_answer_is_lost_is_found_by_its_labels(driver, site) -> None:
    def fail_after_create(world, vm) -> None:
        raise RuntimeError("answer lost after the server was made")

    driver.capacity()
    site.world.on_create = fail_after_create
    node = _create(driver, site, "lost")
    site.world.on_create = None
    assert [n.id for n in driver.list({"group": "lost"})] == [node.id]
    # Nothing was made: the error stands.
    site.world.faults.error_rate = 1.0
    with pytest.raises(Transient):
        _create(driver, site, "lost", index=1)
    site.world.faults.error_rate = 0.0
    assert len(driver.list({"group": "lost"})) == 1


def test_security_groups_are_sent_and_checked(site, make_driver) -> None:
    d = make_driver(site, security_groups=["default"])
    node = d.create(make_spec(d, _target(d), "sg", "sg-0"), "sg-0", RenderedContext())
    # The site's groups, after the one skyctl makes for SSH (ssh.cidr, default 0.0.0.0/0).
    assert site.world.get_vm(node.id).extra["security_groups"] == ["skyctl-ssh-22-0.0.0.0/0", "default"]
    d.close()
    d = make_driver(site, security_groups=["no-such-group"])
    with pytest.raises(InvalidRequest) as info:
        d.create(make_spec(d, _target(d), "sg", "sg-1"), "sg-1", RenderedContext())
    assert info.value.field == "security_groups"
    d.close()


def test_a_failed_version_discovery_is_transient_never_a_silent_downgrade(driver, site) -> None:
    """keystoneauth answers a failed version document without microversions; taking that as
    Nova 2.1 would create servers without tags, invisible to ps. It must be retried instead."""
    driver.images()                      # authenticated, compute not yet discovered
    site.world.faults.error_rate = 1.0   # the version document answers 500
    with pytest.raises(Transient):
        driver.list({"group": "g"})
    site.world.faults.error_rate = 0.0
    node = _create(driver, site)
    assert any(t.startswith("skyctl-group=") for t in node.extra.get("tags", []))
    assert [n.id for n in driver.list({"group": "g"})] == [node.id]
