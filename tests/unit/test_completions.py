"""The shipped completion scripts are current, and the protocol they call really completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyctl.cli.completions import COMPLETE_VAR, SHELLS, script

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_shipped_script_is_current(shell: str) -> None:
    shipped = (ROOT / "completions" / SHELLS[shell]).read_text(encoding="utf-8")
    assert shipped == script(shell), (
        f"completions/{SHELLS[shell]} is stale: run `python -m skyctl.cli.completions completions`")


def _complete(words: str, cword: int, tmp_path: Path) -> list[str]:
    env = {**os.environ, COMPLETE_VAR: "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword),
           "SKYCTL_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "skyctl"], env=env, capture_output=True, text=True, timeout=60)
    return proc.stdout.split()


def test_bash_protocol_completes_commands_and_options(tmp_path: Path) -> None:
    assert "launch" in _complete("skyctl la", 1, tmp_path)
    opts = _complete("skyctl launch web --co", 3, tmp_path)
    assert "--count" in opts and "--context" in opts


def test_names_complete_from_local_state_and_the_federation_file(tmp_path: Path) -> None:
    """Node, group, site, image, size and profile names complete (from local files only, no
    cloud is asked); where a node is expected no local file name is offered."""
    import yaml

    from skyctl.model import GroupSpec
    from skyctl.state import State
    from skyctl.testing.cli import federation

    state = State(tmp_path / "state" / "state.db")
    state.ensure_group("web", GroupSpec(image="alma9", cpus=1, memory_mib=512))
    for i in range(2):
        state.record_node(f"web-{i}", "web", "home", f"id-{i}", "l-1")
    state.close()
    (tmp_path / "sky.yaml").write_text(yaml.safe_dump(federation(home={"driver": "openstack", "cloud": "x"},
                                                                 cc={"driver": "opennebula"})))
    (tmp_path / "web-local-file").write_text("")
    env = {"SKYCTL_CONFIG": str(tmp_path / "sky.yaml")}

    def complete(words: str) -> list[str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        proc = subprocess.run([sys.executable, "-m", "skyctl"], env={
            **os.environ, **env, COMPLETE_VAR: "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword),
            "SKYCTL_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        return proc.stdout.split()

    assert complete("skyctl ssh we") == ["web-0", "web-1"]
    assert complete("skyctl exec ") == ["web", "web-0", "web-1"]
    assert complete("skyctl stop web-") == ["web-0", "web-1"]
    assert complete("skyctl ps --site ") == ["cc", "home"]
    assert complete("skyctl launch g --image ") == ["alma9"]
    assert complete("skyctl launch g --size l") == ["large"]
    assert "base" in complete("skyctl launch g --context ")
    assert complete("skyctl cp x w") == ["web:", "web-0:", "web-1:"]
