"""cloud-init's own schema check on every built-in profile, for both clouds.

Needs Debian's cloud-init (`apt-get install --no-install-recommends cloud-init`). With CI set
these tests fail when it is missing; locally they skip and say why.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from skyctl.context import build_context, cloud_config_parts

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1vY2tLZXlGb3JUZXN0c09ubHlOb3RVc2VkQW55d2hlcmUx test@skyctl"
# values for the built-ins' required variables
VARS = {"central_manager": "cm.example.org", "pool_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig", "token": "jupyter-t0ken",
        "controller": "slurmctld.example.org", "munge_key": "bXVuZ2Uta2V5LWZvci10ZXN0cw=="}
BUILTINS = ["base", "htcondor-worker", "cvmfs-client", "docker-host", "jupyter", "slurm-worker"]
CASES = {name: [name] for name in BUILTINS}
CASES["base-first"] = ["base", "htcondor-worker", "cvmfs-client", "docker-host", "jupyter"]
CASES["slurm-file-config"] = ["base", "slurm-worker"]
CASES["fixture-nasty"] = [str(REPO / "tests/fixtures/contexts/nasty.yaml")]
CASES["fixture-raw"] = [str(REPO / "tests/fixtures/contexts/raw-parts.yaml")]


@pytest.fixture(scope="module")
def cloud_init() -> str:
    exe = shutil.which("cloud-init")
    if exe is None:
        msg = ("cloud-init is not installed (apt-get install -y --no-install-recommends cloud-init); "
               "the rendered user-data cannot be checked against its schema")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def schema_check(exe: str, text: str, tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return subprocess.run([exe, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60)


_checked: set[str] = set()  # a document already found valid in this run (user-data == decoded USER_DATA)


def assert_valid(exe: str, text: str, tmp_path: Path, name: str) -> None:
    docs = cloud_config_parts(text)
    assert docs, f"{name}: no cloud-config in the user-data"
    for i, doc in enumerate(docs):
        if doc in _checked:
            continue
        proc = schema_check(exe, doc, tmp_path, f"{name}-{i}")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, f"{name} part {i}: {out}\n{doc}"
        # deprecated keys still validate, but will stop working: keep them out too
        assert "DEPRECATED" not in out, f"{name} part {i}: {out}"
        _checked.add(doc)


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_data_and_the_user_data_inside_the_context_pass_the_schema(case: str, cloud_init: str,
                                                                       tmp_path: Path) -> None:
    profiles = CASES[case]
    variables = {k: v for k, v in VARS.items() if k != "token" or "jupyter" in profiles}
    if "htcondor-worker" not in profiles:
        variables = {k: v for k, v in variables.items() if k not in ("central_manager", "pool_token")}
    if "slurm-worker" not in profiles:
        variables = {k: v for k, v in variables.items() if k not in ("controller", "munge_key")}
    if case == "slurm-file-config":
        variables["slurm_conf"] = "ClusterName=sky\nSlurmctldHost=ctl\nNodeName=node-1 State=CLOUD\n"
    if "fixture-nasty" == case:
        variables = {"api_key": "k'e\"y$`"}
    built = build_context(profiles, variables=variables, environ={}, ssh_public_keys=[KEY], hostname="node-1")
    assert_valid(cloud_init, built.rendered.user_data, tmp_path, f"{case}-openstack")
    from_context = base64.b64decode(built.rendered.one_context["USER_DATA"]).decode()
    assert from_context == built.rendered.user_data
    assert_valid(cloud_init, from_context, tmp_path, f"{case}-opennebula")
    assert_valid(cloud_init, built.masked.user_data, tmp_path, f"{case}-masked")


def test_the_schema_check_does_catch_a_bad_document(cloud_init: str, tmp_path: Path) -> None:
    proc = schema_check(cloud_init, "#cloud-config\nruncmd: 5\nwrite_files: [{content: x}]\n", tmp_path, "bad")
    assert proc.returncode != 0
    assert "runcmd" in proc.stdout + proc.stderr


def test_a_deprecated_key_is_caught_too(cloud_init: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="DEPRECATED"):
        assert_valid(cloud_init, "#cloud-config\napt_update: true\n", tmp_path, "old")
