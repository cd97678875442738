"""The OpenStack driver's error mapper: Nova's (Keystone's, Neutron's, Glance's) error answers
-> skyctl's error tree."""

from __future__ import annotations

import pytest

from skyctl.errors import AuthError, InvalidRequest, NotFound, QuotaExceeded, Transient, Unsupported
from skyctl_openstack import errors


def test_quota_message_is_parsed() -> None:
    msg = "Quota exceeded for instances: Requested 1, but already used 8 of 8 instances"
    err = errors.error_for_status(403, msg, "home")
    assert isinstance(err, QuotaExceeded) and err.site == "home" and err.site_full
    assert (err.resource, err.requested, err.used, err.limit) == ("instances", 1, 8, 8)
    cores = errors.error_for_status(403, "Quota exceeded for cores: Requested 4, but already used 1 of 4 cores", "s")
    assert (cores.resource, cores.requested, cores.used, cores.limit) == ("cores", 4, 1, 4)


def test_key_pair_quota_is_a_quota_not_a_refusal() -> None:
    # Nova answers 403 for both; only the quota one means "try another site".
    err = errors.error_for_status(403, "Quota exceeded, too many key pairs.", "home", what="keypair")
    assert isinstance(err, QuotaExceeded) and err.site_full and err.resource == "key_pairs"
    assert "too many key pairs" in err.line()
    assert isinstance(errors.error_for_status(403, "Policy doesn't allow os_compute_api:os-keypairs:create", "s"),
                      AuthError)


@pytest.mark.parametrize("status,cls", [(401, AuthError), (403, AuthError), (404, NotFound), (400, InvalidRequest),
                                        (409, InvalidRequest), (500, Transient), (503, Transient),
                                        (429, Transient)])
def test_status_map(status, cls) -> None:
    err = errors.error_for_status(status, "something", "home")
    assert type(err) is cls and err.site == "home"


def test_bad_request_names_the_field() -> None:
    assert errors.error_for_status(400, "Flavor 9 could not be found.", "s").field == "flavor"
    assert errors.error_for_status(400, "Image x could not be found.", "s").field == "image"
    assert errors.error_for_status(400, "Invalid key_name provided.", "s").field == "key_name"
    assert errors.error_for_status(400, "Invalid input for field/attribute user_data. Value: x", "s").field == "user_data"


def test_error_message_from_each_service_shape() -> None:
    assert errors.error_message({"forbidden": {"code": 403, "message": "m1"}}) == "m1"
    assert errors.error_message({"error": {"code": 401, "message": "m2", "title": "Unauthorized"}}) == "m2"
    assert errors.error_message({"NeutronError": {"message": "m3", "type": "X"}}) == "m3"
    assert errors.error_message(None, "<html><body><h1>503 Service Unavailable</h1>busy</body></html>") == \
        "503 Service Unavailable busy"


def test_sdk_exceptions_map_in_order_and_bugs_are_left_alone() -> None:
    from keystoneauth1 import exceptions as ks_exc

    unauthorized = errors.error_for_exception(ks_exc.Unauthorized("no"), "home", what="authenticate")
    assert type(unauthorized) is AuthError and unauthorized.line() == \
        "home: authenticate: the cloud refused the credentials"
    assert type(errors.error_for_exception(ks_exc.ConnectFailure("refused"), "home", what="x")) is Transient
    missing = errors.error_for_exception(ks_exc.EndpointNotFound("no image service"), "home", what="x")
    assert type(missing) is Unsupported
    assert errors.error_for_exception(KeyError("a bug"), "home", what="x") is None


# ---------------------------------------------------------------- issue 13: only Keystone refuses


@pytest.mark.parametrize("service", ["compute", "network"])
def test_a_nova_or_neutron_403_is_not_an_auth_error(service) -> None:
    zero = errors.error_for_status(403, "Only volume-backed servers are allowed for flavors with zero disk.",
                                   "sara", what="create g-0", service=service)
    assert type(zero) is InvalidRequest and zero.exit_code != AuthError("x").exit_code
    assert zero.field == "flavor" and "zero disk" in zero.line() and zero.site == "sara"
    policy = errors.error_for_status(403, "(rule:create_floatingip:floating_ip_address) is disallowed by policy",
                                     "s", service=service)
    assert type(policy) is InvalidRequest and "disallowed by policy" in policy.line()
    # Keystone's own refusal (or an unknown service) stays an authentication error.
    assert type(errors.error_for_status(403, "no", "s", service="identity")) is AuthError


@pytest.mark.parametrize("message,resource", [
    ("Maximum number of ports exceeded", "ports"),
    ("Maximum number of floating IPs exceeded", "floating_IPs"),
    ("Maximum number of security groups or rules exceeded", "security_groups_or_rules"),
])
def test_nova_maximum_number_messages_are_quotas(message, resource) -> None:
    err = errors.error_for_status(403, message, "s", service="compute")
    assert isinstance(err, QuotaExceeded) and err.site_full and err.resource == resource
    assert message in err.line()


def test_unified_limits_message_is_a_quota_with_its_figures() -> None:
    msg = ("Project 9f0c is over a limit for [Resource servers is over limit of 10 due to current usage 10 "
           "and delta 1]")
    err = errors.error_for_status(403, msg, "s", service="compute")
    assert isinstance(err, QuotaExceeded) and (err.resource, err.requested, err.used, err.limit) == \
        ("instances", 1, 10, 10)
    cores = errors.error_for_status(403, "Resource class:VCPU is over limit of 8 due to current usage 6 and "
                                         "delta 4", "s", service="compute")
    assert (cores.resource, cores.limit) == ("cores", 8)


def test_cinder_quota_refusals_are_quota_errors_with_the_resource() -> None:
    from skyctl.errors import QuotaExceeded

    # cinder/exception.py VolumeLimitExceeded and VolumeSizeExceedsAvailableQuota (413s).
    count = errors.error_for_status(413, "Maximum number of volumes allowed (10) exceeded for quota 'volumes'.",
                                    "sara", service="block_storage")
    assert isinstance(count, QuotaExceeded) and (count.resource, count.limit) == ("volumes", 10)
    size = errors.error_for_status(413, "Requested volume or snapshot exceeds allowed gigabytes quota. Requested "
                                        "5G, quota is 8G and 4G has been consumed.", "sara", service="block_storage")
    assert isinstance(size, QuotaExceeded)
    assert (size.resource, size.requested, size.limit, size.used) == ("gigabytes", 5, 8, 4)
