"""The sandbox's OpenNebula site as production sites run oned: an ordinary user in group
`users`, oneadmin's objects shared with the group, name lookups among the caller's own objects,
group quotas, no OneGate endpoint, PROLOG/BOOT that take time (and may fail), terminate refused
while a VM is being set up. Driven with pyone directly; messages as oned sends them."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pyone
import pytest

from skyctl.polling import iterate_timeout
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.testing.sandbox import make_opennebula_world as make_world
from skyctl.testing.sandbox import serving_opennebula as serving

PASSWORD = "s3cret-sandbox-pw"
SESSION = f"skyuser:{PASSWORD}"
SMALL = 'VCPU = "1"\nMEMORY = "256"\n'


def _serve(**site: object) -> Iterator[tuple[OpenNebulaFront, pyone.OneServer]]:
    with serving(make_world(**site), PASSWORD) as front:
        yield front, pyone.OneServer(front.endpoint, session=SESSION)


@pytest.fixture
def site() -> Iterator[tuple[OpenNebulaFront, pyone.OneServer]]:
    yield from _serve()


def test_objects_belong_to_oneadmin_and_are_shared_with_the_group(site) -> None:
    front, one = site
    for pool in (one.templatepool.info(-2, -1, -1).VMTEMPLATE, one.imagepool.info(-2, -1, -1).IMAGE,
                 one.vnpool.info(-2, -1, -1).VNET):
        for obj in pool:
            assert (obj.UID, obj.UNAME, obj.GID, obj.GNAME) == (0, "oneadmin", 1, "users")
            p = obj.PERMISSIONS
            assert (p.GROUP_U, p.OTHER_U) == (1, 0)
    # -3 is "mine": an ordinary user owns none of them; -1 "mine and my groups" shows them
    assert not (one.templatepool.info(-3, -1, -1).VMTEMPLATE or [])
    assert len(one.templatepool.info(-1, -1, -1).VMTEMPLATE) == 2


def test_the_site_template_has_its_own_context_nic_and_cpu_ratio(site) -> None:
    front, one = site
    t = one.template.info(0)
    assert t.TEMPLATE["CPU"] == "0.5" and t.TEMPLATE["VCPU"] == "1"
    ctx = t.TEMPLATE["CONTEXT"]
    assert ctx["SSH_PUBLIC_KEY"] == "$USER[SSH_PUBLIC_KEY]" and ctx["INIT_SCRIPTS"] and ctx["DNS"]
    assert t.TEMPLATE["NIC"]["NETWORK_UNAME"] == "oneadmin"
    # kept where the extra template does not replace them
    vm_id = one.template.instantiate(0, "kept", False, SMALL, False)
    vm = one.vm.info(vm_id)
    assert vm.TEMPLATE["CPU"] == "0.5" and vm.TEMPLATE["CONTEXT"]["DNS"] == "127.0.0.53"


def test_token_is_refused_without_a_onegate_endpoint(site) -> None:
    front, one = site
    extra = SMALL + 'CONTEXT = [ NETWORK = "YES", TOKEN = "YES", REPORT_READY = "YES" ]\n'
    with pytest.raises(pyone.OneException) as info:
        one.template.instantiate(0, "token", False, extra, False)
    # src/vm/VirtualMachineContext.cc
    assert str(info.value).endswith("TOKEN set, but onegate endpoint was not defined in oned.conf.")
    reply = xmlrpc.client.ServerProxy(front.endpoint).one.template.instantiate(SESSION, 0, "token", False, extra,
                                                                                False)
    assert reply[0] is False and reply[2] == 0x4000
    assert front.world.live_vms() == []


def test_token_is_accepted_where_the_spec_sets_onegate() -> None:
    for front, one in _serve(onegate_endpoint="http://127.0.0.1:5030"):
        extra = SMALL + 'CONTEXT = [ NETWORK = "YES", TOKEN = "YES" ]\n'
        vm_id = one.template.instantiate(0, "token", False, extra, False)
        assert one.vm.info(vm_id).TEMPLATE["CONTEXT"]["ONEGATE_ENDPOINT"] == "http://127.0.0.1:5030"


def test_names_are_looked_up_among_the_callers_own_objects(site) -> None:
    front, one = site
    with pytest.raises(pyone.OneException) as info:
        one.template.instantiate(0, "n", False, SMALL + 'NIC = [ NETWORK = "sandbox-net" ]', False)
    # src/vnm/VirtualNetworkPool.cc
    assert str(info.value).endswith("User 2 does not own a network with name: sandbox-net . "
                                    "Set NETWORK_UNAME or NETWORK_UID of owner in NIC.")
    with pytest.raises(pyone.OneException, match="User 2 does not own an image with name: AlmaLinux 9 . "
                                                 "Set IMAGE_UNAME or IMAGE_UID of owner in DISK."):
        one.vm.allocate('NAME = "x"\nCPU = 1\nMEMORY = 64\nDISK = [ IMAGE = "AlmaLinux 9" ]', False)
    with pytest.raises(pyone.OneException, match="User set in NETWORK_UNAME does not exist"):
        one.template.instantiate(0, "n", False, SMALL + 'NIC = [ NETWORK = "sandbox-net", NETWORK_UNAME = "bob" ]',
                                 False)
    for nic in ('NETWORK = "sandbox-net", NETWORK_UNAME = "oneadmin"', 'NETWORK = "sandbox-net", NETWORK_UID = "0"',
                'NETWORK_ID = "0"'):
        assert one.template.instantiate(0, "ok", False, SMALL + f"NIC = [ {nic} ]", False) >= 0


def test_group_quota_applies_and_is_shown_by_group_info(one_schema_errors: Any) -> None:
    for front, one in _serve(quota={"instances": 10}, group_quota={"instances": 2}):
        one.template.instantiate(0, "a", False, SMALL, False)
        one.template.instantiate(0, "b", False, SMALL, False)
        with pytest.raises(pyone.OneAuthorizationException) as info:
            one.template.instantiate(0, "c", False, SMALL, False)
        assert str(info.value) == ("[one.template.instantiate] User [2] : group [1] limit of 2 reached "
                                   "for VMS quota in VM.")
        user = one.user.info(-1)
        body = xmlrpc.client.ServerProxy(front.endpoint).one.group.info(SESSION, user.GID, False)
        assert body[0] is True and one_schema_errors(body[1], "group.xsd") == []
        quota = one.group.info(user.GID).VM_QUOTA.VM[0]
        assert (quota.VMS, quota.VMS_USED) == ("2", "2")


def test_terminate_is_refused_while_the_vm_is_set_up(site) -> None:
    front, one = site
    front.world.settings.update(prolog_seconds=30, boot_seconds=0.05)
    vm_id = one.template.instantiate(0, "slow", False, SMALL, False)
    for _ in iterate_timeout(5, "the VM to be in PROLOG", interval=0.01):
        if one.vm.info(vm_id).LCM_STATE == 1:
            break
    assert (one.vm.info(vm_id).STATE, one.vm.info(vm_id).LCM_STATE) == (3, 1)    # ACTIVE/PROLOG
    with pytest.raises(pyone.OneActionException) as info:
        one.vm.action("terminate-hard", vm_id)
    # src/dm/DispatchManagerActions.cc, wrapped by the request manager
    assert str(info.value) == (f'[one.vm.action] Error performing action "terminate-hard": '
                               f"Could not terminate VM {vm_id}, wrong state ACTIVE.")


def test_boot_failure_can_be_injected_and_the_vm_deleted() -> None:
    for front, one in _serve(boot_failure_rate=1.0, boot_seconds=0.05, prolog_seconds=0.05):
        vm_id = one.template.instantiate(0, "bad", False, SMALL, False)
        for _ in iterate_timeout(5, "the VM to be in BOOT_FAILURE", interval=0.01):
            if one.vm.info(vm_id).LCM_STATE == 36:
                break
        vm = one.vm.info(vm_id)
        assert (vm.STATE, vm.LCM_STATE) == (3, 36)                # BOOT_FAILURE
        assert "Error deploying virtual machine" in vm.USER_TEMPLATE["ERROR"]
        one.vm.action("terminate-hard", vm_id)                    # oned deletes failed VMs
        with pytest.raises(pyone.OneNoExistsException):
            one.vm.info(vm_id)


def test_spec_fields_of_an_opennebula_site() -> None:
    from skyctl.errors import ConfigError
    from skyctl.sandbox import spec

    resolved = spec.resolve({"sites": {"cc": {"onegate_endpoint": "http://127.0.0.1:5030", "prolog_seconds": 2,
                                              "boot_failure_rate": 0.5, "group_quota": {"instances": 4}}}})
    world = spec.build_world("cc", resolved["sites"]["cc"], resolved)
    assert world.settings == {"onegate_endpoint": "http://127.0.0.1:5030", "prolog_seconds": 2,
                              "boot_failure_rate": 0.5}
    assert world.group_quota.instances == 4 and world.group_quota.cores == 48
    with pytest.raises(ConfigError, match="sites.home.onegate_endpoint: exists on OpenNebula sites only"):
        spec.resolve({"sites": {"home": {"onegate_endpoint": "http://x"}}})
    with pytest.raises(ConfigError, match="sites.cc.onegate_endpoint: must be an http"):
        spec.resolve({"sites": {"cc": {"onegate_endpoint": "x:5030"}}})
    with pytest.raises(ConfigError, match="sites.cc.boot_failure_rate"):
        spec.resolve({"sites": {"cc": {"boot_failure_rate": 2}}})
