"""The real `skyctl` as a user runs it, against a sandbox under a private SKYCTL_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SKYCTL = str(Path(sys.executable).with_name("skyctl"))


class SkyCli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
        self.env.update(SKYCTL_HOME=str(home), NO_COLOR="1", HOME=str(home / "user"))
        (home / "user").mkdir(exist_ok=True)

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode in ok, f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr or "--debug" in args, proc.stderr
        return proc

    def json(self, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        return json.loads(self.run(*args, "-o", "json", ok=ok).stdout)

    def nodes(self, group: str | None = None) -> list[dict[str, Any]]:
        return self.json("ps", *([group] if group else []))

    def sites_of(self, group: str) -> Counter[str]:
        return Counter(n["site"] for n in self.nodes(group))

    def clear_faults(self) -> None:
        for site in ("home", "cc", "sara"):
            self.run("sandbox", "fault", site, "--latency", "0", "--error-rate", "0", "--up")

    def wipe(self) -> None:
        groups = sorted({n["group"] for n in self.nodes() if n["group"]})
        if groups:
            self.run("delete", *groups, "--yes")
        assert self.nodes() == []


@contextmanager
def sandbox(home: Path, boot_delay: float) -> Iterator[SkyCli]:
    """`skyctl sandbox up` for the block, `down` after it whatever happens."""
    sky = SkyCli(home)
    sky.run("sandbox", "up", "--boot-delay", str(boot_delay))
    try:
        yield sky
    finally:
        sky.run("sandbox", "down", ok=(0, 1))
