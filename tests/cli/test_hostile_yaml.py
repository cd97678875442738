"""YAML that would blow up when walked (alias bombs, deep nesting, huge files) is refused with
one line naming the file, in every file a user hands skyctl; the same loader serves them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl import yamlsafe
from skyctl.testing.cli import Runner

# Nine levels of nine aliases: 9**9 (387 million) leaves from a few hundred bytes.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(c)}: &{chr(c)} [{', '.join(['*' + chr(c - 1)] * 9)}]\n" for c in range(ord("b"), ord("j")))
DEEP = "[" * 100_000 + "]" * 100_000
ANCHOR = "images: &imgs {alma9: {home: alma9}}\nsecrets: *imgs\n"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("text", "why"), [(BOMB, "anchors (&a) are not allowed"), (ANCHOR, "anchors (&imgs)"),
                                           (DEEP, "nested deeper than"), ("#" * (yamlsafe.MAX_BYTES + 1), "MiB")],
                         ids=["alias-bomb", "anchor", "deep", "huge"])
def test_federation_file(run: Runner, tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "sky.yaml"
    path.write_text(text)
    # The refusal names the cause found while reading (an anchor, the depth, the size), so
    # nothing walked the expanded tree; no wall-clock limit (machines differ in speed).
    res = run("--config", str(path), "ps")
    assert res.code == 2
    line = _one_error_line(res.err)
    assert str(path) in line and why in line


LIST_PROFILE = """\
variables:
  greeting: {type: list, default: [hi]}
files:
  - {path: /etc/motd, content: "{{ greeting | join(' ') }}"}
"""
PROFILE_BOMB = "raw:\n  cloud_config:\n" + "".join(
    "    " + line + "\n" for line in BOMB.splitlines())


@pytest.mark.parametrize("text", [PROFILE_BOMB, "raw:\n  cloud_config: " + DEEP + "\n"],
                         ids=["alias-bomb", "deep"])
def test_context_profile(run: Runner, tmp_path: Path, text: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    for args in (("context", "validate", str(path)), ("context", "render", str(path), "--for", "openstack")):
        res = run(*args)
        assert res.code == 2, res.err
        line = _one_error_line(res.err)
        assert "bomb.yaml" in line and ("not allowed" in line or "nested deeper" in line)


def test_variables_file(run: Runner, tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(LIST_PROFILE)
    variables = tmp_path / "vars.yaml"
    variables.write_text(BOMB.replace("a: &a", "greeting: &a", 1))
    res = run("context", "render", str(profile), "--for", "openstack", "--var-file", str(variables))
    assert res.code == 2
    line = _one_error_line(res.err)
    assert "vars.yaml" in line and "not allowed" in line


def test_list_variable_given_on_the_command_line(run: Runner, tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(LIST_PROFILE)
    res = run("context", "render", str(profile), "--for", "openstack", "--var", "greeting=[&a x, *a]")
    assert res.code == 2 and "Traceback" not in res.err


def test_sandbox_spec(run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_HOME", str(tmp_path / "home"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(BOMB)
    res = run("sandbox", "up", "--spec", str(spec))
    assert res.code == 2
    line = _one_error_line(res.err)
    assert "spec.yaml" in line and "not allowed" in line
