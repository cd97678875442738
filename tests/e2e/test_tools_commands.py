"""The commands for other tools (ssh-config, inventory, burst watch as a service): their help
shows examples, their options complete, and -o json|yaml is offered where they print data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyctl.cli.completions import COMPLETE_VAR

COMMANDS = [["ssh-config"], ["inventory"], ["burst", "watch"]]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skyctl", *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples(command: list[str]) -> None:
    out = _run([*command, "--help"]).stdout
    assert "Examples:" in out and f"skyctl {' '.join(command)}" in out


@pytest.mark.parametrize("command", [["ssh-config"], ["inventory"]], ids=" ".join)
def test_data_commands_offer_json_and_yaml(command: list[str]) -> None:
    out = _run([*command, "--help"]).stdout
    assert "json" in out and "yaml" in out and "--output" in out


def _complete(words: str, cword: int, tmp_path: Path) -> list[str]:
    env = {**os.environ, COMPLETE_VAR: "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword),
           "SKYCTL_HOME": str(tmp_path)}
    return _run([], env).stdout.split()


def test_new_commands_and_options_complete(tmp_path: Path) -> None:
    assert "ssh-config" in _complete("skyctl ssh-c", 1, tmp_path)
    assert {"--list", "--host"} <= set(_complete("skyctl inventory --", 2, tmp_path))
    assert {"--prefix", "--write", "--no-pin"} <= set(_complete("skyctl ssh-config --", 2, tmp_path))
    assert {"--metrics-port", "--log-format"} <= set(_complete("skyctl burst watch --", 3, tmp_path))
    assert set(_complete("skyctl burst watch --log-format ", 4, tmp_path)) == {"text", "json"}


def test_inventory_needs_list_or_host(tmp_path: Path) -> None:
    env = {**os.environ, "SKYCTL_HOME": str(tmp_path)}
    proc = _run(["inventory"], env)
    assert proc.returncode == 2 and "--list or --host" in proc.stderr
