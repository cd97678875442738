"""Context profiles: format validation, lookup, composition, variables, templating, secrets."""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from skyctl.context import build_context, describe, list_profiles, needs_hostname, validate_file
from skyctl.errors import EXIT_USAGE, ContextError
from skyctl.paths import config_dir

BUILTINS = ["base", "htcondor-worker", "cvmfs-client", "docker-host", "jupyter"]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1vY2tLZXlGb3JUZXN0c09ubHlOb3RVc2VkQW55d2hlcmUx test@skyctl"
REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(body))
    return str(p)


def build(profiles: list[str], **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("ssh_public_keys", [KEY])
    kw.setdefault("environ", {})
    return build_context(profiles, **kw)


def cloud_config(user_data: str) -> dict:
    assert user_data.startswith("#cloud-config\n")
    return yaml.safe_load(user_data)


# ---------------------------------------------------------------- built-ins


def test_every_builtin_is_listed_documented_and_valid() -> None:
    listed = {p["name"]: p for p in list_profiles()}
    assert set(BUILTINS) <= set(listed)
    for name in BUILTINS:
        assert listed[name]["source"] == "builtin"
        info = describe(name)
        assert info["description"], name
        for var, spec in info["variables"].items():
            assert spec["description"], f"{name}: variable {var} is undocumented"
            assert spec["type"] in ("string", "int", "bool", "list")
        assert validate_file(listed[name]["path"])["valid"]


def test_show_gives_the_documented_json_shape() -> None:
    info = describe("htcondor-worker")
    assert info["name"] == "htcondor-worker"
    token = info["variables"]["pool_token"]
    assert token == {"type": "string", "required": True, "secret": True, "default": None,
                     "description": token["description"]}
    assert info["variables"]["partitionable"]["default"] is True


def test_builtins_are_read_from_the_repo_contexts_dir_in_an_editable_install() -> None:
    from skyctl.context.profile import builtin_dir

    assert (builtin_dir() / "base.yaml").read_text() == (REPO / "contexts" / "base.yaml").read_text()


# ---------------------------------------------------------------- lookup


def test_a_user_profile_in_the_config_dir_hides_the_builtin_of_that_name() -> None:
    folder = config_dir() / "contexts"
    folder.mkdir(parents=True)
    (folder / "base.yaml").write_text("description: mine\nhostname: mybox\n")
    (folder / "extra.yml").write_text("description: extra\npackages: [git]\n")
    listed = {p["name"]: p for p in list_profiles()}
    assert listed["base"]["source"] == "user" and listed["extra"]["source"] == "user"
    doc = cloud_config(build(["base", "extra"]).rendered.user_data)
    assert doc["hostname"] == "mybox" and doc["packages"] == ["git"]


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ContextError) as e:
        build(["no-such-profile"])
    assert "no-such-profile" in str(e.value) and "htcondor-worker" in str(e.value)
    assert e.value.exit_code == EXIT_USAGE


def test_a_missing_profile_path_is_a_context_error(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no such context profile file"):
        build([str(tmp_path / "gone.yaml")])


# ---------------------------------------------------------------- validation errors name field and profile


@pytest.mark.parametrize(("body", "expected"), [
    ("packges: [git]\n", "packges: Extra inputs are not permitted"),
    ("files:\n  - path: /etc/x\n    permissions: 0644\n", "files[0].permissions: quote the mode"),
    ("files:\n  - path: etc/x\n", "files[0].path: must be an absolute path"),
    ("files:\n  - path: /etc/x\n    permissions: '999'\n", "not an octal file mode"),
    ("variables:\n  n:\n    type: float\n", "variables.n.type"),
    ("variables:\n  n:\n    type: int\n", "variables.n: an int variable needs a default"),
    ("variables:\n  n:\n    type: int\n    default: ten\n", "variables.n: default: expected an integer"),
    ("variables:\n  node:\n    type: string\n", "'node' is reserved"),
    ("variables:\n  2x: {}\n", "variable name '2x'"),
    ("users:\n  - name: a\n  - name: a\n", "users: 'a' is listed twice"),
    ("commands: echo hi\n", "commands"),
    ("- just\n- a list\n", "a profile must be a YAML mapping"),
    ("packages: [git\n", "not valid YAML at line"),
    ("commands:\n  - echo {{ x \n", "commands[0]: template error"),
])
def test_invalid_profiles_say_which_field_of_which_profile(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "broken", body)
    with pytest.raises(ContextError) as e:
        build([path])
    assert expected in str(e.value)
    assert "profile 'broken'" in str(e.value)


def test_validate_rejects_a_variable_the_profile_does_not_declare() -> None:
    with pytest.raises(ContextError) as e:
        validate_file(str(REPO / "tests/fixtures/contexts/undeclared.yaml"))
    assert "'flavour'" in str(e.value) and "profile 'undeclared'" in str(e.value)


# ---------------------------------------------------------------- composition


def test_composition_appends_lists_merges_maps_and_users_by_name() -> None:
    b = build(["base", "docker-host", "jupyter"], variables={"token": "t0ken-value"})
    doc = cloud_config(b.rendered.user_data)
    # lists append in profile order, packages without duplicates
    assert doc["packages"] == ["docker.io", "python3-venv"]
    assert [f["path"] for f in doc["write_files"]] == [
        "/etc/docker/daemon.json", "/etc/jupyter/skyctl.env", "/etc/systemd/system/jupyter.service"]
    assert doc["runcmd"][0] == "systemctl enable --now docker"
    # the same user from three profiles is one user with everything each profile gave it
    users = [u for u in doc["users"] if u != "default"]
    assert len(users) == 1
    assert users[0]["name"] == "skyctl" and users[0]["groups"] == "docker"
    assert users[0]["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and users[0]["shell"] == "/bin/bash"
    assert users[0]["ssh_authorized_keys"] == [KEY]


def test_a_scalar_set_by_two_profiles_is_an_error_naming_both(tmp_path: Path) -> None:
    a = write(tmp_path, "first", "hostname: alpha\n")
    b = write(tmp_path, "second", "hostname: beta\n")
    with pytest.raises(ContextError) as e:
        build([a, b])
    msg = str(e.value)
    assert "hostname" in msg and "'first'" in msg and "'second'" in msg
    assert "alpha" in msg and "beta" in msg
    # equal values are not a conflict
    c = write(tmp_path, "third", "hostname: alpha\n")
    assert cloud_config(build([a, c]).rendered.user_data)["hostname"] == "alpha"


def test_two_profiles_writing_one_file_differently_conflict(tmp_path: Path) -> None:
    a = write(tmp_path, "a", "files:\n  - path: /etc/x\n    content: one\n")
    b = write(tmp_path, "b", "files:\n  - path: /etc/x\n    content: two\n")
    with pytest.raises(ContextError, match=r"files\[0\]\.content: profile 'a' sets 'one' and profile 'b' sets 'two'"):
        build([a, b])


def test_a_user_setting_conflicts_between_profiles(tmp_path: Path) -> None:
    a = write(tmp_path, "a", "users:\n  - name: u\n    shell: /bin/sh\n")
    b = write(tmp_path, "b", "users:\n  - name: u\n    shell: /bin/zsh\n    groups: [g]\n")
    with pytest.raises(ContextError, match=r"users\[0\]\.shell: profile 'a'.*profile 'b'"):
        build([a, b])


def test_variable_declarations_merge_but_types_and_defaults_must_agree(tmp_path: Path) -> None:
    a = write(tmp_path, "a", "variables:\n  v: {type: string, default: x}\n")
    b = write(tmp_path, "b", "variables:\n  v: {type: int, default: 1}\n")
    with pytest.raises(ContextError, match="profile 'a' declares it as string and profile 'b' as int"):
        build([a, b])
    c = write(tmp_path, "c", "variables:\n  v: {type: string, default: y}\n")
    with pytest.raises(ContextError, match="variables.v.default"):
        build([a, c])
    d = write(tmp_path, "d", "variables:\n  v: {type: string, secret: true}\ncommands: ['echo {{ v }}']\n")
    b2 = build([a, d])
    assert b2.secrets[0] == "x"  # secret if any profile says so, the one default kept


def test_the_same_profile_twice_is_refused() -> None:
    with pytest.raises(ContextError, match="given twice"):
        build(["base", "base"])


# ---------------------------------------------------------------- variables


def test_variable_precedence_default_env_file_then_var(tmp_path: Path) -> None:
    prof = write(tmp_path, "p", """\
        variables:
          a: {type: string, default: from-default}
          b: {type: string, default: from-default}
          c: {type: string, default: from-default}
          d: {type: string, default: from-default}
        commands: ["echo {{ a }} {{ b }} {{ c }} {{ d }}"]
        """)
    vf = tmp_path / "vars.yaml"
    vf.write_text("c: from-file\nd: from-file\n")
    b = build([prof], environ={"SKYCTL_VAR_b": "from-env", "SKYCTL_VAR_C": "from-env", "SKYCTL_VAR_d": "from-env"},
              var_files=[str(vf)], variables={"d": "from-var"})
    assert cloud_config(b.rendered.user_data)["runcmd"] == ["echo from-default from-env from-file from-var"]


def test_values_are_typed_and_coerced(tmp_path: Path) -> None:
    prof = write(tmp_path, "typed", """\
        variables:
          n: {type: int, default: 1}
          flag: {type: bool, default: false}
          items: {type: list, default: []}
        packages: [base-pkg, "{{ items }}"]
        users:
          - name: u
            sudo: "{{ flag }}"
        commands: ["echo {{ n + 1 }} {{ flag }}{% for i in items %} {{ i }}{% endfor %}"]
        """)
    b = build([prof], variables={"n": "41", "flag": "yes", "items": "x, y,z"})
    doc = cloud_config(b.rendered.user_data)
    assert doc["runcmd"] == ["echo 42 true x y z"]
    assert doc["packages"] == ["base-pkg", "x", "y", "z"]  # a whole-list value splices in
    assert doc["users"][1]["sudo"] == "ALL=(ALL) NOPASSWD:ALL"  # a whole-bool value stays a bool
    b2 = build([prof], variables={"items": "[a, 'b c']", "flag": "off"})
    doc2 = cloud_config(b2.rendered.user_data)
    assert doc2["packages"] == ["base-pkg", "a", "b c"] and "sudo" not in doc2["users"][1]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("n", "forty", "variable 'n' of profile 'typed' is a int: expected an integer, got 'forty' (from --var n)"),
    ("flag", "maybe", "variable 'flag' of profile 'typed' is a bool: expected true or false"),
])
def test_a_value_of_the_wrong_type_names_variable_and_profile(tmp_path: Path, name: str, value: str,
                                                             expected: str) -> None:
    prof = write(tmp_path, "typed", "variables:\n  n: {type: int, default: 1}\n  flag: {type: bool}\n")
    with pytest.raises(ContextError) as e:
        build([prof], variables={name: value})
    assert expected in str(e.value)


def test_a_missing_required_variable_names_it_and_its_profile() -> None:
    with pytest.raises(ContextError) as e:
        build(["base", "htcondor-worker"], variables={"central_manager": "cm"})
    assert "missing required variable 'pool_token' of profile 'htcondor-worker'" in e.value.line()
    assert "SKYCTL_VAR_pool_token" in e.value.line()
    assert e.value.exit_code == EXIT_USAGE


def test_an_unknown_var_is_an_error_but_an_unused_file_entry_only_a_warning(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match=r"--var colour: no such variable in profiles base \(declared: "):
        build(["base"], variables={"colour": "red"})
    vf = tmp_path / "v.yaml"
    vf.write_text("colour: red\nuser: alice\n")
    b = build(["base"], var_files=[str(vf)])
    assert b.rendered.login_user == "alice"
    assert any("colour" in w for w in b.warnings)


@pytest.mark.parametrize(("content", "expected"), [
    ("- a\n- b\n", "must be a mapping"), ("a: [\n", "not valid YAML"), (None, "cannot read variables file")])
def test_bad_var_files(tmp_path: Path, content: str | None, expected: str) -> None:
    vf = tmp_path / "v.yaml"
    if content is not None:
        vf.write_text(content)
    with pytest.raises(ContextError, match=expected):
        build(["base"], var_files=[str(vf)])


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_VAR_user", "envuser")
    b = build_context(["base"], ssh_public_keys=[KEY])
    assert b.rendered.login_user == "envuser"


# ---------------------------------------------------------------- templating


def test_an_undefined_variable_names_it_and_the_profile(tmp_path: Path) -> None:
    a = write(tmp_path, "good", "variables:\n  x: {default: one}\n")
    b = write(tmp_path, "uses-y", "commands:\n  - echo ok\n  - echo {{ y }}\n")
    with pytest.raises(ContextError) as e:
        build([a, b])
    assert "undefined variable 'y' in commands[1]" in str(e.value)
    assert "profile 'uses-y'" in str(e.value)


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    p = write(tmp_path, "escape", "commands:\n  - \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n")
    with pytest.raises(ContextError, match="profile 'escape'"):
        build([p])


def test_raw_parts_are_not_templated() -> None:
    b = build([str(REPO / "tests/fixtures/contexts/raw-parts.yaml")])
    assert "# {{ not a template }}" in b.rendered.user_data
    assert 'echo "raw script {{ untouched }}"' in b.rendered.user_data


def test_node_name_needs_a_hostname_and_makes_the_context_per_node() -> None:
    nasty = str(REPO / "tests/fixtures/contexts/nasty.yaml")
    assert needs_hostname([nasty]) and not needs_hostname(["base", "htcondor-worker"])
    with pytest.raises(ContextError) as e:
        build([nasty], variables={"api_key": "k3y-value"})
    assert "undefined variable 'node'" in e.value.line() and "--hostname" in e.value.line()
    b = build([nasty], variables={"api_key": "k3y-value"}, hostname="worker-7")
    assert b.per_node
    assert cloud_config(b.rendered.user_data)["hostname"] == "worker-7-x"
    assert b.rendered.one_context["SET_HOSTNAME"] == "worker-7-x"


def test_a_node_name_becomes_a_valid_host_name() -> None:
    b = build(["base"], hostname="web_1.")
    assert not b.per_node
    assert cloud_config(b.rendered.user_data)["hostname"] == "web-1"
    assert b.rendered.one_context["SET_HOSTNAME"] == "web-1"
    # without a node name OpenNebula puts the VM's own name in (oned substitutes $NAME)
    assert build(["base"]).rendered.one_context["SET_HOSTNAME"] == "$NAME"
    assert "hostname" not in cloud_config(build(["base"]).rendered.user_data)


def test_an_invalid_hostname_from_a_profile_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "h", "hostname: 'bad_host name'\n")
    with pytest.raises(ContextError, match="not a valid host name"):
        build([p])


def test_a_login_user_must_be_one_of_the_users(tmp_path: Path) -> None:
    p = write(tmp_path, "lu", "login_user: ghost\nusers:\n  - name: real\n")
    with pytest.raises(ContextError, match="login_user: 'ghost' is not one of the profile's users"):
        build([p])


def test_an_edited_profile_is_read_again(tmp_path: Path) -> None:
    p = Path(write(tmp_path, "live", "packages: [one]\n"))
    assert cloud_config(build([str(p)]).rendered.user_data)["packages"] == ["one"]
    p.write_text("packages: [two, three]\n")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert cloud_config(build([str(p)]).rendered.user_data)["packages"] == ["two", "three"]


# ---------------------------------------------------------------- secrets


def _everything(rc) -> str:  # type: ignore[no-untyped-def]
    """All the text a RenderedContext carries, base64 fields decoded."""
    parts = [rc.user_data or "", *rc.one_context.values(), *rc.ssh_public_keys]
    for k in ("USER_DATA", "START_SCRIPT_BASE64"):
        if k in rc.one_context:
            parts.append(base64.b64decode(rc.one_context[k]).decode())
    return "\n".join(parts)


def test_secrets_reach_the_cloud_but_never_the_masked_copy() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.pool-token-value"
    b = build(["base", "htcondor-worker"], variables={"central_manager": "cm.example.org"},
              environ={"SKYCTL_VAR_pool_token": token})
    assert token in _everything(b.rendered)
    masked = _everything(b.masked)
    assert token not in masked and "****" in masked
    assert "cm.example.org" in masked  # not a secret
    assert b.secrets[0] == token
    # the encoded user-data is registered too, so a debug log of a request body is masked whole
    assert base64.b64encode(b.rendered.user_data.encode()).decode() in b.secrets
    assert b.rendered.one_context["START_SCRIPT_BASE64"] in b.secrets


def test_a_secret_used_through_a_filter_is_masked_too(tmp_path: Path) -> None:
    p = write(tmp_path, "enc", "variables:\n  s: {secret: true, required: true}\n"
                               "commands: ['echo {{ s | b64encode }} {{ s | upper }}']\n")
    b = build([p], variables={"s": "hunter22"})
    assert base64.b64encode(b"hunter22").decode() in b.rendered.user_data and "HUNTER22" in b.rendered.user_data
    assert "aHVudGVyMjI" not in _everything(b.masked) and "HUNTER22" not in _everything(b.masked)


def test_a_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    p = write(tmp_path, "s", "variables:\n  pin: {type: int, secret: true, required: true}\n")
    with pytest.raises(ContextError) as e:
        build([p], variables={"pin": "sup3r-secret"})
    assert "sup3r-secret" not in e.value.line() and "pin" in e.value.line()


def test_show_masks_a_secret_default(tmp_path: Path) -> None:
    p = write(tmp_path, "sd", "variables:\n  pw: {secret: true, default: changeme}\n")
    assert describe(p)["variables"]["pw"]["default"] == "****"


def test_no_secrets_means_the_masked_copy_is_the_rendered_one() -> None:
    b = build(["base"])
    assert b.secrets == [] and b.masked == b.rendered


def test_a_secret_value_reused_in_a_plain_variable_is_masked_there_too(tmp_path: Path) -> None:
    p = write(tmp_path, "reuse", "variables:\n  s: {secret: true}\n  plain: {}\n"
                                 "commands: ['echo {{ s }}', 'echo {{ plain }} ab-cd']\n")
    b = build([p], variables={"s": "shared-value", "plain": "shared-value"})
    assert cloud_config(b.masked.user_data)["runcmd"] == ["echo ****", "echo **** ab-cd"]
    # a very short secret masks where it is used, not every matching letter of the output
    short = build([p], variables={"s": "ab"})
    assert cloud_config(short.masked.user_data)["runcmd"] == ["echo ****", "echo  ab-cd"]


def test_no_profile_still_delivers_the_key() -> None:
    b = build([])
    assert cloud_config(b.rendered.user_data) == {"ssh_authorized_keys": [KEY]}
    assert b.rendered.one_context["SSH_PUBLIC_KEY"] == KEY and "START_SCRIPT_BASE64" not in b.rendered.one_context


@pytest.mark.parametrize(("body", "expected"), [
    ("variables:\n  u: {default: 'bad name'}\nusers:\n  - name: '{{ u }}'\n", "users[0].name: 'bad name' is not a valid user name"),
    ("variables:\n  u: {default: alice}\nusers:\n  - name: '{{ u }}'\n  - name: alice\n", "user 'alice' is also users[0].name"),
    ("variables:\n  d: {default: etc}\nfiles:\n  - path: '{{ d }}/x'\n", "files[0].path: must be an absolute path: 'etc/x'"),
])
def test_what_templates_produce_is_checked_too(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ContextError) as e:
        build([write(tmp_path, "rendered", body)])
    assert expected in str(e.value) and "profile 'rendered'" in str(e.value)
