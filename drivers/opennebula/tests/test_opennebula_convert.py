"""The driver's parser on reply bodies recorded from real OpenNebula servers (4.x-5.x eras;
see fixtures/README.md) and on 7.x-shaped variants of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.model import Limit, NodeState
from skyctl_opennebula import convert

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"


def body(name: str) -> str:
    return (RECORDED / name).read_text(encoding="utf-8")


def test_running_vm_with_two_nics_from_an_old_server() -> None:
    node = convert.to_node(convert.parse_vm(body("grycap-vm_info.xml")), site="s")
    assert node.id == "10908" and node.name == "userimage"
    assert node.state == NodeState.RUNNING
    assert node.addresses == ("158.42.1.1", "10.0.0.1")
    assert node.image == "Ubuntu 14.04 v5"
    assert node.size == "1cpu-512MiB"
    assert node.created_at == "2016-06-07T09:51:02Z"
    assert node.extra["host"] == "node"
    assert node.labels == {} and not node.managed


def test_powered_off_vm_with_a_stale_lcm_state() -> None:
    rec = convert.parse_vm(body("grycap-vm_info_off.xml"))
    assert (rec.state, rec.lcm_state) == (8, 3)
    node = convert.to_node(rec, site="s")
    assert node.state == NodeState.STOPPED
    assert node.extra["one_state"] == "POWEROFF"


def test_vm_bodies_missing_7x_elements_still_parse() -> None:
    # 4.x: no PREV_STATE, no MONITORING section, no VCPU, HISTORY with VMMMAD
    old = convert.parse_vm(body("quattor-one.vm.info__rpc_list_vm.xml"))
    assert (old.id, old.state, old.lcm_state, old.vcpu, old.cpu) == ("60", 3, 3, None, 1.0)
    assert old.template_id == "4" and old.hostname == "hyp101"
    assert old.context == {"DISK_ID": "1", "NETWORK": "YES", "TARGET": "hdb"}
    assert old.user_template["QUATTOR"] == "1"
    # 5.4: PREV_STATE present, CONTEXT with an empty SSH_PUBLIC_KEY, no NIC
    newer = convert.parse_vm(body("addon-pyone-one.vm.info.xml"))
    assert newer.ips == () and newer.context["SSH_PUBLIC_KEY"] == ""
    assert convert.to_node(newer, site="s").size == "1cpu-300MiB"


def test_vm_pools_of_both_eras() -> None:
    for name in ("quattor-one.vmpool.info__rpc_list_vmspool.xml", "addon-pyone-one.vmpool.info.xml"):
        records = convert.parse_vm_pool(body(name))
        assert len(records) == 1 and records[0].state == 3
    assert convert.parse_vm_pool("<VM_POOL></VM_POOL>") == []


def test_short_pool_body_without_user_template_is_flagged() -> None:
    short = ("<VM_POOL><VM><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>u</UNAME><GNAME>g</GNAME><NAME>n</NAME>"
             "<LAST_POLL>0</LAST_POLL><STATE>1</STATE><LCM_STATE>0</LCM_STATE><RESCHED>0</RESCHED><STIME>0</STIME>"
             "<ETIME>0</ETIME><DEPLOY_ID></DEPLOY_ID><TEMPLATE><CPU>0.5</CPU><MEMORY>256</MEMORY></TEMPLATE>"
             "<HISTORY_RECORDS></HISTORY_RECORDS></VM></VM_POOL>")
    rec = convert.parse_vm_pool(short)[0]
    assert not rec.has_user_template
    node = convert.to_node(rec, site="s")
    assert node.state == NodeState.PENDING and node.created_at is None and node.size == "0.5cpu-256MiB"


def test_labels_come_from_user_template() -> None:
    text = body("grycap-vm_info.xml").replace(
        "<USER_TEMPLATE></USER_TEMPLATE>",
        "<USER_TEMPLATE><SKYCTL_GROUP><![CDATA[g]]></SKYCTL_GROUP><SKYCTL_INDEX><![CDATA[3]]></SKYCTL_INDEX>"
        "<READY><![CDATA[YES]]></READY></USER_TEMPLATE>")
    node = convert.to_node(convert.parse_vm(text), site="s")
    assert node.labels == {"group": "g", "index": "3"} and node.group == "g" and node.managed
    assert node.extra["ready"] is True
    assert convert.matches(node.labels, {"group": "g"}) and not convert.matches(node.labels, {"group": "h"})


def test_user_quota_with_limits_and_defaults() -> None:
    instances, cores, ram = convert.parse_user_quota(body("grycap-user.xml"))
    assert cores == Limit("cores", 5, 100)
    assert ram == Limit("ram_mib", 10240, 102400)
    assert instances == Limit("instances", 3, None)     # -1 with no default set: unlimited


def test_user_quota_default_applies_for_minus_one() -> None:
    text = body("grycap-user.xml").replace(
        "<DEFAULT_USER_QUOTAS>\n        <DATASTORE_QUOTA></DATASTORE_QUOTA>\n        <NETWORK_QUOTA></NETWORK_QUOTA>\n"
        "        <VM_QUOTA></VM_QUOTA>",
        "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
        "<VM_QUOTA><VM><CPU>-2</CPU><MEMORY>-1</MEMORY><VMS>10</VMS></VM></VM_QUOTA>")
    instances, cores, ram = convert.parse_user_quota(text)
    assert instances == Limit("instances", 3, 10)
    assert cores.limit == 100
    text = text.replace("<CPU><![CDATA[100]]></CPU>", "<CPU><![CDATA[-2]]></CPU>")
    assert convert.parse_user_quota(text)[1] == Limit("cores", 5, None)


def test_user_without_any_vm_quota() -> None:
    assert convert.parse_user_quota(body("quattor-one.user.info__rpc_list_user.xml")) == (
        Limit("instances", 0, None), Limit("cores", 0, None), Limit("ram_mib", 0, None))


def test_per_cluster_quota_is_not_taken_for_the_global_one() -> None:
    text = ("<USER><ID>1</ID><VM_QUOTA>"
            "<VM><CLUSTER_IDS>100</CLUSTER_IDS><CPU>2</CPU><CPU_USED>0</CPU_USED><VMS>1</VMS><VMS_USED>0</VMS_USED></VM>"
            "<VM><CPU>8.5</CPU><CPU_USED>1.5</CPU_USED><VMS>4</VMS><VMS_USED>2</VMS_USED></VM>"
            "</VM_QUOTA></USER>")
    instances, cores, _ = convert.parse_user_quota(text)
    assert instances == Limit("instances", 2, 4)
    assert cores == Limit("cores", 2, 8)     # fractional CPU: used rounds up, limit down


def test_several_hosts_one_in_error() -> None:
    room = convert.parse_host_pool(body("quattor-one.hostpool.info__rpc_list_hostspool.xml"))
    assert (room.hosts, room.usable) == (3, 2)
    assert room.free_cpus == (800 - 100) // 100 + 800 // 100
    assert room.free_memory_mib == (16433996 - 524288) // 1024 + 16433996 // 1024
    room = convert.parse_host_pool(body("addon-pyone-one.hostpool.info.xml"))
    assert (room.free_cpus, room.usable) == (3 + 2, 2)


def test_capacity_combines_quota_and_hosts() -> None:
    quota = convert.parse_user_quota(body("grycap-user.xml"))
    cap = convert.capacity(quota, convert.parse_host_pool(body("addon-pyone-one.hostpool.info.xml")))
    assert cap.as_dict()["cores"] == {"used": 5, "limit": 100}
    assert cap.host_free_cpus == 5
    assert convert.capacity(quota, convert.parse_host_pool("<HOST_POOL></HOST_POOL>")).host_free_cpus is None


def test_templates_images_and_networks() -> None:
    [tmpl] = convert.parse_template_pool(body("quattor-one.templatepool.info__rpc_list_templatespool.xml"))
    assert (tmpl.id, tmpl.name, tmpl.extra["image"]) == ("4", "node630.cubone.os", "ttylinux-kvm_file0")
    [image] = convert.parse_image_pool(body("quattor-one.imagepool.info__rpc_list_imagespool.xml"))
    assert (image.id, image.checksum, image.extra["state"]) == ("43", "04c7d00e88fa66d9aaa34d9cf8ad6aaa", "READY")
    assert convert.parse_vnet_pool(body("quattor-one.vnpool.info__rpc_list_vnetspool.xml")) == [
        ("0", "altaria.os"), ("98", "pool.altaria.os")]
    assert convert.parse_vnet_pool(body("grycap-nets.xml")) == [("0", "privada"), ("1", "publica")]


def test_wrong_or_broken_bodies_raise_bad_reply() -> None:
    with pytest.raises(convert.BadReply):
        convert.parse_vm(body("grycap-user.xml"))
    with pytest.raises(convert.BadReply):
        convert.parse_vm_pool("<VM_POOL><VM>")
