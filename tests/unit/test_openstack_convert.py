"""Pure translation in the OpenStack driver: state map, labels as tags/metadata, Nova's error
texts to skyctl's error tree."""

from __future__ import annotations

import pytest

from skyctl.errors import AuthError, InvalidRequest, NotFound, QuotaExceeded, Transient
from skyctl.model import NodeState, node_labels
from skyctl_openstack import _convert as cv


@pytest.mark.parametrize("status,state", [
    ("ACTIVE", NodeState.RUNNING), ("BUILD", NodeState.PENDING), ("REBUILD", NodeState.PENDING),
    ("HARD_REBOOT", NodeState.PENDING), ("SHUTOFF", NodeState.STOPPED), ("SUSPENDED", NodeState.STOPPED),
    ("PAUSED", NodeState.STOPPED), ("SHELVED_OFFLOADED", NodeState.STOPPED), ("ERROR", NodeState.ERROR),
    ("DELETED", NodeState.DELETED), ("SOFT_DELETED", NodeState.DELETED), ("RESCUE", NodeState.UNKNOWN),
    ("WHATEVER", NodeState.UNKNOWN), (None, NodeState.UNKNOWN),
])
def test_nova_status_map(status, state) -> None:
    assert cv.node_state(status) is state


def test_deleting_task_state_is_deleted() -> None:
    assert cv.node_state("ACTIVE", "deleting") is NodeState.DELETED


def test_labels_become_tags_and_prefixed_metadata() -> None:
    labels = node_labels("web", "l-1", "me", 3, "web-3")
    assert cv.labels_to_tags(labels) == ["skyctl", "skyctl-group=web", "skyctl-launch=l-1"]
    md = cv.labels_to_metadata(labels, image="alma9", size="small")
    assert md["skyctl:group"] == "web" and md["skyctl:index"] == "3" and md["skyctl:image"] == "alma9"
    assert cv.metadata_to_labels({**md, "other": "x"}) == labels


def test_untaggable_values_fall_back_to_client_side() -> None:
    assert cv.tag_for("group", "a/b") is None
    assert cv.tag_for("group", "x" * 60) is None
    tags, rest = cv.selector_query({"group": "a,b", "launch": "l1", "owner": "me"}, True)
    assert tags == ["skyctl", "skyctl-launch=l1"]
    assert rest == {"group": "a,b", "owner": "me"}
    assert cv.selector_query({"group": "g"}, False) == ([], {"group": "g"})


def test_quota_message_is_parsed() -> None:
    msg = "Quota exceeded for instances: Requested 1, but already used 8 of 8 instances"
    err = cv.error_for_status(403, msg, "home")
    assert isinstance(err, QuotaExceeded) and err.site == "home" and err.site_full
    assert (err.resource, err.requested, err.used, err.limit) == ("instances", 1, 8, 8)
    cores = cv.error_for_status(403, "Quota exceeded for cores: Requested 4, but already used 1 of 4 cores", "s")
    assert (cores.resource, cores.requested, cores.used, cores.limit) == ("cores", 4, 1, 4)


def test_key_pair_quota_is_a_quota_not_a_refusal() -> None:
    # Nova answers 403 for both; only the quota one means "try another site".
    err = cv.error_for_status(403, "Quota exceeded, too many key pairs.", "home", what="keypair")
    assert isinstance(err, QuotaExceeded) and err.site_full and err.resource == "key_pairs"
    assert "too many key pairs" in err.line()
    assert isinstance(cv.error_for_status(403, "Policy doesn't allow os_compute_api:os-keypairs:create", "s"),
                      AuthError)


@pytest.mark.parametrize("status,cls", [(401, AuthError), (403, AuthError), (404, NotFound), (400, InvalidRequest),
                                        (409, InvalidRequest), (500, Transient), (503, Transient),
                                        (429, Transient)])
def test_status_map(status, cls) -> None:
    err = cv.error_for_status(status, "something", "home")
    assert type(err) is cls and err.site == "home"


def test_bad_request_names_the_field() -> None:
    assert cv.error_for_status(400, "Flavor 9 could not be found.", "s").field == "flavor"
    assert cv.error_for_status(400, "Image x could not be found.", "s").field == "image"
    assert cv.error_for_status(400, "Invalid key_name provided.", "s").field == "key_name"
    assert cv.error_for_status(400, "Invalid input for field/attribute user_data. Value: x", "s").field == "user_data"


def test_error_message_from_each_service_shape() -> None:
    assert cv.error_message({"forbidden": {"code": 403, "message": "m1"}}) == "m1"
    assert cv.error_message({"error": {"code": 401, "message": "m2", "title": "Unauthorized"}}) == "m2"
    assert cv.error_message({"NeutronError": {"message": "m3", "type": "X"}}) == "m3"
    assert cv.error_message(None, "<html><body><h1>503 Service Unavailable</h1>busy</body></html>") == \
        "503 Service Unavailable busy"


def test_server_to_node() -> None:
    server = {
        "id": "abc", "name": "web-0", "status": "ACTIVE", "created": "2026-01-02T03:04:05Z",
        "metadata": {"skyctl:group": "web", "skyctl:launch": "l1", "skyctl:image": "alma9",
                     "skyctl:size": "small", "team": "x"},
        "tags": ["skyctl"], "flavor": {"original_name": "m1.small"}, "image": {"id": "img"},
        "addresses": {"private": [{"addr": "10.1.0.5", "OS-EXT-IPS:type": "fixed"},
                                  {"addr": "192.0.2.9", "OS-EXT-IPS:type": "floating"}]},
    }
    node = cv.server_to_node(server, "home")
    assert node.state is NodeState.RUNNING and node.group == "web" and node.managed
    assert node.labels == {"group": "web", "launch": "l1"}
    assert node.addresses == ("192.0.2.9", "10.1.0.5")   # floating first: what reaches it
    assert node.image == "alma9" and node.size == "small"
    assert node.created_at == "2026-01-02T03:04:05+00:00"
    assert node.extra["metadata"] == {"team": "x"}
    foreign = cv.server_to_node({"id": "z", "name": "theirs", "status": "SHUTOFF", "flavor": {"id": "2"},
                                 "image": ""}, "home")
    assert not foreign.managed and foreign.state is NodeState.STOPPED and foreign.size == "2"


def test_no_valid_host_detection() -> None:
    assert cv.no_valid_host({"status": "ERROR", "fault": {"code": 500, "message": "No valid host was found. "}})
    assert cv.no_valid_host({"status": "ERROR", "fault": {"message": "disk on fire"}}) is None
    assert cv.no_valid_host({"status": "ACTIVE"}) is None


def test_capacity_from_limits_maps_unlimited_to_none() -> None:
    cap = cv.capacity_from_limits({"maxTotalInstances": 8, "totalInstancesUsed": 3, "maxTotalCores": -1,
                                   "totalCoresUsed": 5, "maxTotalRAMSize": 4096, "totalRAMUsed": 1024})
    assert (cap.instances.limit, cap.instances.used) == (8, 3)
    assert cap.cores.limit is None and cap.cores.used == 5
    assert cap.ram_mib.free == 3072


def test_keypair_name_is_stable_and_short() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4or+mPFCfpQb8fn4sPzAJTxfP6f+VsWBuxUqHaKpsn me@host"
    assert cv.keypair_name(key) == cv.keypair_name(key.replace("me@host", "other"))
    assert cv.keypair_name(key).startswith("skyctl-") and len(cv.keypair_name(key)) == 19
