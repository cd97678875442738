"""The OpenNebula driver (pyone underneath) against the sandbox's XML-RPC front: the shared
contract (through skyctl's pytest plugin, as any driver's tests run it), then what is
particular to OpenNebula (context, labels, READY, stop/start, errors, connection reuse, paging,
retries that cannot duplicate)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyctl.site import SiteConfig
from skyctl.errors import AuthError, InvalidRequest, NotFound, Transient
from skyctl.model import EMPTY_CONTEXT, Capability, NodeState, RenderedContext
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.sandbox.world import SiteWorld
from skyctl.testing.contract import ContractTarget, DriverContract, make_spec, wait_state
from skyctl.testing.sandbox import OPENNEBULA_IMAGE, OpenNebulaSite
from skyctl_opennebula import driver as one_driver
from skyctl_opennebula.driver import OpenNebulaDriver, OpenNebulaOptions


def site_for(front: OpenNebulaFront, one_auth: Path, **options: object) -> SiteConfig:
    timeout = options.pop("request_timeout", 5.0)
    opts = OpenNebulaOptions(endpoint=front.endpoint, one_auth=str(one_auth), **options)  # type: ignore[arg-type]
    return SiteConfig(name="cc", driver="opennebula", request_timeout=timeout, options=opts)


@pytest.fixture
def target(opennebula_sandbox_site: OpenNebulaSite) -> ContractTarget:
    site = site_for(opennebula_sandbox_site.front, opennebula_sandbox_site.one_auth)
    return ContractTarget(name="opennebula-sandbox", make_driver=lambda: OpenNebulaDriver(site),
                          image_name=OPENNEBULA_IMAGE, set_instance_quota=opennebula_sandbox_site.set_instance_quota,
                          settle=10.0)


class TestOpenNebulaDriver(DriverContract):
    pass


# ---------------------------------------------------------------- OpenNebula specifics


@pytest.fixture
def drv(front: OpenNebulaFront, one_auth: Path) -> Iterator[OpenNebulaDriver]:
    d = OpenNebulaDriver(site_for(front, one_auth))
    yield d
    d.close()


def target_of(front: OpenNebulaFront, one_auth: Path) -> ContractTarget:
    return ContractTarget(name="one", make_driver=lambda: OpenNebulaDriver(site_for(front, one_auth)),
                          image_name="AlmaLinux 9")


def test_capacity_is_the_users_vm_quota_hosts_hidden(front: OpenNebulaFront, drv: OpenNebulaDriver,
                                                     one_auth: Path) -> None:
    cap = drv.capacity()
    assert (cap.instances.limit, cap.cores.limit, cap.ram_mib.limit) == (16, 32, None)
    assert cap.instances.used == 0
    assert cap.host_free_cpus is None       # an ordinary user sees no host: no host room is claimed
    drv.create(make_spec(drv, target_of(front, one_auth), "g", "g-0"), "g-0", EMPTY_CONTEXT)
    cap = drv.capacity()
    assert (cap.instances.used, cap.cores.used, cap.ram_mib.used) == (1, 1, 512)


def test_images_are_templates_or_images_by_mode(front: OpenNebulaFront, one_auth: Path) -> None:
    inst = OpenNebulaDriver(site_for(front, one_auth))
    alloc = OpenNebulaDriver(site_for(front, one_auth, mode="allocate"))
    try:
        templates = inst.images()
        assert {(i.id, i.name) for i in templates} == {("0", "AlmaLinux 9"), ("1", "Ubuntu 24.04")}
        assert all(i.extra["kind"] == "template" for i in templates)
        images = alloc.images()
        assert all(i.extra["kind"] == "image" and i.checksum for i in images)
        assert inst.flavors() == [] and Capability.CUSTOM_SIZES in inst.capabilities
    finally:
        inst.close()
        alloc.close()


def test_create_sends_size_context_and_labels(front: OpenNebulaFront, drv: OpenNebulaDriver,
                                              one_auth: Path) -> None:
    spec = make_spec(drv, target_of(front, one_auth), "grp", "grp-0")
    ctx = RenderedContext(user_data="#cloud-config\npackages: [htop]\n", ssh_public_keys=("ssh-ed25519 AAAA k1",))
    node = drv.create(spec, "grp-0", ctx)
    svm = front.world.get_vm(node.id)
    assert svm.name == "grp-0" and svm.vcpus == 1 and svm.ram_mib == 512
    assert svm.user_data == "#cloud-config\npackages: [htop]\n"
    assert svm.ssh_keys == ["ssh-ed25519 AAAA k1"]
    assert svm.context["NETWORK"] == "YES" and svm.context["USERDATA_ENCODING"] == "base64"
    assert svm.metadata["SKYCTL_GROUP"] == "grp" and svm.metadata["SKYCTL_INDEX"] == "0"
    running = wait_state(drv, node.id, {NodeState.RUNNING}, 10)
    assert running.addresses == ("127.0.0.1",)
    assert running.size == "1cpu-512MiB" and running.image == "AlmaLinux 9"
    assert running.labels["launch"] == "l-contract" and running.created_at.endswith("Z")


def test_rendered_one_context_is_sent_as_is(front: OpenNebulaFront, drv: OpenNebulaDriver,
                                            one_auth: Path) -> None:
    script = "#!/bin/sh\necho 'quoted' \"twice\" <&> done\n"
    ctx = RenderedContext(one_context={"NETWORK": "YES", "SET_HOSTNAME": "w-0", "REPORT_READY": "YES",
                                       "START_SCRIPT_BASE64": base64.b64encode(script.encode()).decode(),
                                       "NOTE": "a <b> & 'c' \"d\""},
                          user_data="ignored when one_context is given")
    node = drv.create(make_spec(drv, target_of(front, one_auth), "ctx", "ctx-0"), "ctx-0", ctx)
    svm = front.world.get_vm(node.id)
    assert svm.context["SET_HOSTNAME"] == "w-0"
    assert svm.context["NOTE"] == "a <b> & 'c' \"d\""
    assert base64.b64decode(svm.context["START_SCRIPT_BASE64"]).decode() == script
    assert "USER_DATA" not in svm.context


def test_ready_report_reaches_the_node(front: OpenNebulaFront, one_auth: Path) -> None:
    front.world.settings["onegate_endpoint"] = "http://127.0.0.1:5030"    # a site with OneGate
    drv = OpenNebulaDriver(site_for(front, one_auth, onegate=True))
    ctx = RenderedContext(one_context={"NETWORK": "YES", "REPORT_READY": "YES", "TOKEN": "YES"})
    node = drv.create(make_spec(drv, target_of(front, one_auth), "rdy", "rdy-0"), "rdy-0", ctx)
    assert wait_state(drv, node.id, {NodeState.RUNNING}, 10).extra["ready"] is False
    front.world.get_vm(node.id).ready = True
    assert drv.get(node.id).extra["ready"] is True


def test_stop_and_start(front: OpenNebulaFront, drv: OpenNebulaDriver, one_auth: Path) -> None:
    node = drv.create(make_spec(drv, target_of(front, one_auth), "ss", "ss-0"), "ss-0", EMPTY_CONTEXT)
    wait_state(drv, node.id, {NodeState.RUNNING}, 10)
    drv.stop([node.id])
    stopped = drv.get(node.id)
    assert stopped.state == NodeState.STOPPED and stopped.extra["one_state"] == "POWEROFF"
    drv.stop([node.id])  # already off: success, as for Nova (oned's refusal names POWEROFF)
    with pytest.raises(InvalidRequest, match='Error performing action "reboot": This action is not available '
                                             'for state POWEROFF') as info:
        drv.reboot([node.id])
    assert info.value.site == "cc"
    drv.start([node.id])
    assert wait_state(drv, node.id, {NodeState.RUNNING}, 10).state == NodeState.RUNNING
    with pytest.raises(NotFound):
        drv.stop(["424242"])


def test_allocate_mode_creates_from_an_image(front: OpenNebulaFront, one_auth: Path) -> None:
    d = OpenNebulaDriver(site_for(front, one_auth, mode="allocate", network="sandbox-net"))
    try:
        image = next(i for i in d.images() if i.name == "Ubuntu 24.04")
        spec = make_spec(d, ContractTarget(name="one", make_driver=lambda: d, image_name="Ubuntu 24.04"),
                         "al", "al-0")
        node = d.create(spec, "al-0", EMPTY_CONTEXT)
        svm = front.world.get_vm(node.id)
        assert svm.name == "al-0" and svm.image_id == image.id
        assert [n.id for n in d.list({"group": "al"})] == [node.id]
    finally:
        d.close()


def test_list_pages_through_the_pool(front: OpenNebulaFront, drv: OpenNebulaDriver,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(one_driver, "PAGE_SIZE", 7)
    world = front.world
    world.quota.instances = -1
    for i in range(23):
        labels = {"SKYCTL_GROUP": "big" if i % 2 == 0 else "other", "SKYCTL_INDEX": str(i)}
        world.create_vm(name=f"n{i}", vcpus=1, ram_mib=64, image_id="0", vm_id=world.next_int_id(), metadata=labels,
                        extra={"one": {"host": 0}})
    world.create_vm(name="foreign", vcpus=1, ram_mib=64, image_id="0", vm_id=world.next_int_id(),
                    extra={"one": {"host": 0}})
    before = world.request_count
    big = drv.list({"group": "big"})
    assert [int(n.labels["index"]) for n in big] == list(range(0, 23, 2))
    assert world.request_count - before == 4            # 24 VMs in pages of 7: one request per page
    everything = drv.list(managed_only=False)
    assert len(everything) == 24 and sum(1 for n in everything if not n.managed) == 1


def test_connections_are_reused(front: OpenNebulaFront, drv: OpenNebulaDriver) -> None:
    before = front.connections_accepted
    for _ in range(15):
        drv.capacity()
        drv.list({"group": "none"})
    assert front.connections_accepted - before == 1


def test_missing_vm_and_bad_ids(drv: OpenNebulaDriver) -> None:
    with pytest.raises(NotFound, match=r"\[one.vm.info\] Error getting virtual machine \[123\]") as info:
        drv.get("123")
    assert info.value.site == "cc"
    with pytest.raises(NotFound):
        drv.get("not-a-number")
    drv.delete(["123", "not-a-number"])       # gone is success


def test_bad_credentials_are_an_auth_error_without_the_secret(front: OpenNebulaFront, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_auth"
    wrong.write_text("oneadmin:not-the-password-xyz\n")
    d = OpenNebulaDriver(site_for(front, wrong))
    try:
        with pytest.raises(AuthError) as info:
            d.capacity()
        assert info.value.site == "cc"
        assert "not-the-password-xyz" not in info.value.line()
        assert "couldn't be authenticated" in info.value.line()
    finally:
        d.close()


def test_missing_one_auth_file(front: OpenNebulaFront, tmp_path: Path) -> None:
    d = OpenNebulaDriver(site_for(front, tmp_path / "nope"))
    with pytest.raises(AuthError, match="no ONE_AUTH file"):
        d.images()


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch, front: OpenNebulaFront, one_auth: Path) -> None:
    monkeypatch.setenv("ONE_XMLRPC", front.endpoint)
    monkeypatch.setenv("ONE_AUTH", str(one_auth))
    d = OpenNebulaDriver(SiteConfig(name="cc", driver="opennebula"))
    try:
        assert d.describe() == {"endpoint": front.endpoint, "mode": "instantiate", "version": "7.0.0"}
        assert d.images()
    finally:
        d.close()


def test_injected_faults_and_outages_are_transient(front: OpenNebulaFront, drv: OpenNebulaDriver) -> None:
    front.world.faults.error_rate = 1.0
    with pytest.raises(Transient, match="Internal error") as info:
        drv.list()
    assert info.value.retryable and info.value.site == "cc"
    front.world.faults.error_rate = 0.0
    front.world.faults.down = True
    with pytest.raises(Transient, match="cannot reach"):
        drv.capacity()
    front.world.faults.down = False
    assert drv.capacity()


def test_timeouts_are_bounded_and_transient(front: OpenNebulaFront, one_auth: Path) -> None:
    d = OpenNebulaDriver(site_for(front, one_auth, request_timeout=0.3))
    front.world.faults.latency_ms = 1500
    try:
        with pytest.raises(Transient, match="no answer"):
            d.images()
    finally:
        front.world.faults.latency_ms = 0
        d.close()


def test_a_create_whose_reply_is_lost_is_not_duplicated(front: OpenNebulaFront, one_auth: Path) -> None:
    """The VM is made but the answer times out: the driver finds it by its labels."""
    slow = {"on": True}

    def slow_hook(world: SiteWorld, vm) -> None:
        if slow["on"]:
            time.sleep(1.0)

    front.world.on_create = slow_hook
    d = OpenNebulaDriver(site_for(front, one_auth, request_timeout=0.3))
    try:
        node = d.create(make_spec(d, target_of(front, one_auth), "lost", "lost-0"), "lost-0", EMPTY_CONTEXT)
        slow["on"] = False
        assert [v.id for v in front.world.live_vms()] == [node.id]
        assert node.labels["name"] == "lost-0"
    finally:
        d.close()


def test_options_model_is_strict() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OpenNebulaOptions.model_validate({"endpoint": "http://x", "password": "no"})
    with pytest.raises(ValidationError):
        OpenNebulaOptions.model_validate({"mode": "clone"})
    assert set(OpenNebulaOptions.model_fields) == {"endpoint", "one_auth", "verify_tls", "ca_bundle", "mode",
                                                   "network", "onegate", "cpu_ratio"}


def test_concurrent_creates_never_exceed_the_quota(front: OpenNebulaFront, drv: OpenNebulaDriver,
                                                   one_auth: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from skyctl.errors import QuotaExceeded

    front.world.quota.instances = 5
    target = target_of(front, one_auth)

    def create(i: int) -> str:
        try:
            return drv.create(make_spec(drv, target, "race", f"race-{i}", i), f"race-{i}", EMPTY_CONTEXT).id
        except QuotaExceeded as e:
            assert (e.resource, e.limit) == ("instances", 5)
            return "quota"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(12)))
    assert results.count("quota") == 7
    assert len(drv.list({"group": "race"})) == 5
    assert front.connections_accepted <= 8 + 1       # the pool, not a connection per call
