"""`skyctl sandbox ...` end to end: the real CLI starts the real background process, and the
real SDKs (openstacksdk, pyone) and a real SSH client (paramiko) talk to what it serves.

Everything lives under SKYCTL_HOME=<tmp> so nothing touches the user's files, and every
sandbox started here is stopped in a fixture teardown.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from skyctl.polling import iterate_timeout


def pid_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, sandbox_up: Any) -> Iterator[Any]:
    with sandbox_up(tmp_path_factory.mktemp("sandbox-home"), "--boot-delay", "0.2") as running:
        yield running


def new_key() -> paramiko.PKey:
    from skyctl.sandbox.guest.server import new_host_key

    return new_host_key()  # any ed25519 key will do as a user key


def public(key: paramiko.PKey, comment: str = "test@example") -> str:
    return f"{key.get_name()} {key.get_base64()} {comment}"


def ssh(address: str, port: int, key: paramiko.PKey, user: str = "cloud-user") -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(address, port=port, username=user, pkey=key, allow_agent=False, look_for_keys=False,
                   timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def execute(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=30)
    rc = out.channel.recv_exit_status()
    return rc, out.read().decode(), err.read().decode()


def status_once_up(skyctl_at: Any, home: Path) -> str | None:
    shown = skyctl_at(home, "sandbox", "status", "-o", "json", check=False)
    return shown.stdout if shown.returncode == 0 else None


# ---------------------------------------------------------------- up / status / files


def test_status_json_is_the_documented_document(sandbox: Any) -> None:
    doc = sandbox.status
    assert set(doc) == {"pid", "config", "sites"}
    assert isinstance(doc["pid"], int) and not pid_gone(doc["pid"])
    assert [s["name"] for s in doc["sites"]] == ["home", "cc", "sara"]
    for site in doc["sites"]:
        assert {"name", "driver", "endpoint"} <= set(site)
        assert site["endpoint"].startswith("http://127.0.0.1:")
        if site["driver"] == "openstack":
            assert Path(site["clouds_yaml"]).is_file() and site["cloud"] == site["name"]
        else:
            assert site["driver"] == "opennebula" and site["endpoint"].endswith("/RPC2")
            assert Path(site["one_auth"]).is_file()
    assert Path(doc["config"]).is_file()


def test_files_are_private_and_passwords_never_printed(sandbox: Any) -> None:
    d = sandbox.dir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("sky.yaml", "clouds.yaml", "one_auth", "sandbox.pid", "runtime.json", "sandbox.log"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    clouds = yaml.safe_load((d / "clouds.yaml").read_text())["clouds"]
    assert set(clouds) == {"home", "sara"}
    home = clouds["home"]
    assert home["auth"]["auth_url"] == sandbox.site("home")["endpoint"]
    assert home["auth"]["user_domain_name"] == home["auth"]["project_domain_name"] == "Default"
    assert home["region_name"] == "RegionOne" and home["identity_api_version"] == 3
    user, _, one_password = (d / "one_auth").read_text().strip().partition(":")
    assert user == "skyuser" and len(one_password) >= 16
    secrets = [c["auth"]["password"] for c in clouds.values()] + [one_password]
    assert len(set(secrets)) == 3
    secrets.append(json.loads((d / "runtime.json").read_text())["control"]["token"])
    shown = sandbox.run("sandbox", "status").stdout + json.dumps(sandbox.status)
    shown += (d / "sandbox.log").read_text() + (d / "sky.yaml").read_text()
    for secret in secrets:
        assert secret not in shown


def test_federation_file_uses_the_drivers_option_names(sandbox: Any) -> None:
    from skyctl import config

    # Validated as every skyctl command will: drivers' option models and bursting rules included.
    fed = config.load(sandbox.status["config"])
    assert fed.sites["home"].options.cloud == "home" and fed.sites["cc"].options.one_auth
    data = yaml.safe_load(Path(sandbox.status["config"]).read_text())
    ssh_port = sandbox.site("home")["ssh_port"]
    assert data["sites"]["home"] == {
        "driver": "openstack", "tier": "local", "cost": 0, "cloud": "home",
        "clouds_yaml": sandbox.site("home")["clouds_yaml"],
        "ssh": {"user": "cloud-user", "port": ssh_port}}
    assert data["sites"]["cc"] == {
        "driver": "opennebula", "tier": "remote", "cost": 1, "endpoint": sandbox.site("cc")["endpoint"],
        "one_auth": sandbox.site("cc")["one_auth"], "ssh": {"user": "cloud-user", "port": ssh_port}}
    assert data["images"]["alma9"] == {"home": "AlmaLinux-9-GenericCloud", "cc": "AlmaLinux 9",
                                       "sara": "AlmaLinux-9-GenericCloud"}
    assert data["defaults"] == {"image": "alma9", "size": "small"}
    assert data["bursting"] == [{"name": "overflow-home", "from": ["home"], "to": ["cc", "sara"], "order": "cost",
                                 "home": {"cooldown": "30s", "max_moves": 4}}]
    assert fed.sizes["medium"].cpus == 2 and fed.sizes["medium"].memory_mib == 4096
    assert fed.rules[0].to_sites == ("cc", "sara") and fed.rules[0].home is not None
    assert fed.rules[0].home.cooldown_s == 30 and fed.rules[0].home.max_moves == 4


def test_up_again_says_so_and_keeps_the_process(sandbox: Any) -> None:
    again = sandbox.run("sandbox", "up", "-o", "json")
    assert "already running" in again.stderr
    assert json.loads(again.stdout)["pid"] == sandbox.status["pid"]


# ---------------------------------------------------------------- the fronts, through the real SDKs


def test_openstack_site_answers_openstacksdk_with_clouds_yaml(sandbox: Any) -> None:
    def requests() -> int:
        shown = json.loads(sandbox.run("sandbox", "status", "-o", "json").stdout)
        return next(s for s in shown["sites"] if s["name"] == "sara")["requests"]

    before = requests()
    conn = sandbox.openstack("sara")
    assert {"m1.small", "m1.medium", "m1.large"} <= {f.name for f in conn.compute.flavors()}
    assert "AlmaLinux-9-GenericCloud" in {i.name for i in conn.image.images()}
    assert requests() > before  # status counts what the site served (and is no request itself)


def test_opennebula_site_answers_pyone_with_one_auth(sandbox: Any) -> None:
    version = sandbox.one().system.version()
    assert str(version).split(".")[0].isdigit()


def test_fault_down_refuses_connections_and_up_restores(sandbox: Any) -> None:
    from keystoneauth1.exceptions import ConnectFailure, DiscoveryFailure

    port = int(sandbox.site("home")["endpoint"].split(":")[2].split("/")[0])
    try:
        out = sandbox.run("sandbox", "fault", "home", "--down", "-o", "json")
        assert json.loads(out.stdout)["faults"]["down"] is True
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises((ConnectFailure, DiscoveryFailure)):
            list(sandbox.openstack("home").compute.flavors())
        # The other sites go on serving.
        assert list(sandbox.openstack("sara").compute.flavors())
    finally:
        sandbox.run("sandbox", "fault", "home", "--up")
    assert list(sandbox.openstack("home").compute.flavors())
    assert sandbox.site("home")["endpoint"].endswith(f":{port}/identity/v3")  # same port as before


def test_fault_error_rate_answers_server_errors_until_cleared(sandbox: Any) -> None:
    from openstack.exceptions import HttpException

    conn = sandbox.openstack("sara")
    list(conn.compute.flavors())  # authenticated before the fault
    sandbox.run("sandbox", "fault", "sara", "--error-rate", "1")
    try:
        with pytest.raises(HttpException) as err:
            list(conn.compute.flavors())
        assert err.value.status_code is not None and err.value.status_code >= 500
    finally:
        shown = sandbox.run("sandbox", "fault", "sara", "--error-rate", "0", "-o", "json")
    assert json.loads(shown.stdout)["faults"]["error_rate"] == 0
    assert list(conn.compute.flavors())


def test_fault_rejects_unknown_site_and_bad_values(sandbox: Any) -> None:
    unknown = sandbox.run("sandbox", "fault", "nowhere", "--down", check=False)
    assert unknown.returncode == 2 and "unknown site 'nowhere'" in unknown.stderr
    bad = sandbox.run("sandbox", "fault", "home", "--error-rate", "1.5", check=False)
    assert bad.returncode == 2
    shown = json.loads(sandbox.run("sandbox", "fault", "cc", "-o", "json").stdout)
    assert shown == {"name": "cc", "driver": "opennebula", "faults": shown["faults"]}
    assert shown["faults"]["down"] is False
    slow = json.loads(sandbox.run("sandbox", "fault", "cc", "--boot-delay", "1.5", "--latency", "3",
                          "-o", "json").stdout)
    sandbox.run("sandbox", "fault", "cc", "--boot-delay", "0.2", "--latency", "0")
    assert slow["faults"] == {**shown["faults"], "boot_delay": 1.5, "latency_ms": 3}


# ---------------------------------------------------------------- VMs you can reach


def _ssh_group(conn: Any) -> str:
    """A group letting SSH in (the sandbox's default group lets nothing in, as real sites)."""
    found = list(conn.network.security_groups(name="e2e-ssh"))
    if found:
        return str(found[0].id)
    group = conn.network.create_security_group(name="e2e-ssh")
    conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", protocol="tcp",
                                            port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    return str(group.id)


def _boot_openstack_vm(sandbox: Any, name: str, key_name: str | None, user_data: str) -> tuple[Any, str]:
    conn = sandbox.openstack("home")
    image = next(i for i in conn.image.images() if i.name == "AlmaLinux-9-GenericCloud")
    flavor = next(f for f in conn.compute.flavors() if f.name == "m1.small")
    server = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, key_name=key_name,
                                        networks="auto", user_data=base64.b64encode(user_data.encode()).decode(),
                                        security_groups=[{"name": _ssh_group(conn)}])
    server = conn.compute.wait_for_server(server, wait=30, interval=0.1)
    address = next(iter(server.addresses.values()))[0]["addr"]
    return (conn, server), address


@pytest.fixture(scope="module")
def os_vm(sandbox: Any) -> Iterator[dict[str, Any]]:
    keypair_key, user_data_key = new_key(), new_key()
    conn = sandbox.openstack("home")
    conn.compute.create_keypair(name="e2e-key", public_key=public(keypair_key))
    user_data = ("#cloud-config\nhostname: e2e-vm\nssh_authorized_keys:\n"
                 f"  - {public(user_data_key, 'from-user-data')}\n")
    (conn, server), address = _boot_openstack_vm(sandbox, "e2e-vm", "e2e-key", user_data)
    try:
        yield {"conn": conn, "server": server, "address": address, "port": sandbox.site("home")["ssh_port"],
               "keypair_key": keypair_key, "user_data_key": user_data_key, "user_data": user_data}
    finally:
        conn.compute.delete_server(server)


def test_vm_has_its_own_loopback_address_and_accepts_the_delivered_keys(os_vm: dict[str, Any]) -> None:
    address, port = os_vm["address"], os_vm["port"]
    assert address.startswith("127.") and address != "127.0.0.1"
    for key in (os_vm["keypair_key"], os_vm["user_data_key"]):
        client = ssh(address, port, key)
        try:
            rc, out, _ = execute(client, "echo hello from $(pwd)")
            assert rc == 0 and out.startswith("hello from /")
            assert client.get_transport().get_remote_server_key().get_name() == "ssh-ed25519"
        finally:
            client.close()


def test_vm_refuses_a_key_the_context_did_not_deliver(os_vm: dict[str, Any]) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        ssh(os_vm["address"], os_vm["port"], new_key()).close()
    with pytest.raises(paramiko.AuthenticationException):  # a right key for a user that is not there
        ssh(os_vm["address"], os_vm["port"], os_vm["keypair_key"], user="mallory").close()


def test_vm_reports_cloud_init_done_and_keeps_user_data_at_the_guest_path(os_vm: dict[str, Any]) -> None:
    client = ssh(os_vm["address"], os_vm["port"], os_vm["keypair_key"])
    try:
        rc, out, _ = execute(client, "cloud-init status --wait")
        assert (rc, out.strip()) == (0, "status: done")
        rc, out, _ = execute(client, "cat /var/lib/cloud/instance/user-data.txt 2>/dev/null "
                                     "|| cat var/lib/cloud/instance/user-data.txt")
        assert rc == 0 and out == os_vm["user_data"]
        rc, out, err = execute(client, "echo out; echo err >&2; exit 7")
        assert (rc, out, err) == (7, "out\n", "err\n")
    finally:
        client.close()


def test_sftp_and_exec_agree_on_relative_and_absolute_paths(os_vm: dict[str, Any]) -> None:
    client = ssh(os_vm["address"], os_vm["port"], os_vm["keypair_key"])
    try:
        assert execute(client, "cloud-init status --wait")[0] == 0  # context applied: etc/hostname written
        sftp = client.open_sftp()
        sftp.mkdir("work")
        sftp.putfo(io.BytesIO(b"payload\n"), "work/input.txt")
        rc, out, _ = execute(client, "cat work/input.txt && tr a-z A-Z < work/input.txt > work/output.txt")
        assert (rc, out) == (0, "payload\n")
        got = io.BytesIO()
        sftp.getfo("work/output.txt", got)
        assert got.getvalue() == b"PAYLOAD\n"
        assert "user-data.txt" in sftp.listdir("var/lib/cloud/instance")
        # The SFTP root is the VM dir: "/" and any climb above it land there, as in the guest.
        hostname = io.BytesIO()
        sftp.getfo("../../../../../../etc/hostname", hostname)
        assert hostname.getvalue() == b"e2e-vm\n"
        with pytest.raises(IOError):   # this host's own /etc is not the VM's
            sftp.getfo("/../../etc/os-release", io.BytesIO())
        # Absolute paths agree too: the VM dir is `/` for commands as for SFTP.
        assert execute(client, "cat /etc/hostname")[:2] == (0, "e2e-vm\n")
        sftp.putfo(io.BytesIO(b"abs\n"), "/work/abs.txt")
        assert execute(client, "cat /work/abs.txt")[:2] == (0, "abs\n")
        sftp.close()
    finally:
        client.close()


def test_deleted_vm_stops_answering_ssh(sandbox: Any) -> None:
    key = new_key()
    (conn, server), address = _boot_openstack_vm(
        sandbox, "short-lived", None, f"#cloud-config\nssh_authorized_keys: ['{public(key)}']\n")
    port = sandbox.site("home")["ssh_port"]
    ssh(address, port, key).close()
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=30, interval=0.1)

    def refused() -> bool:
        try:
            socket.create_connection((address, port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    for _ in iterate_timeout(20, "the deleted VM's SSH port refuses connections", interval=0.05):
        if refused():
            break


def test_opennebula_vm_accepts_ssh_public_key_and_reports_ready(sandbox: Any) -> None:
    one = sandbox.one()
    key = new_key()
    template = next(t for t in one.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME == "AlmaLinux 9")
    vm_id = one.template.instantiate(template.ID, "e2e-one", False,
                                     f'CONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="{public(key)}", '
                                     f'REPORT_READY="YES", SET_HOSTNAME="e2e-one"]')
    try:
        def ready() -> Any:
            info = one.vm.info(vm_id)
            return info if info.USER_TEMPLATE.get("READY") == "YES" else None

        for _ in iterate_timeout(20, "the VM reports READY=YES", interval=0.05):
            if info := ready():
                break
        nic = info.TEMPLATE["NIC"]
        address = (nic[0] if isinstance(nic, list) else nic)["IP"]
        client = ssh(address, sandbox.site("cc")["ssh_port"], key, user="root")
        try:
            rc, out, _ = execute(client, "cloud-init status; cat var/run/one-context/context.sh")
            assert rc == 0 and out.startswith("status: done\n")
            assert "SET_HOSTNAME='e2e-one'" in out and f"SSH_PUBLIC_KEY='{public(key)}'" in out
        finally:
            client.close()
    finally:
        one.vm.action("terminate-hard", vm_id)


# ---------------------------------------------------------------- lifecycle of the process


def test_bad_spec_is_a_config_error_and_starts_nothing(tmp_path: Path, skyctl_at: Any) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("sites:\n  home:\n    quota: {instances: many}\n")
    out = skyctl_at(tmp_path, "sandbox", "up", "--spec", str(spec), check=False)
    assert out.returncode == 2 and "sites.home.quota.instances" in out.stderr
    assert not (tmp_path / "state" / "sandbox" / "sandbox.pid").exists()
    assert skyctl_at(tmp_path, "sandbox", "status", check=False).returncode == 1


def test_down_stops_the_process_and_is_idempotent(tmp_path: Path, skyctl_at: Any) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("sites:\n  cc: null\n  sara: null\n")  # one site is enough here
    try:
        skyctl_at(tmp_path, "sandbox", "up", "--spec", str(spec), "--boot-delay", "0", "--no-wait")
        for _ in iterate_timeout(20, "sandbox status answers", interval=0.05):
            if shown := status_once_up(skyctl_at, tmp_path):
                break
        status = json.loads(shown)
        assert [s["name"] for s in status["sites"]] == ["home"]
        pid = status["pid"]
        assert not pid_gone(pid)
    finally:
        down = skyctl_at(tmp_path, "sandbox", "down", check=False)
    assert down.returncode == 0
    assert pid_gone(pid)
    assert not (tmp_path / "state" / "sandbox" / "sandbox.pid").exists()
    again = skyctl_at(tmp_path, "sandbox", "down")
    assert "not running" in again.stderr
    assert skyctl_at(tmp_path, "sandbox", "status", check=False).returncode == 1
    assert skyctl_at(tmp_path, "sandbox", "fault", "home", "--down", check=False).returncode == 1


def test_a_stale_pid_file_never_gets_another_process_killed(tmp_path: Path, skyctl_at: Any) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = tmp_path / "state" / "sandbox"
        state.mkdir(parents=True, mode=0o700)
        (state / "sandbox.pid").write_text(f"{bystander.pid}\n")
        down = skyctl_at(tmp_path, "sandbox", "down")
        assert "not running" in down.stderr
        assert bystander.poll() is None
        assert not (state / "sandbox.pid").exists()  # the stale file is cleaned up
        assert skyctl_at(tmp_path, "sandbox", "status", check=False).returncode == 1
    finally:
        bystander.kill()
        bystander.wait()
