"""Who may log in to a sandbox VM, decided from what its context delivered (skyctl.sandbox.guest,
pure: no server, no socket): cloud-config keys and users, MIME user data, OpenNebula's CONTEXT,
key lines, context.sh quoting, the loopback address pool."""

from __future__ import annotations

import base64
import subprocess
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import paramiko

from skyctl.sandbox.guest.access import context_sh, guest_access, key_blob
from skyctl.sandbox.guest.server import AddressPool, new_host_key
from skyctl.sandbox.world import SVM


def _key() -> paramiko.PKey:
    return new_host_key()


def _pub(key: paramiko.PKey, comment: str = "u@h") -> str:
    return f"ssh-ed25519 {key.get_base64()} {comment}"


def _vm(**attrs: Any) -> SVM:
    return SVM(id="1", name="n", vcpus=1, ram_mib=512, image_id="0", flavor_id=None, created=0.0,
               boot_delay=0.0, **attrs)


def test_cloud_config_keys_and_users_are_accepted() -> None:
    a, b, c = _key(), _key(), _key()
    user_data = ("#cloud-config\n"
                 f"ssh_authorized_keys: ['{_pub(a)}']\n"
                 "users:\n  - default\n"
                 f"  - name: alice\n    ssh_authorized_keys: ['{_pub(b)}']\n")
    access = guest_access(_vm(user_data=user_data, ssh_keys=[_pub(c)]), "openstack", "cloud-user")
    assert access.users == {"cloud-user", "alice"}
    assert {k.get_base64() for k in (a, b, c)} == set(access.key_blobs)
    assert not access.allows("root", a.get_base64())  # cloud images refuse root
    assert not access.allows("cloud-user", _key().get_base64())


def test_mime_multipart_user_data_is_read() -> None:
    key = _key()
    msg = MIMEMultipart()
    msg.attach(MIMEText("#!/bin/sh\necho hi\n", "x-shellscript"))
    msg.attach(MIMEText(f"ssh_authorized_keys: ['{_pub(key)}']\n", "cloud-config"))
    access = guest_access(_vm(user_data=msg.as_string()), "openstack", "cloud-user")
    assert access.key_blobs == {key.get_base64()}


def test_opennebula_context_keys_go_to_root_and_username() -> None:
    a, b = _key(), _key()
    ctx = {"SSH_PUBLIC_KEY": f"{_pub(a)}\n{_pub(b)}", "USERNAME": "sci",
           "USER_DATA": base64.b64encode(b"#cloud-config\nusers: [{name: bob}]\n").decode(),
           "USERDATA_ENCODING": "base64"}
    access = guest_access(_vm(context=ctx), "opennebula", "cloud-user")
    assert access.users == {"cloud-user", "root", "sci", "bob"}
    assert access.key_blobs == {a.get_base64(), b.get_base64()}


def test_key_blob_skips_options_and_refuses_garbage() -> None:
    key = _key()
    assert key_blob(f'no-pty,command="/bin/true" {_pub(key)}') == key.get_base64()
    assert key_blob("ssh-ed25519 not!base64 x") is None
    assert key_blob("just a comment") is None


def test_context_sh_round_trips_through_the_shell(tmp_path: Path) -> None:
    tricky = "it's $HOME `x` \"q\"\nline2"
    path = tmp_path / "context.sh"
    path.write_text(context_sh({"B": tricky, "A": "1"}))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and lines[1] == "A='1'"  # header, then sorted
    out = subprocess.run(["sh", "-c", f". {path} && printf %s \"$B\""], capture_output=True, text=True, check=True)
    assert out.stdout == tricky


def test_address_pool_stays_in_its_slash_16_and_skips_network_and_gateway() -> None:
    pool = AddressPool(11)
    addrs = [pool.take() for _ in range(300)]
    assert addrs[0] == "127.11.0.2" and addrs[252] == "127.11.0.254" and addrs[253] == "127.11.1.2"
    assert len(set(addrs)) == 300 and all(a.startswith("127.11.") for a in addrs)
