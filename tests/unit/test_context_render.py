"""Rendering: cloud-config, multipart, Nova's size limit, the OpenNebula CONTEXT and start script."""

from __future__ import annotations

import base64
import email
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from skyctl.context import NOVA_USER_DATA_MAX_B64, build_context, check_for_cloud, cloud_config_parts, one_template
from skyctl.context.opennebula import CLOUD_INIT_ENABLED
from skyctl.errors import ContextError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "contexts"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAKeyAKeyAKeyAKeyAKeyAKeyAKeyAKeyAKeyA01 a@test"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQKeyBKeyBKeyBKeyBKeyBKeyBKeyB b@test"


def build(profiles: list[str], **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("ssh_public_keys", [KEY_A])
    kw.setdefault("environ", {})
    return build_context(profiles, **kw)


def write(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(body))
    return str(p)


def b64d(text: str) -> str:
    return base64.b64decode(text, validate=True).decode()


# ---------------------------------------------------------------- cloud-config


def test_base_gives_a_login_user_with_every_key_and_keeps_the_image_user() -> None:
    b = build(["base"], ssh_public_keys=[KEY_A, KEY_B], variables={"ssh_keys": "ssh-ed25519 EXTRA x@y"})
    doc = yaml.safe_load(b.rendered.user_data)
    assert doc["users"][0] == "default"
    login = doc["users"][1]
    assert login["name"] == "skyctl" and login["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and login["lock_passwd"]
    assert login["ssh_authorized_keys"] == ["ssh-ed25519 EXTRA x@y", KEY_A, KEY_B]
    assert doc["ntp"] == {"enabled": True}
    assert b.rendered.login_user == "skyctl"
    assert b.rendered.ssh_public_keys == ("ssh-ed25519 EXTRA x@y", KEY_A, KEY_B)


def test_without_a_login_user_the_keys_go_to_the_image_default_user(tmp_path: Path) -> None:
    p = write(tmp_path, "plain", "packages: [git]\nssh_authorized_keys: [ssh-ed25519 PROFILEKEY p@x]\n")
    b = build([p], ssh_public_keys=[KEY_A])
    doc = yaml.safe_load(b.rendered.user_data)
    assert "users" not in doc
    assert doc["ssh_authorized_keys"] == [KEY_A, "ssh-ed25519 PROFILEKEY p@x"]
    assert b.rendered.login_user is None
    assert b.rendered.one_context["SSH_PUBLIC_KEY"] == f"{KEY_A}\nssh-ed25519 PROFILEKEY p@x"
    assert "USERNAME" not in b.rendered.one_context


def test_an_empty_key_list_delivers_no_key(tmp_path: Path) -> None:
    p = write(tmp_path, "nokeys", "packages: [git]\n")
    b = build([p], ssh_public_keys=[])
    assert "ssh_authorized_keys" not in yaml.safe_load(b.rendered.user_data)
    assert "SSH_PUBLIC_KEY" not in b.rendered.one_context


def test_files_owned_by_a_created_user_are_written_after_users_exist() -> None:
    b = build([str(FIXTURES / "nasty.yaml")], variables={"api_key": "abcd"}, hostname="n1")
    files = {f["path"]: f for f in yaml.safe_load(b.rendered.user_data)["write_files"]}
    assert files["/home/operator/notes"]["defer"] is True
    assert "defer" not in files["/etc/motd"]
    assert files["/etc/app/key"]["permissions"] == "0600"
    assert files["/etc/app/key"]["content"] == "KEY=abcd\nPORT=8080\nDEBUG=false\n"


def test_the_yaml_keeps_every_character_of_nasty_values() -> None:
    b = build([str(FIXTURES / "nasty.yaml")], variables={"api_key": "a'b\"c$d`e\\f"}, hostname="n1")
    doc = yaml.safe_load(b.rendered.user_data)
    motd = "it's a \"test\" with $HOME, `id`, \\backslash\\ and 'quotes'\nsecond line $(echo no)\n"
    assert {f["path"]: f["content"] for f in doc["write_files"]}["/etc/motd"] == motd
    assert doc["runcmd"][1] == ["sh", "-c", "echo '8080'"]
    # the shell-quoted copy of the text, run by a shell, gives the text back
    assert doc["runcmd"][0].endswith(" > /tmp/motd-copy")
    out = subprocess.run(["sh", "-c", doc["runcmd"][0].removesuffix(" > /tmp/motd-copy")],
                         capture_output=True, text=True, check=True).stdout
    assert out == motd


# ---------------------------------------------------------------- multipart


def test_raw_parts_make_a_multipart_that_carries_them_untouched() -> None:
    b = build([str(FIXTURES / "raw-parts.yaml")])
    ud = b.rendered.user_data
    msg = email.message_from_string(ud)
    assert msg.get_content_type() == "multipart/mixed"
    parts = [p for p in msg.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/cloud-config", "text/x-shellscript"]
    raw = yaml.safe_load((FIXTURES / "raw-parts.yaml").read_text())["raw"]
    assert parts[1].get_payload(decode=True).decode() == raw["cloud_config"]
    assert parts[2].get_payload(decode=True).decode() == raw["script"]
    assert parts[1]["Merge-Type"] == "list(append)+dict(no_replace,recurse_list)+str()"
    ours = yaml.safe_load(parts[0].get_payload(decode=True).decode())
    assert ours["packages"] == ["htop"]
    assert [yaml.safe_load(p)["runcmd"] for p in cloud_config_parts(ud)[1:]] == [["echo raw-cloud-config"]]
    # the same multipart reaches OpenNebula, and the script also runs on guests without cloud-init
    assert b64d(b.rendered.one_context["USER_DATA"]) == ud
    assert 'echo "raw script {{ untouched }}"' in _decoded_heredocs(b64d(b.rendered.one_context["START_SCRIPT_BASE64"]))


def test_raw_parts_of_several_profiles_all_pass_through(tmp_path: Path) -> None:
    a = write(tmp_path, "a", "raw:\n  cloud_config: {bootcmd: [echo a]}\n")
    b = write(tmp_path, "b", "raw:\n  cloud_config: 'bootcmd: [echo b]'\n  script: echo b\n")
    parts = cloud_config_parts(build([a, b]).rendered.user_data)
    assert [yaml.safe_load(p)["bootcmd"] for p in parts[1:]] == [["echo a"], ["echo b"]]
    assert all(p.startswith("#cloud-config\n") for p in parts)


def _decoded_heredocs(script: str) -> str:
    out, lines = [], iter(script.splitlines())
    for line in lines:
        if line.endswith("<<'SKYCTL_EOF'"):
            chunk = []
            for body in lines:
                if body == "SKYCTL_EOF":
                    break
                chunk.append(body)
            out.append(base64.b64decode("".join(chunk)).decode())
    return "\n".join(out)


# ---------------------------------------------------------------- Nova's size limit


def test_user_data_over_novas_limit_is_refused_before_launch(tmp_path: Path) -> None:
    big = "x" * 60000
    p = write(tmp_path, "big", f"files:\n  - path: /opt/big\n    content: {big}\n")
    b = build([p])
    assert len(base64.b64encode(b.rendered.user_data.encode())) > NOVA_USER_DATA_MAX_B64
    with pytest.raises(ContextError) as e:
        check_for_cloud(b.rendered, "openstack", profiles=b.profiles)
    assert "65535" in str(e.value) and "'big'" in str(e.value)
    check_for_cloud(b.rendered, "opennebula")  # OpenNebula has no such limit


def test_user_data_just_under_the_limit_passes(tmp_path: Path) -> None:
    p = write(tmp_path, "fits", "files:\n  - path: /opt/f\n    content: PAD\n")
    overhead = len(build([p]).rendered.user_data.encode()) - 3
    pad = "x" * ((NOVA_USER_DATA_MAX_B64 // 4) * 3 - overhead)
    p2 = write(tmp_path, "fits", f"files:\n  - path: /opt/f\n    content: {pad}\n")
    rc = build([p2]).rendered
    assert len(base64.b64encode(rc.user_data.encode())) == NOVA_USER_DATA_MAX_B64 - NOVA_USER_DATA_MAX_B64 % 4
    check_for_cloud(rc, "openstack")


# ---------------------------------------------------------------- OpenNebula CONTEXT


def test_the_context_carries_the_same_cloud_config_and_what_one_context_reads() -> None:
    b = build(["base", "htcondor-worker"], ssh_public_keys=[KEY_A, KEY_B], hostname="wn-3",
              variables={"central_manager": "cm", "pool_token": "tok-123"})
    ctx = b.rendered.one_context
    assert ctx["NETWORK"] == "YES"
    assert ctx["SSH_PUBLIC_KEY"].splitlines() == [KEY_A, KEY_B]
    assert ctx["SET_HOSTNAME"] == "wn-3"
    assert ctx["USERNAME"] == "skyctl"
    assert ctx["USERDATA_ENCODING"] == "base64"
    assert b64d(ctx["USER_DATA"]) == b.rendered.user_data
    assert ctx["REPORT_READY"] == "YES" and ctx["TOKEN"] == "YES"
    script = b64d(ctx["START_SCRIPT_BASE64"])
    assert script.startswith("#!/bin/sh\n") and "systemctl restart condor" in script


def test_no_start_script_or_readiness_unless_the_profile_asks(tmp_path: Path) -> None:
    p = write(tmp_path, "bare", "hostname: h1\n")
    ctx = build([p]).rendered.one_context
    assert set(ctx) == {"NETWORK", "SSH_PUBLIC_KEY", "SET_HOSTNAME", "USER_DATA", "USERDATA_ENCODING"}
    assert ctx["SET_HOSTNAME"] == "h1"


def test_the_template_syntax_is_read_back_by_an_opennebula_template_parser() -> None:
    from skyctl.sandbox.opennebula.template import parse_template

    ctx = {"NETWORK": "YES", "A": 'say "hi" \\ bye', "B": "two\nlines", "C": "$NAME", "D": "", "E": "a,b]c"}
    text = one_template(ctx)
    assert text.startswith("CONTEXT = [\n")
    assert parse_template(text) == [("CONTEXT", ctx)]
    b = build([str(FIXTURES / "nasty.yaml")], ssh_public_keys=[KEY_A, KEY_B], variables={"api_key": "k\"\\'"},
              hostname="n1")
    assert parse_template(one_template(b.rendered.one_context)) == [("CONTEXT", dict(b.rendered.one_context))]


# ---------------------------------------------------------------- the start script, run


FAKE_TOOLS = {
    # commands a start script may call that would change this machine: record the call instead
    "useradd": 'echo "useradd $*" >> "$LOG"',
    "groupadd": 'echo "groupadd $*" >> "$LOG"',
    "usermod": 'echo "usermod $*" >> "$LOG"',
    "chown": 'echo "chown $*" >> "$LOG"',
    "apt-get": 'echo "apt-get $*" >> "$LOG"',
    "systemctl": 'echo "systemctl $*" >> "$LOG"',
    "id": 'exit 1',
    "getent": 'if [ "$1" = passwd ]; then echo "$2:x:1000:1000::$FAKE_HOME/$2:/bin/sh"; else exit 2; fi',
}


@pytest.fixture
def fake_root(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_TOOLS.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    for real in ("sh", "base64", "mkdir", "dirname", "chmod", "cat", "cut", "grep", "printf", "touch", "install",
                 "mktemp", "rm", "echo", "bash"):
        found = shutil.which(real)
        if found and not (bin_dir / real).exists():
            (bin_dir / real).symlink_to(found)
    return {"PATH": str(bin_dir), "LOG": str(tmp_path / "calls.log"), "FAKE_HOME": str(tmp_path / "home"),
            "TMPDIR": str(tmp_path)}


def _start_script(tmp_path: Path, marker: Path) -> tuple[str, Path]:
    out = tmp_path / "out"
    p = write(tmp_path, "guest", f"""\
        variables:
          greeting: {{default: "it's $HOME `x`"}}
        login_user: op
        users:
          - name: op
            groups: [docker]
        files:
          - path: {out}/etc/app.conf
            permissions: "0640"
            content: "greeting={{{{ greeting }}}}\\n"
        packages: [htop]
        commands:
          - echo {{{{ greeting | shquote }}}} > {out}/said
          - [sh, -c, "echo list-form >> {out}/said"]
          - "false"
          - echo after-failure >> {out}/said
        raw:
          script: |
            #!/bin/sh
            echo raw-script >> {out}/said
        """)
    b = build([p], ssh_public_keys=[KEY_A])
    script = b64d(b.rendered.one_context["START_SCRIPT_BASE64"])
    assert CLOUD_INIT_ENABLED in script
    return script.replace(CLOUD_INIT_ENABLED, str(marker)), out


def test_the_start_script_does_the_cloud_config_work_on_a_guest_without_cloud_init(
        tmp_path: Path, fake_root: dict[str, str]) -> None:
    script, out = _start_script(tmp_path, tmp_path / "no-cloud-init")
    subprocess.run(["sh", "-n", "-c", script], check=True)
    proc = subprocess.run(["sh", "-c", script], env=fake_root, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    conf = out / "etc" / "app.conf"
    assert conf.read_text() == "greeting=it's $HOME `x`\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert (out / "said").read_text() == "it's $HOME `x`\nlist-form\nafter-failure\nraw-script\n"
    calls = Path(fake_root["LOG"]).read_text().splitlines()
    assert "useradd -m op" in calls and "usermod -a -G docker op" in calls and "groupadd docker" in calls
    assert any(c.startswith("apt-get install -y -q htop") for c in calls)
    keys = Path(fake_root["FAKE_HOME"]) / "op" / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY_A + "\n"
    # run twice: idempotent (the key is not added again)
    subprocess.run(["sh", "-c", script], env=fake_root, capture_output=True, check=True, timeout=30)
    assert keys.read_text() == KEY_A + "\n"


def test_the_start_script_grants_sudo_through_sudoers_d() -> None:
    b = build(["base"], ssh_public_keys=[KEY_A])
    script = b64d(b.rendered.one_context["START_SCRIPT_BASE64"])
    assert ("mkdir -p /etc/sudoers.d; printf '%s\\n' 'skyctl ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-skyctl-skyctl; "
            "chmod 0440 /etc/sudoers.d/90-skyctl-skyctl") in script.splitlines()


def test_the_start_script_stands_aside_when_cloud_init_runs(tmp_path: Path, fake_root: dict[str, str]) -> None:
    marker = tmp_path / "cloud-init-enabled"
    marker.touch()
    script, out = _start_script(tmp_path, marker)
    proc = subprocess.run(["sh", "-c", script], env=fake_root, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert not out.exists() and not os.path.exists(fake_root["LOG"])
