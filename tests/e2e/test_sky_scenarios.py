"""Sky computing on the sandbox's default federation, as an admin would see it (issue: placement,
failover, bursting, moving load home): home (local, 8), cc (remote, cost 1, 16), sara (remote,
cost 2, 32), rule overflow-home with a home policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SKYCTL = str(Path(sys.executable).with_name("skyctl"))


class Sky:
    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
        self.env.update(SKYCTL_HOME=str(home), NO_COLOR="1", HOME=str(home / "user"))
        (home / "user").mkdir(exist_ok=True)

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        return proc

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "-o", "json", code=code).stdout)

    def sites_of(self, group: str) -> Counter[str]:
        return Counter(n["site"] for n in self.json("ps", group))


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sky]:
    s = Sky(tmp_path_factory.mktemp("sky-home"))
    s.run("sandbox", "up", "--boot-delay", "0.2")
    try:
        yield s
    finally:
        s.run("sandbox", "down")


def test_overflow_move_home_and_fill_order(sky: Sky) -> None:
    sky.run("launch", "pin", "--count", "8", "--site", "home")
    plan = sky.json("launch", "g1", "--count", "4", "--dry-run")
    reasons = {d["site"]: " ".join(d["reasons"]) for d in plan["sites"]}
    assert {d["site"]: d["count"] for d in plan["sites"] if d["count"]} == {"cc": 4}
    assert "quota: instances 8/8" in reasons["home"] and "cost 1" in reasons["cc"]

    launched = sky.json("launch", "g1", "--count", "4")
    assert Counter(n["site"] for n in launched["nodes"]) == {"cc": 4}

    sky.run("delete", "pin", "--yes")
    # While the tick runs, g1 must never have fewer than 4 running nodes.
    low: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            running = [n for n in sky.json("ps", "g1") if n["state"] == "running"]
            low.append(len(running))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        tick = sky.json("burst", "run")
    finally:
        done.set()
        watcher.join()
    assert [a["ok"] for a in tick["actions"]] == [True] * 4
    assert sky.sites_of("g1") == {"home": 4}
    assert low and min(low) >= 4, low

    fill = sky.json("launch", "big", "--count", "24")
    order = [n["site"] for n in fill["nodes"]]
    assert Counter(order) == {"home": 4, "cc": 16, "sara": 4}
    assert order == sorted(order, key=["home", "cc", "sara"].index)  # home, then cc, then sara

    more = sky.json("launch", "more", "--count", "30", code=3)
    assert more["created"] == 28 and more["missing"] == 2
    assert Counter(n["site"] for n in more["nodes"]) == {"sara": 28}
    sky.run("launch", "one", "--count", "1", code=4)
