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
