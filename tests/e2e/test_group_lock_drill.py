"""Two `scale web 5` at once on the same group end with 5 nodes, not 8 (finding 4): the
second waits for the first's group lock, then finds nothing left to do. Two `launch db
--count 3` at once end with 3 (issue 16): each counts the group once it holds the lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

from typing import Any

from skyctl.testing.cli import SKYCTL


def test_two_scales_at_once_end_at_the_size_asked(tmp_path: Path, skyctl_sandbox: Any) -> None:
    (tmp_path / "home").mkdir()
    with skyctl_sandbox(tmp_path / "home", boot_delay=0.05) as sky:
        sky.run("launch", "web", "--count", "2", "--site", "home")
        procs = [subprocess.Popen([SKYCTL, "scale", "web", "5"], env=sky.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
        assert all(code == 0 for code, _ in results), results
        names = sorted(n["name"] for n in sky.nodes("web"))
        assert len(names) == 5, names
        sky.run("delete", "web", "--yes")

        procs = [subprocess.Popen([SKYCTL, "launch", "db", "--count", "3", "--site", "home"], env=sky.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
        assert all(code == 0 for code, _ in results), results
        assert sum("nothing to create" in err for _, err in results) == 1, results
        assert sorted(n["name"] for n in sky.nodes("db")) == ["db-0", "db-1", "db-2"]
        again = sky.json("launch", "db", "--count", "3", "--site", "home")  # a re-run script
        assert again["created"] == 0 and len(again["existing"]) == 3
        sky.run("delete", "db", "--yes")
