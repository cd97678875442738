"""oned's error replies, and what the wire raises, -> skyctl's error tree."""

from __future__ import annotations

import pytest

from skyctl.errors import AuthError, InvalidRequest, NotFound, QuotaExceeded, Transient
from skyctl_opennebula.errors import WRONG_STATE, error_for_code, error_for_exception


@pytest.mark.parametrize(("message", "resource", "limit"), [
    ("[one.template.instantiate] User [5] : user [5] limit of 2 reached for VMS quota in VM.", "instances", 2),
    ("[one.vm.allocate] User [5] : group [1] limit of 32 reached for CPU quota in VM.", "cores", 32),
    ("[one.template.instantiate] User [0] : user [0] limit of 4096 reached for MEMORY quota in VM with ID: 100",
     "ram_mib", 4096),
    ("[one.vm.action] User [3] : user [3] limit of 1 reached for RUNNING_VMS quota in VM.", "instances", 1),
    ("[one.template.instantiate] User [3] : user [3] limit of 0.5 reached for CPU quota in VM.", "cores", 0),
])
def test_quota_messages(message: str, resource: str, limit: int) -> None:
    err = error_for_code(0x200, message, site="cc")
    assert isinstance(err, QuotaExceeded) and err.site_full
    assert (err.resource, err.limit, err.site) == (resource, limit, "cc")
    assert err.message == message


def test_other_codes() -> None:
    assert type(error_for_code(0x200, "[one.vm.info] User [4] : Not authorized to perform MANAGE VM [5].",
                          site="cc")) is AuthError
    bad_login = "[one.vm.info] User couldn't be authenticated, aborting call."
    assert type(error_for_code(0x100, bad_login, site="cc")) is AuthError
    assert type(error_for_code(0x400, "[one.vm.info] Error getting virtual machine [99].", site="cc")) is NotFound
    wrong_state = error_for_code(0x800, '[one.vm.action] Error performing action "poweroff": This action is not '
                                   "available for state PENDING", site="cc")
    assert type(wrong_state) is InvalidRequest and "PENDING" in wrong_state.message
    for code in (0x2000, 0x8000):
        err = error_for_code(code, "x", site="cc")
        assert type(err) is Transient and err.retryable
    for code in (0x1000, 0x4000, 0x7777):
        assert type(error_for_code(code, "x", site="cc")) is InvalidRequest
    assert error_for_code(0x400, "", site="cc").message == "OpenNebula error 0x0400"
    assert all(error_for_code(c, "m", site="cc").site == "cc" for c in (0x100, 0x200, 0x400, 0x800, 0x2000))


def test_wire_failures_name_the_call_and_endpoint_and_bugs_are_left_alone() -> None:
    import xmlrpc.client

    import requests

    def mapped(e: Exception):  # type: ignore[no-untyped-def]
        return error_for_exception(e, "one.vm.info", endpoint="http://one:2633/RPC2", timeout=2.0, site="cc")

    slow = mapped(requests.ReadTimeout())
    assert type(slow) is Transient and slow.line() == "cc: one.vm.info: no answer from http://one:2633/RPC2 within 2s"
    assert type(mapped(xmlrpc.client.ProtocolError("u", 401, "no", {}))) is AuthError
    assert type(mapped(xmlrpc.client.ProtocolError("u", 503, "busy", {}))) is Transient
    assert "is this an OpenNebula XML-RPC endpoint?" in mapped(xmlrpc.client.ProtocolError("u", 404, "x", {})).line()
    assert mapped(KeyError("a bug")) is None


# oned's own words, from its sources (file named with each).
@pytest.mark.parametrize("message, field", [
    # src/vm/VirtualMachineContext.cc
    ("[one.template.instantiate] Error allocating a new virtual machine template. TOKEN set, but onegate endpoint "
     "was not defined in oned.conf.", "onegate"),
    # src/vnm/VirtualNetworkPool.cc
    ("[one.template.instantiate] Error allocating a new virtual machine template. User 5 does not own a network "
     "with name: private . Set NETWORK_UNAME or NETWORK_UID of owner in NIC.", "network"),
    # src/image/ImageManager.cc
    ("[one.vm.allocate] Error allocating a new virtual machine. User 5 does not own an image with name: "
     "Alma 9 . Set IMAGE_UNAME or IMAGE_UID of owner in DISK.", "image"),
])
def test_site_configuration_refusals_name_the_field(message: str, field: str) -> None:
    err = error_for_code(0x4000, message, site="cc")
    assert isinstance(err, InvalidRequest) and not err.retryable
    assert err.field == field and "sites.cc" in (err.hint or "")


def test_terminate_in_prolog_is_a_wrong_state_refusal() -> None:
    # src/dm/DispatchManagerActions.cc, wrapped by RequestManagerVirtualMachine
    err = error_for_code(0x800, '[one.vm.action] Error performing action "terminate-hard": Could not terminate '
                                "VM 12, wrong state ACTIVE.", site="cc")
    assert isinstance(err, InvalidRequest) and WRONG_STATE in str(err)


@pytest.mark.parametrize("message", [
    # src/rm/Request.cc (authorization_error) around AuthRequest's message: `recover` is one of
    # oned.conf's VM_ADMIN_OPERATIONS, which an ordinary user lacks on their own VMs
    "[one.vm.recover] User [2] : Not authorized to perform ADMIN VM [7].",
    # src/rm/RequestManagerUser.cc (UserSetQuota needs ADMIN on the user)
    "[one.user.quota] User [2] : Not authorized to perform ADMIN USER [2].",
])
def test_admin_operations_refused_to_an_ordinary_user_are_auth_errors(message: str) -> None:
    err = error_for_code(0x200, message, site="cc")
    assert type(err) is AuthError and not err.retryable and err.message == message
