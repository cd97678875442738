"""What the driver sends in the extra template: sizes, NIC, CONTEXT, labels in USER_TEMPLATE."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from skyctl.model import Flavor, ImageRef, NodeSpec, RenderedContext, node_labels
from skyctl_opennebula.template import SiteTemplate, one_context, vm_template


def spec() -> NodeSpec:
    return NodeSpec(group="g", site="cc", image=ImageRef("0", "AlmaLinux 9"), flavor=Flavor("custom", "c", 2, 4096),
                    labels=node_labels("g", "l-1", "me", 3, "g-3"))


def parsed(sent: tuple[str, list[str]]) -> dict:
    root = ET.fromstring(sent[0])
    assert root.tag == "TEMPLATE"
    return {c.tag: ({g.tag: g.text or "" for g in c} if len(c) else c.text or "") for c in root}


def test_instantiate_extra_template() -> None:
    ctx = RenderedContext(user_data="#cloud-config\n", ssh_public_keys=("ssh-ed25519 A k1", "ssh-rsa B k2"))
    t = parsed(vm_template(spec(), ctx, nic={"NETWORK_ID": "7"}))
    assert (t["CPU"], t["VCPU"], t["MEMORY"]) == ("2", "2", "4096")
    assert t["NIC"] == {"NETWORK_ID": "7"}
    assert t["CONTEXT"]["NETWORK"] == "YES"
    assert t["CONTEXT"]["SSH_PUBLIC_KEY"] == "ssh-ed25519 A k1\nssh-rsa B k2"
    assert base64.b64decode(t["CONTEXT"]["USER_DATA"]).decode() == "#cloud-config\n"
    assert t["CONTEXT"]["USERDATA_ENCODING"] == "base64"
    assert {k: v for k, v in t.items() if k.startswith("SKYCTL_")} == {
        "SKYCTL_GROUP": "g", "SKYCTL_LAUNCH": "l-1", "SKYCTL_OWNER": "me", "SKYCTL_INDEX": "3", "SKYCTL_NAME": "g-3"}
    assert "NAME" not in t and "DISK" not in t


def test_allocate_full_template_and_named_network() -> None:
    t = parsed(vm_template(spec(), RenderedContext(), nic={"NETWORK": "private", "NETWORK_UID": "0"},
                               name="g-3", image_id="12"))
    assert t["NAME"] == "g-3" and t["DISK"] == {"IMAGE_ID": "12"} and t["NIC"] == {"NETWORK": "private", "NETWORK_UID": "0"}
    assert "CONTEXT" not in t


def test_rendered_context_wins_and_is_escaped() -> None:
    ctx = RenderedContext(one_context={"set_hostname": "a&b", "START_SCRIPT": "echo '<x>' \"y\" ]]>"},
                          user_data="not used")
    assert one_context(ctx) == {"SET_HOSTNAME": "a&b", "START_SCRIPT": "echo '<x>' \"y\" ]]>"}
    t = parsed(vm_template(spec(), ctx, nic=None))
    assert t["CONTEXT"] == {"SET_HOSTNAME": "a&b", "START_SCRIPT": "echo '<x>' \"y\" ]]>"}
    assert "NIC" not in t



BASE_LIKE = RenderedContext(one_context={"NETWORK": "YES", "SET_HOSTNAME": "g-3", "SSH_PUBLIC_KEY": "ssh-ed25519 A k",
                                         "REPORT_READY": "YES", "TOKEN": "YES"})
SITE = SiteTemplate(context={"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]", "INIT_SCRIPTS": "init.sh",
                             "DNS": "10.0.0.53", "SET_HOSTNAME": "$NAME"}, cpu=0.5, vcpu=1)


def test_onegate_variables_only_for_a_site_with_onegate() -> None:
    assert "TOKEN" not in parsed(vm_template(spec(), BASE_LIKE, nic=None))["CONTEXT"]
    assert "REPORT_READY" not in parsed(vm_template(spec(), BASE_LIKE, nic=None))["CONTEXT"]
    sent = parsed(vm_template(spec(), BASE_LIKE, nic=None, onegate=True))["CONTEXT"]
    assert sent["TOKEN"] == "YES" and sent["REPORT_READY"] == "YES"


def test_context_is_merged_into_the_site_templates() -> None:
    body, clashes = vm_template(spec(), BASE_LIKE, nic=None, site_template=SITE)
    ctx = parsed((body, clashes))["CONTEXT"]
    assert ctx["INIT_SCRIPTS"] == "init.sh" and ctx["DNS"] == "10.0.0.53"       # the site's variables stay
    assert ctx["SET_HOSTNAME"] == "g-3" and ctx["SSH_PUBLIC_KEY"] == "ssh-ed25519 A k"   # skyctl's win
    assert clashes == ["SET_HOSTNAME", "SSH_PUBLIC_KEY"]
    assert "NIC" not in parsed((body, clashes))                                 # the template's NICs stay


def test_cpu_keeps_the_templates_ratio_unless_the_site_overrides_it() -> None:
    t = parsed(vm_template(spec(), RenderedContext(), nic=None, site_template=SITE))
    assert (t["CPU"], t["VCPU"]) == ("1", "2")                                   # 2 VCPU at 0.5
    t = parsed(vm_template(spec(), RenderedContext(), nic=None, site_template=SITE, cpu_ratio=0.25))
    assert (t["CPU"], t["VCPU"]) == ("0.5", "2")
    t = parsed(vm_template(spec(), RenderedContext(), nic=None, site_template=SiteTemplate()))
    assert t["CPU"] == "2"                                                       # no CPU in the template
