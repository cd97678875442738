"""`skyctl context ...` through the CLI in this process (`skyctl.cli.main.main`): its output
formats and exit codes. SKYCTL_HOME and HOME are temporary (tests/conftest.py); what a shell
sees from the installed script is in tests/e2e/test_context_cli.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from skyctl.testing.cli import Runner

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "contexts"
TOKEN = "pool-T0KEN-never-shown"


@pytest.fixture
def run(skyctl_cli: Runner) -> Runner:
    """The context commands need no driver: the CLI as it is, in this process."""
    return skyctl_cli


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


# ---------------------------------------------------------------- how heavy the module is


def test_the_context_command_module_stays_light() -> None:
    code = ("import sys, skyctl.cli.context\n"
            "heavy = [m for m in ('jinja2', 'pydantic', 'yaml', 'skyctl.context', 'cryptography') if m in sys.modules]\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
