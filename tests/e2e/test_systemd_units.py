"""examples/systemd/: the units pass `systemd-analyze verify`, and their skyctl command lines
use options skyctl has. The units name /usr/local/bin/skyctl, where a system-wide pip install
puts it; verify checks that the command exists, so the copies verified here name this skyctl."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from skyctl.testing.cli import SKYCTL

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"
INSTALLED = "/usr/local/bin/skyctl"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed (.ci/run installs systemd)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def test_units_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    names = sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".timer"))
    assert names == ["skyctl-burst-watch.service", "skyctl-reconcile.service", "skyctl-reconcile.timer"]
    for name in names:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(INSTALLED, SKYCTL))
    proc = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in names)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skyctl" not in proc.stderr, proc.stderr  # no warning about our units either


def _exec_start(unit: str) -> list[str]:
    line = next(ln for ln in (UNITS / unit).read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.split("=", 1)[1])


@pytest.mark.parametrize("unit", ["skyctl-burst-watch.service", "skyctl-reconcile.service"])
def test_units_use_options_skyctl_has(unit: str) -> None:
    argv = _exec_start(unit)
    assert argv[0] == INSTALLED
    command: list[str] = []
    for w in argv[1:]:
        if w.startswith("-"):
            break
        command.append(w)
    help_text = subprocess.run([SKYCTL, *command, "--help"], capture_output=True, text=True, timeout=60).stdout
    for option in (w for w in argv[1:] if w.startswith("-")):
        assert option in help_text, f"{unit}: skyctl {' '.join(command)} has no {option}"
