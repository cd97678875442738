"""`skyctl context ...` end to end: the real CLI, its output formats and exit codes.

Most cases run the CLI in-process through `skyctl.cli.main.main`; a few run the installed
`skyctl` script to check what a shell sees. SKYCTL_HOME and HOME are temporary (tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Runner, invoke
from tests.polling import until
from tests.skycli import SKYCTL

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "contexts"
TOKEN = "pool-T0KEN-never-shown"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return lambda *args: invoke(capsys, *args)


def shell(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYCTL_")}
    base.update(SKYCTL_HOME=str(home), HOME=str(home / "user"), NO_COLOR="1", **(env or {}))
    return subprocess.run([SKYCTL, *args], env=base, capture_output=True, text=True, timeout=60)


def decoded(ctx: dict[str, str]) -> str:
    return "\n".join([*ctx.values(), *(base64.b64decode(ctx[k]).decode()
                                       for k in ("USER_DATA", "START_SCRIPT_BASE64") if k in ctx)])


# ---------------------------------------------------------------- list / show


def test_list_shows_builtins_and_the_users_own(run, skyctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    mine = skyctl_home / "config" / "contexts"
    mine.mkdir(parents=True)
    (mine / "lab.yaml").write_text("description: Our lab's settings\npackages: [git]\n")
    r = run("context", "list", "-o", "json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in json.loads(r.out)}
    for name in ("base", "htcondor-worker", "cvmfs-client", "docker-host", "jupyter"):
        assert rows[name]["source"] == "builtin" and rows[name]["description"]
    assert rows["lab"] == {"name": "lab", "source": "user", "description": "Our lab's settings",
                           "path": str(mine / "lab.yaml")}
    table = run("context", "list")
    assert table.code == 0 and "htcondor-worker" in table.out and "Our lab's settings" in table.out


def test_show_json_lists_the_variables(run) -> None:  # type: ignore[no-untyped-def]
    r = run("context", "show", "jupyter", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {"name", "description", "variables"} <= set(doc)
    assert doc["variables"]["token"] == {"type": "string", "required": True, "secret": True, "default": None,
                                         "description": doc["variables"]["token"]["description"]}
    assert doc["variables"]["port"]["default"] == 8888 and doc["variables"]["port"]["type"] == "int"
    table = run("context", "show", "htcondor-worker")
    assert table.code == 0 and "central_manager" in table.out and "pool_token" in table.out
    assert yaml.safe_load(run("context", "show", "base", "-o", "yaml").out)["name"] == "base"


def test_show_an_unknown_profile_exits_2(run) -> None:  # type: ignore[no-untyped-def]
    r = run("context", "show", "nope")
    assert r.code == 2 and "unknown context profile 'nope'" in r.err


# ---------------------------------------------------------------- render


def test_render_for_openstack_prints_the_user_data(run) -> None:  # type: ignore[no-untyped-def]
    r = run("context", "render", "base", "docker-host", "--for", "openstack", "--var", "user=alice",
            "--hostname", "dock-1")
    assert r.code == 0, r.err
    assert r.out.startswith("#cloud-config\n")
    doc = yaml.safe_load(r.out)
    assert doc["hostname"] == "dock-1" and doc["users"][1]["name"] == "alice"
    j = run("context", "render", "base", "docker-host", "--for", "openstack", "--var", "user=alice",
            "--hostname", "dock-1", "-o", "json")
    assert json.loads(j.out) == {"user_data": r.out}


def test_render_for_opennebula_prints_the_context_section(run) -> None:  # type: ignore[no-untyped-def]
    from skyctl.sandbox.opennebula.template import parse_template

    args = ("context", "render", "base", "cvmfs-client", "--for", "opennebula", "--var", "repositories=a.cern.ch,b.cern.ch")
    r = run(*args)
    assert r.code == 0, r.err
    assert r.out.startswith("CONTEXT = [")
    j = json.loads(run(*args, "-o", "json").out)
    assert list(j) == ["context"]
    assert parse_template(r.out) == [("CONTEXT", j["context"])]
    assert j["context"]["NETWORK"] == "YES" and j["context"]["USERDATA_ENCODING"] == "base64"
    user_data = base64.b64decode(j["context"]["USER_DATA"]).decode()
    assert "CVMFS_REPOSITORIES=a.cern.ch,b.cern.ch" in user_data


def test_a_missing_required_variable_exits_2_naming_it(run) -> None:  # type: ignore[no-untyped-def]
    r = run("context", "render", "base", "htcondor-worker", "--for", "openstack", "--var", "central_manager=cm")
    assert r.code == 2
    assert "pool_token" in r.err and "htcondor-worker" in r.err
    assert "Traceback" not in r.err and r.out == ""


def everything_printed(cloud: str, fmt: str, out: str) -> str:
    """The text a render printed, with OpenNebula's base64 values decoded."""
    if cloud == "openstack":
        return out
    if fmt == "json":
        return decoded(json.loads(out)["context"])
    if fmt == "yaml":
        return decoded(yaml.safe_load(out)["context"])
    from skyctl.sandbox.opennebula.template import parse_template

    return decoded(parse_template(out)[0][1])


@pytest.mark.parametrize("cloud", ["openstack", "opennebula"])
@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_secrets_are_masked_unless_revealed(run, monkeypatch: pytest.MonkeyPatch, cloud: str,  # type: ignore[no-untyped-def]
                                             fmt: str) -> None:
    monkeypatch.setenv("SKYCTL_VAR_pool_token", TOKEN)
    args = ("context", "render", "base", "htcondor-worker", "--for", cloud, "--var", "central_manager=cm.example",
            "-o", fmt)
    r = run(*args)
    assert r.code == 0, r.err
    text = everything_printed(cloud, fmt, r.out)
    assert TOKEN not in text + r.out + r.err and "****" in text and "cm.example" in text
    shown = run(*args, "--reveal-secrets")
    assert shown.code == 0
    assert TOKEN in everything_printed(cloud, fmt, shown.out)


def test_var_file_and_environment_feed_variables(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    vf = tmp_path / "vars.yaml"
    vf.write_text("central_manager: from-file.example\npartitionable: false\nunused: 1\n")
    monkeypatch.setenv("SKYCTL_VAR_POOL_TOKEN", TOKEN)
    r = run("context", "render", "htcondor-worker", "--for", "openstack", "--var-file", str(vf), "-o", "json")
    assert r.code == 0, r.err
    ud = json.loads(r.out)["user_data"]
    assert "CONDOR_HOST = from-file.example" in ud and "PARTITIONABLE" not in ud
    assert "unused" in r.err  # warned, not fatal


@pytest.mark.parametrize(("args", "message"), [
    (("--var", "novalue"), "expected NAME=VALUE"),
    (("--var", "colour=red"), "--var colour: no such variable"),
    (("--var", "ssh_keys=[unclosed"), "ssh_keys"),
])
def test_bad_vars_exit_2(run, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    r = run("context", "render", "base", "--for", "openstack", *args)
    assert r.code == 2 and message in r.err


def test_oversized_user_data_exits_2_before_anything_launches(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"files": [{"path": "/opt/blob", "content": "z" * 70000}]}))
    r = run("context", "render", str(big), "--for", "openstack")
    assert r.code == 2 and "65535" in r.err
    assert run("context", "render", str(big), "--for", "opennebula").code == 0


def test_a_per_node_profile_needs_hostname(run) -> None:  # type: ignore[no-untyped-def]
    nasty = str(FIXTURES / "nasty.yaml")
    r = run("context", "render", nasty, "--for", "openstack", "--var", "api_key=k")
    assert r.code == 2 and "node" in r.err and "--hostname" in r.err
    ok = run("context", "render", nasty, "--for", "openstack", "--var", "api_key=kkkk", "--hostname", "w1")
    assert ok.code == 0 and "hostname: w1-x" in ok.out


# ---------------------------------------------------------------- validate


def test_validate(run) -> None:  # type: ignore[no-untyped-def]
    ok = run("context", "validate", str(REPO / "contexts" / "htcondor-worker.yaml"))
    assert ok.code == 0 and "valid" in ok.out
    assert json.loads(run("context", "validate", str(FIXTURES / "nasty.yaml"), "-o", "json").out)["valid"] is True
    bad = run("context", "validate", str(FIXTURES / "bad-type.yaml"))
    assert bad.code == 2 and "files[0].permissions" in bad.err and "bad-type" in bad.err
    undeclared = run("context", "validate", str(FIXTURES / "undeclared.yaml"))
    assert undeclared.code == 2 and "'flavour'" in undeclared.err


def test_validate_runs_cloud_inits_schema_when_it_is_installed(run) -> None:  # type: ignore[no-untyped-def]
    import shutil

    if shutil.which("cloud-init") is None:
        msg = "cloud-init is not installed: validate cannot run its schema check"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    bad = run("context", "validate", str(FIXTURES / "bad-raw.yaml"))
    assert bad.code == 2
    assert "profile 'bad-raw': cloud-init schema (raw cloud_config #1)" in bad.err and "runcmd" in bad.err
    ok = run("context", "validate", str(REPO / "contexts" / "base.yaml"), "-o", "json")
    assert json.loads(ok.out)["cloud_init_schema"] == "passed"


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


def test_the_context_command_module_stays_light() -> None:
    code = ("import sys, skyctl.cli.context\n"
            "heavy = [m for m in ('jinja2', 'pydantic', 'yaml', 'skyctl.context', 'cryptography') if m in sys.modules]\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------- delivered to sandbox VMs


@dataclass
class SandboxSites:
    home: Path
    status: dict


def _sandbox_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
    env.update(SKYCTL_HOME=str(home), NO_COLOR="1")
    return subprocess.run([SKYCTL, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("context-sandbox")
    try:
        up = _sandbox_cli(home, "sandbox", "up", "--boot-delay", "0.1")
        assert up.returncode == 0, up.stderr
        status = json.loads(_sandbox_cli(home, "sandbox", "status", "-o", "json").stdout)
        yield SandboxSites(home, {s["name"]: s for s in status["sites"]})
    finally:
        _sandbox_cli(home, "sandbox", "down")


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
    site = sandbox.status["home"]
    cloud = os_config.OpenStackConfig(config_files=[site["clouds_yaml"]], vendor_files=[])
    conn = openstack.connection.Connection(config=cloud.get_one(cloud=site["cloud"]))
    image = next(i for i in conn.image.images() if i.name == "AlmaLinux-9-GenericCloud")
    flavor = next(f for f in conn.compute.flavors() if f.name == "m1.small")
    # The default group lets nothing in, as on real sites: a group allowing SSH goes with it.
    ssh = conn.network.create_security_group(name="ctx-ssh")
    conn.network.create_security_group_rule(security_group_id=ssh.id, direction="ingress", protocol="tcp",
                                            port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    server = conn.compute.create_server(
        name="ctx-os", image_id=image.id, flavor_id=flavor.id, networks="auto",
        user_data=base64.b64encode(built.rendered.user_data.encode()).decode(),
        security_groups=[{"name": ssh.id}])
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
    site = sandbox.status["cc"]
    one = pyone.OneServer(site["endpoint"], session=Path(site["one_auth"]).read_text().strip())
    template = next(t for t in one.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME == "AlmaLinux 9")
    vm_id = one.template.instantiate(template.ID, "ctx-one-1", False, one_template(built.rendered.one_context))
    try:
        # base asks for readiness: REPORT_READY=YES reaches the VM, which reports READY=YES
        info = until(lambda: (i := one.vm.info(vm_id)).USER_TEMPLATE.get("READY") == "YES" and i, 30)
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
        keys = list(built.rendered.one_context)
        printer = "".join(f'printf "%s\\0" "${k}"\n' for k in keys)
        proc = subprocess.run(["sh", "-e", "-c", text + printer], capture_output=True, check=True, timeout=30)
        values = dict(zip(keys, proc.stdout.decode().split("\0")[:-1], strict=True))
        assert values == dict(built.rendered.one_context)
        assert base64.b64decode(values["USER_DATA"]).decode() == built.rendered.user_data
    finally:
        one.vm.action("terminate-hard", vm_id)
