"""The sandbox's OpenNebula XML-RPC endpoint, driven with pyone directly (not through skyctl).

The assertions are about oned's behaviour (codes, messages, states, body shapes), so they hold
against a real oned as well: only the fixture that starts the front and the checks that peek
at the world (what the guest received) are sandbox-specific.
"""

from __future__ import annotations

import base64
import time
import xmlrpc.client
from collections.abc import Callable, Iterator

import pyone
import pytest
import requests

from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.sandbox.opennebula.template import parse_template
from skyctl.sandbox.world import SiteWorld
from skyctl.testing.sandbox import make_opennebula_world as make_world
from skyctl.testing.sandbox import serving_opennebula as serving

PASSWORD = "s3cret-sandbox-pw"
SESSION = f"skyuser:{PASSWORD}"


@pytest.fixture
def front() -> Iterator[OpenNebulaFront]:
    with serving(make_world(), PASSWORD) as f:
        yield f


@pytest.fixture
def one(front: OpenNebulaFront) -> pyone.OneServer:
    return pyone.OneServer(front.endpoint, session=SESSION)


ADMIN_SESSION = f"oneadmin:admin-{PASSWORD}"


@pytest.fixture
def admin_front(front: OpenNebulaFront) -> Iterator[OpenNebulaFront]:
    """oneadmin on the same site: sees the hosts, sets users' quotas."""
    f = OpenNebulaFront(front.world, username="oneadmin", password="admin-" + PASSWORD)
    f.start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def admin(admin_front: OpenNebulaFront) -> pyone.OneServer:
    return pyone.OneServer(admin_front.endpoint, session=ADMIN_SESSION)


def raw(front: OpenNebulaFront) -> xmlrpc.client.ServerProxy:
    """The bare XML-RPC view: `[ok, body, code, ...]` as it is on the wire."""
    return xmlrpc.client.ServerProxy(front.endpoint)


def wait_running(one: pyone.OneServer, vm_id: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        vm = one.vm.info(vm_id)
        if (vm.STATE, vm.LCM_STATE) == (3, 3) or time.monotonic() > deadline:
            return vm
        time.sleep(0.02)


EXTRA = """CPU = "1"
VCPU = 1
MEMORY = "512"
CONTEXT = [
  NETWORK = "YES",
  SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3Nza key-one
ssh-rsa AAAAB3Nza key-two",
  USER_DATA = "{ud}",
  USERDATA_ENCODING = "base64",
  REPORT_READY = "YES" ]
SKYCTL_GROUP = "g1"
SKYCTL_LAUNCH = "l-1"
"""


def instantiate(one: pyone.OneServer, name: str = "vm-a", user_data: str = "#cloud-config\n{}\n") -> int:
    ud = base64.b64encode(user_data.encode()).decode()
    return one.template.instantiate(0, name, False, EXTRA.format(ud=ud), False)


# ---------------------------------------------------------------- basics


def test_version_and_endpoint(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    assert front.endpoint == f"http://127.0.0.1:{front.port}/RPC2"
    assert one.system.version().startswith("7.")


def test_pools_parse_through_pyone(front: OpenNebulaFront, one: pyone.OneServer, admin: pyone.OneServer) -> None:
    templates = one.templatepool.info(-2, -1, -1)
    names = {t.NAME for t in templates.VMTEMPLATE}
    assert names == {"AlmaLinux 9", "Ubuntu 24.04"}
    for t in templates.VMTEMPLATE:
        assert t.TEMPLATE["DISK"]["IMAGE"] == t.NAME      # each template uses the image of its name
    assert one.template.info(templates.VMTEMPLATE[0].ID).NAME == templates.VMTEMPLATE[0].NAME
    images = one.imagepool.info(-2, -1, -1)
    assert {i.NAME for i in images.IMAGE} == names
    vnets = one.vnpool.info(-2, -1, -1)
    assert [v.NAME for v in vnets.VNET] == ["sandbox-net"]
    # the ACL filter leaves an ordinary user no host (src/rm/RequestManagerPoolInfoFilter.cc)
    assert one.hostpool.info().HOST == []
    hosts = admin.hostpool.info()
    assert len(hosts.HOST) == 2 and all(h.HOST_SHARE.MAX_CPU > 0 for h in hosts.HOST)
    user = one.user.info(-1)
    assert user.NAME == "skyuser" and user.GNAME == "users"
    assert PASSWORD not in str(raw(front).one.user.info(SESSION, -1))   # oned shows a hash


def test_bodies_follow_the_official_schemas(front: OpenNebulaFront, one: pyone.OneServer,
                                            admin_front: OpenNebulaFront,
                                            one_schema_errors: Callable[[str, str], list[str]]) -> None:
    vm_id = instantiate(one)
    wait_running(one, vm_id)
    r = raw(front).one
    bodies = {
        "vm.xsd": r.vm.info(SESSION, vm_id)[1],
        "vm_pool.xsd": r.vmpool.info(SESSION, -2, -1, -1, -1)[1],
        "vm_pool_extended.xsd": r.vmpool.infoextended(SESSION, -2, -1, -1, -1)[1],
        "user.xsd": r.user.info(SESSION, -1)[1],
        "host_pool.xsd": r.hostpool.info(SESSION)[1],
        "vmtemplate_pool.xsd": r.templatepool.info(SESSION, -2, -1, -1)[1],
        "image_pool.xsd": r.imagepool.info(SESSION, -2, -1, -1)[1],
        "vnet_pool.xsd": r.vnpool.info(SESSION, -2, -1, -1)[1],
    }
    for xsd, body in bodies.items():
        assert one_schema_errors(body, xsd) == [], xsd
    assert one_schema_errors(raw(admin_front).one.hostpool.info(ADMIN_SESSION)[1], "host_pool.xsd") == []
    # a pending VM (no history yet) validates too
    front.world.faults.boot_delay = 60
    pending = instantiate(one, "vm-pending")
    assert one_schema_errors(r.vm.info(SESSION, pending)[1], "vm.xsd") == []


# ---------------------------------------------------------------- VMs


def test_instantiate_runs_with_the_context_received(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    vm_id = instantiate(one, user_data="#cloud-config\nruncmd: [echo hi]\n")
    assert isinstance(vm_id, int)
    first = one.vm.info(vm_id)
    assert first.STATE in (1, 3)
    vm = wait_running(one, vm_id)
    assert (vm.STATE, vm.LCM_STATE) == (3, 3)
    assert vm.NAME == "vm-a"
    assert vm.TEMPLATE["CPU"] == "1" and vm.TEMPLATE["MEMORY"] == "512"
    assert vm.TEMPLATE["CONTEXT"]["NETWORK"] == "YES"
    assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"] == vm.TEMPLATE["NIC"]["IP"]
    assert vm.TEMPLATE["TEMPLATE_ID"] == "0"
    assert vm.USER_TEMPLATE["SKYCTL_GROUP"] == "g1"       # unknown attributes land in USER_TEMPLATE
    assert "SKYCTL_GROUP" not in vm.TEMPLATE

    svm = front.world.get_vm(str(vm_id))
    assert svm.user_data == "#cloud-config\nruncmd: [echo hi]\n"
    assert svm.ssh_keys == ["ssh-ed25519 AAAAC3Nza key-one", "ssh-rsa AAAAB3Nza key-two"]
    assert svm.context["REPORT_READY"] == "YES"
    assert svm.metadata["SKYCTL_LAUNCH"] == "l-1"
    assert svm.vcpus == 1 and svm.ram_mib == 512


def test_lifecycle_passes_pending_prolog_boot_running() -> None:
    world = make_world(boot_delay=1.0)
    front = OpenNebulaFront(world, password=PASSWORD)
    vm = world.create_vm(name="x", vcpus=1, ram_mib=512, image_id="0", vm_id=world.next_int_id())
    t0 = vm.created
    seen = [front.vm_state(vm, t0 + dt) for dt in (0.0, 0.3, 0.8, 1.0, 5.0)]
    assert seen == [(1, 0), (3, 1), (3, 2), (3, 3), (3, 3)]


def test_ready_is_reported_once_the_guest_says_so(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    vm_id = instantiate(one)
    vm = wait_running(one, vm_id)
    assert "READY" not in vm.USER_TEMPLATE
    front.world.get_vm(str(vm_id)).ready = True          # what the SSH runtime does
    assert one.vm.info(vm_id).USER_TEMPLATE["READY"] == "YES"


def test_address_from_the_runtime_goes_in_the_nic(one: pyone.OneServer) -> None:
    world = make_world()

    def give_address(w: SiteWorld, vm) -> None:
        vm.address = "127.0.5.7"

    world.on_create = give_address
    front = OpenNebulaFront(world, password=PASSWORD)
    front.start()
    try:
        client = pyone.OneServer(front.endpoint, session=SESSION)
        vm_id = instantiate(client)
        vm = client.vm.info(vm_id)
        assert vm.TEMPLATE["NIC"]["IP"] == "127.0.5.7"
        assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"] == "127.0.5.7"
        assert client.vmpool.info(-2, -1, -1, -1).VM[0].TEMPLATE["NIC"]["IP"] == "127.0.5.7"
    finally:
        front.stop()


def test_allocate_with_a_full_template(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    vm_id = one.vm.allocate('NAME = "full"\nCPU = "2"\nMEMORY = "1024"\n'
                            'DISK = [ IMAGE = "Ubuntu 24.04", IMAGE_UNAME = "oneadmin" ]\n'
                            'NIC = [ NETWORK = "sandbox-net", NETWORK_UID = "0" ]\nCONTEXT = [ NETWORK = "YES" ]', False)
    vm = wait_running(one, vm_id)
    assert vm.NAME == "full" and vm.TEMPLATE["DISK"]["IMAGE"] == "Ubuntu 24.04"
    assert front.world.get_vm(str(vm_id)).vcpus == 2
    with pytest.raises(pyone.OneException, match=r"\[one.vm.allocate\] Error getting image"):
        one.vm.allocate('NAME = "x"\nCPU = 1\nMEMORY = 64\nDISK = [ IMAGE_ID = "77" ]', False)


def test_pool_filters_pages_and_states(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    ids = [instantiate(one, f"vm-{i}") for i in range(5)]
    for vm_id in ids:
        wait_running(one, vm_id)
    pool = one.vmpool.info(-2, -1, -1, -1)
    assert [vm.ID for vm in pool.VM] == ids
    assert [vm.ID for vm in one.vmpool.info(-2, ids[1], ids[3], -1).VM] == ids[1:4]      # id range
    assert [vm.ID for vm in one.vmpool.info(-2, 0, -2, -1).VM] == ids[:2]                # page of 2
    assert [vm.ID for vm in one.vmpool.info(-2, 4, -2, -1).VM] == ids[4:]                # offset 4
    one.vm.action("poweroff", ids[0])
    assert [vm.ID for vm in one.vmpool.info(-2, -1, -1, 8).VM] == [ids[0]]               # POWEROFF only
    assert [vm.ID for vm in one.vmpool.info(-2, -1, -1, 3).VM] == ids[1:]
    assert one.vmpool.info(42, -1, -1, -1).VM == []                                       # another user's
    extended = one.vmpool.infoextended(-2, -1, -1, -1)
    assert [vm.ID for vm in extended.VM] == ids


def test_poweroff_resume_and_wrong_state(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    front.world.faults.boot_delay = 60
    vm_id = instantiate(one)
    with pytest.raises(pyone.OneActionException) as info:
        one.vm.action("poweroff", vm_id)
    assert str(info.value) == ('[one.vm.action] Error performing action "poweroff": '
                               "This action is not available for state PENDING")
    assert raw(front).one.vm.action(SESSION, "poweroff", vm_id)[2] == 0x800
    front.world.faults.boot_delay = 0
    front.world.get_vm(str(vm_id)).boot_delay = 0
    assert one.vm.action("poweroff", vm_id) == vm_id
    vm = one.vm.info(vm_id)
    assert (vm.STATE, vm.LCM_STATE) == (8, 0)
    one.vm.action("resume", vm_id)
    assert one.vm.info(vm_id).STATE == 3
    one.vm.action("terminate-hard", vm_id)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.info(vm_id)


def test_update_user_template(one: pyone.OneServer) -> None:
    vm_id = instantiate(one)
    one.vm.update(vm_id, 'NOTE = "merged"', 1)
    ut = one.vm.info(vm_id).USER_TEMPLATE
    assert ut["NOTE"] == "merged" and ut["SKYCTL_GROUP"] == "g1"
    one.vm.update(vm_id, 'ONLY = "this"', 0)
    assert dict(one.vm.info(vm_id).USER_TEMPLATE) == {"ONLY": "this"}


# ---------------------------------------------------------------- errors, exactly as oned sends them


def test_quota_exhaustion_answers_like_oned(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    front.world.quota.instances = 2
    instantiate(one, "a")
    instantiate(one, "b")
    with pytest.raises(pyone.OneAuthorizationException) as info:
        instantiate(one, "c")
    assert str(info.value) == ("[one.template.instantiate] User [2] : user [2] limit of 2 reached "
                               "for VMS quota in VM.")
    reply = raw(front).one.template.instantiate(SESSION, 0, "c", False, 'MEMORY="64"', False)
    assert reply[0] is False and reply[2] == 0x200
    quota = one.user.info(-1).VM_QUOTA.VM[0]
    assert (quota.VMS, quota.VMS_USED) == ("2", "2")


def test_default_site_quota_matches_the_spec(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    instantiate(one)
    quota = one.user.info(-1).VM_QUOTA.VM[0]
    assert (quota.VMS, quota.VMS_USED, quota.CPU, quota.CPU_USED, quota.MEMORY_USED) == ("16", "1", "32", "1", "512")
    assert quota.MEMORY == "-1"                              # the default applies...
    assert one.user.info(-1).DEFAULT_USER_QUOTAS.VM_QUOTA.VM.MEMORY == "-2"   # ...and is unlimited


def test_cpu_quota_message(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    front.world.quota.cores = 1
    instantiate(one)
    with pytest.raises(pyone.OneAuthorizationException, match=r"limit of 1 reached for CPU quota in VM\.$"):
        instantiate(one, "second")


def test_missing_objects(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    with pytest.raises(pyone.OneNoExistsException) as info:
        one.vm.info(99)
    assert str(info.value) == "[one.vm.info] Error getting virtual machine [99]."
    assert raw(front).one.vm.info(SESSION, 99) == [False, "[one.vm.info] Error getting virtual machine [99].",
                                                   0x400, 99, 0]
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.action("terminate-hard", 99)
    with pytest.raises(pyone.OneNoExistsException):
        one.template.instantiate(42, "x", False, "", False)


def test_bad_session(front: OpenNebulaFront) -> None:
    bad = pyone.OneServer(front.endpoint, session="skyuser:wrong")
    with pytest.raises(pyone.OneAuthenticationException) as info:
        bad.hostpool.info()
    assert str(info.value) == "[one.hostpool.info] User couldn't be authenticated, aborting call."
    assert raw(front).one.vm.info("nobody:x", 0)[2] == 0x100


def test_injected_fault_is_an_internal_error(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    front.world.faults.error_rate = 1.0
    with pytest.raises(pyone.OneInternalException, match=r"^\[one.vmpool.info\] Internal error"):
        one.vmpool.info(-2, -1, -1, -1)
    assert raw(front).one.system.version(SESSION)[2] == 0x2000
    front.world.faults.error_rate = 0.0
    assert one.system.version()


def test_down_drops_connections(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    assert one.system.version()
    front.world.faults.down = True
    with pytest.raises(requests.ConnectionError):
        one.system.version()
    front.world.faults.down = False
    assert one.system.version()


def test_unknown_method_is_an_xmlrpc_fault(front: OpenNebulaFront) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        raw(front).one.vm.frobnicate(SESSION, 1)
    assert info.value.faultCode == -506


def test_stop_and_start_again_on_the_same_port(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    port = front.port
    assert one.system.version()
    front.stop()
    with pytest.raises(requests.ConnectionError):
        one.system.version()
    front.start()
    assert front.port == port
    assert one.system.version()


def test_keep_alive_serves_many_calls_on_one_connection(front: OpenNebulaFront) -> None:
    session = requests.Session()
    body = xmlrpc.client.dumps((SESSION,), "one.system.version")
    before = front.connections_accepted
    for _ in range(10):
        r = session.post(front.endpoint, data=body, headers={"Content-Type": "text/xml"})
        assert xmlrpc.client.loads(r.content)[0][0][1] == "7.0.0"
    assert front.connections_accepted - before == 1


def test_a_thousand_vms_list_and_parse(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    world = front.world
    world.quota.instances = world.quota.cores = -1
    world.group_quota.instances = world.group_quota.cores = -1
    for i in range(1000):
        world.create_vm(name=f"bulk-{i}", vcpus=1, ram_mib=512, image_id="0", vm_id=world.next_int_id(),
                        metadata={"SKYCTL_GROUP": "bulk"}, extra={"one": {"host": i % 2}})
    pool = one.vmpool.info(-2, -1, -1, -1)
    assert len(pool.VM) == 1000
    assert pool.VM[999].USER_TEMPLATE["SKYCTL_GROUP"] == "bulk"
    page = one.vmpool.info(-2, 900, -500, -1)
    assert [vm.ID for vm in page.VM] == list(range(900, 1000))


# ---------------------------------------------------------------- the template syntax


def test_template_syntax_parser() -> None:
    tmpl = parse_template('# comment\ncpu = 1\nNAME = "a \\"quoted\\" name"\n'
                          'DISK = [ IMAGE_ID = "3", SIZE = 10 ]\nMULTI = "line1\nline2"\n')
    assert tmpl == [("CPU", "1"), ("NAME", 'a "quoted" name'), ("DISK", {"IMAGE_ID": "3", "SIZE": "10"}),
                    ("MULTI", "line1\nline2")]
    assert parse_template("<TEMPLATE><CPU>2</CPU><NIC><NETWORK_ID>0</NETWORK_ID></NIC>"
                          "<LABEL>a &amp; b</LABEL></TEMPLATE>") == [
        ("CPU", "2"), ("NIC", {"NETWORK_ID": "0"}), ("LABEL", "a & b")]
    with pytest.raises(ValueError):
        parse_template('CPU = "unterminated')


def test_wrong_argument_types_and_counts_are_faults(front: OpenNebulaFront) -> None:
    with pytest.raises(xmlrpc.client.Fault, match="Type mismatch"):
        raw(front).one.vm.info(SESSION, "7")
    with pytest.raises(xmlrpc.client.Fault, match="count mismatch"):
        raw(front).one.vm.action(SESSION, "poweroff")


def test_the_runtime_hook_sees_the_context_the_guest_gets() -> None:
    world = make_world()
    seen: dict[str, str] = {}

    def hook(w: SiteWorld, vm) -> None:
        seen.update(vm.context)
        vm.address = "127.0.9.9"

    world.on_create = hook
    front = OpenNebulaFront(world, password=PASSWORD)
    front.start()
    try:
        vm_id = instantiate(pyone.OneServer(front.endpoint, session=SESSION))
        assert seen["DISK_ID"] == "1" and seen["ETH0_MAC"] and seen["USERDATA_ENCODING"] == "base64"
        assert world.get_vm(str(vm_id)).context["ETH0_IP"] == "127.0.9.9"
    finally:
        front.stop()


def test_context_variables_are_substituted(front: OpenNebulaFront, one: pyone.OneServer) -> None:
    vm_id = one.template.instantiate(1, "", False, 'MEMORY = 256\nCONTEXT = [ NETWORK = "YES", SET_HOSTNAME = "$NAME",'
                                                   ' ID = "vm-$VMID", KEYS = "$USER[SSH_PUBLIC_KEY]",'
                                                   ' IP = "$NIC[IP]", UNKNOWN = "<$NOPE>" ]', False)
    ctx = front.world.get_vm(str(vm_id)).context
    assert ctx["SET_HOSTNAME"] == f"Ubuntu 24.04-{vm_id}"      # an empty name: "<template>-<id>"
    assert (ctx["ID"], ctx["KEYS"], ctx["IP"], ctx["UNKNOWN"]) == (f"vm-{vm_id}", "", "127.0.0.1", "<>")
    assert one.vm.info(vm_id).NAME == f"Ubuntu 24.04-{vm_id}"


def test_user_quota_sets_limits(front: OpenNebulaFront, one: pyone.OneServer, admin: pyone.OneServer) -> None:
    admin.user.quota(2, "VM = [ VMS = 3, CPU = 4, MEMORY = 2048 ]")
    q = front.world.quota
    assert (q.instances, q.cores, q.ram_mib) == (3, 4, 2048)
    admin.user.quota(2, "VM = [ VMS = -2 ]")
    assert front.world.quota.instances == -1
    with pytest.raises(pyone.OneAuthorizationException, match=r"User \[2\] : Not authorized to perform ADMIN USER"):
        one.user.quota(2, "VM = [ VMS = 100 ]")     # the user may not raise their own


def test_no_host_with_room_leaves_the_vm_pending_with_a_sched_message() -> None:
    world = make_world(host_cpus=2)
    front = OpenNebulaFront(world, password=PASSWORD)
    front.start()
    try:
        client = pyone.OneServer(front.endpoint, session=SESSION)
        instantiate(client, "fits")
        extra = EXTRA.format(ud="").replace('CPU = "1"', 'CPU = "2"')
        stuck = client.template.instantiate(0, "too-big", False, extra, False)
        time.sleep(0.1)
        vm = client.vm.info(stuck)
        assert (vm.STATE, vm.LCM_STATE) == (1, 0)
        assert "No host with enough capacity" in vm.USER_TEMPLATE["SCHED_MESSAGE"]
        admin = OpenNebulaFront(world, username="oneadmin", password="admin-" + PASSWORD)
        admin.start()
        try:
            hosts = pyone.OneServer(admin.endpoint, session=f"oneadmin:admin-{PASSWORD}").hostpool.info().HOST
        finally:
            admin.stop()
        assert sum(h.HOST_SHARE.MAX_CPU for h in hosts) == 200
    finally:
        front.stop()
