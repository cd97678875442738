"""`skyctl context ...` as a shell sees it: the installed `skyctl` script's exit codes and
streams, and what a rendered context delivers to sandbox VMs that `skyctl sandbox up` started
(the in-process cases are in tests/cli/test_context.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL

TOKEN = "pool-T0KEN-never-shown"


def shell(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYCTL_")}
    base.update(SKYCTL_HOME=str(home), HOME=str(home / "user"), NO_COLOR="1", **(env or {}))
    return subprocess.run([SKYCTL, *args], env=base, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- as a shell sees it


def test_the_installed_script_exit_codes_and_streams(skyctl_home: Path) -> None:
    missing = shell(skyctl_home, "context", "render", "jupyter", "--for", "opennebula")
    assert missing.returncode == 2
    assert missing.stdout == "" and "missing required variable 'token' of profile 'jupyter'" in missing.stderr
    ok = shell(skyctl_home, "context", "render", "jupyter", "--for", "openstack", "-o", "json",
               env={"SKYCTL_VAR_token": TOKEN})
    assert ok.returncode == 0, ok.stderr
    assert TOKEN not in ok.stdout and json.loads(ok.stdout)["user_data"].startswith("#cloud-config")
    # the default key was made once, under SKYCTL_HOME, and delivered
    pub = (skyctl_home / "data" / "ssh" / "id_ed25519.pub").read_text().strip()
    assert pub in json.loads(ok.stdout)["user_data"]


# ---------------------------------------------------------------- delivered to sandbox VMs


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, sandbox_up: Any) -> Any:
    with sandbox_up(tmp_path_factory.mktemp("context-sandbox"), "--boot-delay", "0.1") as running:
        yield running


def _ssh(address: str, port: int, user: str):  # type: ignore[no-untyped-def]
    import paramiko

    from skyctl.keys import default_ssh_key

    private, _ = default_ssh_key()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(address, port=port, username=user, key_filename=str(private), allow_agent=False,
                   look_for_keys=False, timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def _exec(client, command: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    _, out, _ = client.exec_command(command, timeout=30)
    return out.channel.recv_exit_status(), out.read().decode()


def test_an_openstack_vm_gets_the_user_data_and_the_default_key_logs_in(sandbox) -> None:  # type: ignore[no-untyped-def]
    import openstack
    from openstack import config as os_config

    from skyctl.context import build_context
    from skyctl.keys import default_ssh_key

    built = build_context(["base", "htcondor-worker"], environ={"SKYCTL_VAR_pool_token": TOKEN},
                          variables={"central_manager": "cm.example"}, ssh_public_keys=[default_ssh_key().public])
    site = sandbox.site("home")
    cloud = os_config.OpenStackConfig(config_files=[site["clouds_yaml"]], vendor_files=[])
    conn = openstack.connection.Connection(config=cloud.get_one(cloud=site["cloud"]))
    image = next(i for i in conn.image.images() if i.name == "AlmaLinux-9-GenericCloud")
    flavor = next(f for f in conn.compute.flavors() if f.name == "m1.small")
    server = conn.compute.create_server(
        name="ctx-os", image_id=image.id, flavor_id=flavor.id, networks="auto",
        user_data=base64.b64encode(built.rendered.user_data.encode()).decode())
    try:
        server = conn.compute.wait_for_server(server, wait=30, interval=0.1)
        address = next(iter(server.addresses.values()))[0]["addr"]
        client = _ssh(address, site["ssh_port"], built.rendered.login_user)
        try:
            assert _exec(client, "cloud-init status --wait") == (0, "status: done\n")
            rc, got = _exec(client, "cat var/lib/cloud/instance/user-data.txt")
            assert rc == 0 and got == built.rendered.user_data and TOKEN in got
        finally:
            client.close()
    finally:
        conn.compute.delete_server(server)


def test_an_opennebula_vm_gets_the_context_and_the_default_key_logs_in(sandbox) -> None:  # type: ignore[no-untyped-def]
    import pyone

    from skyctl.context import build_context, one_template
    from skyctl.keys import default_ssh_key

    built = build_context(["base", "jupyter"], environ={"SKYCTL_VAR_token": TOKEN}, hostname="ctx-one-1",
                          ssh_public_keys=[default_ssh_key().public])
    site = sandbox.site("cc")
    one = pyone.OneServer(site["endpoint"], session=Path(site["one_auth"]).read_text().strip())
    template = next(t for t in one.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME == "AlmaLinux 9")
    # The sandbox's cc has no OneGate, as most sites: oned would refuse TOKEN=YES (the driver
    # leaves it out for sites without `onegate: true`).
    sent = {k: v for k, v in built.rendered.one_context.items() if k != "TOKEN"}
    vm_id = one.template.instantiate(template.ID, "ctx-one-1", False, one_template(sent))
    try:
        # base asks for readiness: REPORT_READY=YES reaches the VM, which reports READY=YES
        for _ in iterate_timeout(30, "the VM reports READY=YES", interval=0.05):
            if (info := one.vm.info(vm_id)).USER_TEMPLATE.get("READY") == "YES":
                break
        nic = info.TEMPLATE["NIC"]
        address = (nic[0] if isinstance(nic, list) else nic)["IP"]
        for user in ("skyctl", "root"):  # USERNAME and root both get SSH_PUBLIC_KEY from one-context
            client = _ssh(address, site["ssh_port"], user)
            try:
                rc, text = _exec(client, "cat var/run/one-context/context.sh")
            finally:
                client.close()
            assert rc == 0
        # the guest's context.sh, sourced by sh, gives back exactly what was rendered
        keys = list(sent)
        printer = "".join(f'printf "%s\\0" "${k}"\n' for k in keys)
        proc = subprocess.run(["sh", "-e", "-c", text + printer], capture_output=True, check=True, timeout=30)
        values = dict(zip(keys, proc.stdout.decode().split("\0")[:-1], strict=True))
        assert values == sent
        assert base64.b64decode(values["USER_DATA"]).decode() == built.rendered.user_data
    finally:
        one.vm.action("terminate-hard", vm_id)
