"""A state file skyctl cannot use is one line naming the file and what to do, never an
internal error: a directory in its place, a read-only folder, a database another process
keeps locked."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from skyctl import state as state_mod
from skyctl.testing.cli import Runner


def _state_file() -> Path:
    return Path(os.environ["SKYCTL_HOME"]) / "state" / "state.db"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in err, err
    assert "Traceback" not in err
    return lines[0]


def test_a_directory_where_the_state_file_belongs(run: Runner, two_sites: Path) -> None:
    _state_file().mkdir(parents=True)
    res = run("launch", "web")
    assert res.code == 1
    line = _one_error_line(res.err)
    assert str(_state_file()) in line and "is a directory" in line and "move it" in line


def test_a_read_only_state_folder(run: Runner, two_sites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _state_file().parent
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the file system say what a read-only one says
        real_open = os.open

        def refuse(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path).startswith(str(folder)):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    try:
        res = run("launch", "web")
    finally:
        folder.chmod(0o700)
    assert res.code == 1
    line = _one_error_line(res.err)
    assert str(folder) in line and "read-only" in line and "SKYCTL_HOME" in line


def test_a_database_another_process_keeps_locked(run: Runner, two_sites: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "web").code == 0  # the state file exists
    monkeypatch.setattr(state_mod, "BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(_state_file(), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        res = run("launch", "db")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.code == 1
    line = _one_error_line(res.err)
    assert str(_state_file()) in line and "locked" in line and "try again" in line


def test_a_file_that_is_not_a_database(run: Runner, two_sites: Path) -> None:
    _state_file().parent.mkdir(parents=True)
    _state_file().write_text("not sqlite at all, just some text that is long enough " * 20)
    res = run("launch", "web")
    assert res.code == 1
    line = _one_error_line(res.err)
    assert str(_state_file()) in line and "unusable" in line
