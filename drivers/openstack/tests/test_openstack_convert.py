"""Pure translation in the OpenStack driver: labels as tags/metadata, servers, flavors, limits."""

from __future__ import annotations

from skyctl.model import NodeState, node_labels
from skyctl_openstack import convert as cv


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


def test_exhausted_retries_is_a_capacity_fault_like_no_valid_host() -> None:
    from skyctl.model import CAPACITY_FAULT

    msg = ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures "
           "for instance 5c1f.")
    node = cv.server_to_node({"id": "x", "status": "ERROR", "fault": {"code": 500, "message": msg}}, "s")
    assert node.extra[CAPACITY_FAULT] and node.extra["fault"] == msg
    other = cv.server_to_node({"id": "y", "status": "ERROR", "fault": {"message": "Build aborted"}}, "s")
    assert CAPACITY_FAULT not in other.extra and other.extra["fault"] == "Build aborted"


def test_dual_stack_addresses_follow_ssh_address_family() -> None:
    from skyctl_openstack.convert import server_addresses

    addresses = {"private": [
        {"version": 6, "addr": "2001:db8::5", "OS-EXT-IPS:type": "fixed"},
        {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
        {"version": 4, "addr": "203.0.113.9", "OS-EXT-IPS:type": "floating"},
    ]}
    assert server_addresses(addresses) == ("203.0.113.9", "10.0.0.5", "2001:db8::5")
    assert server_addresses(addresses, "ipv4") == ("203.0.113.9", "10.0.0.5", "2001:db8::5")
    assert server_addresses(addresses, "ipv6") == ("2001:db8::5", "203.0.113.9", "10.0.0.5")
    assert server_addresses({"n": [{"addr": "2001:db8::7"}, {"addr": "10.0.0.7"}]}, "auto") == \
        ("10.0.0.7", "2001:db8::7")


def test_flavor_extra_specs_mark_special_hardware_and_boot_volumes() -> None:
    from skyctl.model import BOOT_VOLUME, FLAVOR_UNUSABLE, SPECIAL_HARDWARE
    from skyctl_openstack.convert import flavor_from, special_hardware

    assert special_hardware({"resources:VGPU": "1", "resources:VCPU": "0", "hw:cpu_policy": "dedicated",
                             "pci_passthrough:alias": "a100:1", "trait:CUSTOM_GPU": "required",
                             "trait:HW_CPU_X86_AVX2": "forbidden", "resources:CUSTOM_BAREMETAL_GOLD": "1",
                             "resources1:PGPU": "1", "resources:FPGA": "0"}) == {
        "resources:VGPU": "1", "pci_passthrough:alias": "a100:1", "trait:CUSTOM_GPU": "required",
        "resources:CUSTOM_BAREMETAL_GOLD": "1", "resources1:PGPU": "1"}
    diskless = {"id": "1", "name": "d", "vcpus": 1, "ram": 512, "disk": 0}
    assert flavor_from(diskless, volumes=True).extra[BOOT_VOLUME] is True
    assert FLAVOR_UNUSABLE in flavor_from(diskless).extra
    with_disk = {"id": "2", "name": "m", "vcpus": 1, "ram": 512, "disk": 10, "extra_specs": {"resources:VGPU": "1"}}
    f = flavor_from(with_disk, volumes=True)
    assert not f.boot_volume and f.extra[SPECIAL_HARDWARE] == {"resources:VGPU": "1"}
    assert flavor_from(with_disk, volumes=True, boot_from_volume=True).boot_volume
