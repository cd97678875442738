"""Running skyctl's CLI from tests: what one in-process run gives (`Result`, `Runner`; skyctl's
own tests run it through fixtures, since nothing in this package imports the CLI), the installed
`skyctl` executable under a private SKYCTL_HOME (`SkyCli`), and `federation`, a minimal
federation document around the sites a test names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The executable installed next to this interpreter, as a user's shell finds it.
SKYCTL = str(Path(sys.executable).with_name("skyctl"))


@dataclass
class Result:
    """One in-process run of the CLI: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]  # runner("ps", "-o", "json") -> Result


def federation(**sites: dict[str, Any]) -> dict[str, Any]:
    """A federation document with these sites, image `alma9` on each, sizes small/large and
    defaults. SSH readiness checks are off unless a site sets them: the memory driver's nodes
    have no SSH, so --wait means running."""
    for site in sites.values():
        site.setdefault("ssh", {"check_ready": False})
    return {
        "sites": sites,
        "images": {"alma9": {name: "alma9" for name in sites}},
        "sizes": {"small": {"cpus": 1, "memory": "2GiB"}, "large": {"cpus": 4, "memory": "8GiB"}},
        "defaults": {"image": "alma9", "size": "small", "contexts": ["base"]},
    }


class SkyCli:
    """The installed `skyctl` as a user runs it: SKYCTL_HOME=`home`, HOME below it, and no
    SKYCTL_*, OS_* or ONE_* variables from the caller's shell."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
        self.env.update(SKYCTL_HOME=str(home), NO_COLOR="1", HOME=str(home / "user"))
        (home / "user").mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode in ok, f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr or "--debug" in args, proc.stderr
        return proc

    def json(self, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        return json.loads(self.run(*args, "-o", "json", ok=ok).stdout)

    def nodes(self, group: str | None = None) -> list[dict[str, Any]]:
        return self.json("ps", *([group] if group else []))

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The running sandbox's control channel, from this process (what `skyctl sandbox
        status/fault` call): cheap enough for a tight loop, where the CLI would start a Python
        process per look."""
        import urllib.request

        runtime = json.loads((self.home / "state" / "sandbox" / "runtime.json").read_text())
        control = runtime["control"]
        req = urllib.request.Request(control["url"] + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {control['token']}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def live(self, site: str) -> dict[str, Any]:
        """One sandbox site's live counters: vms, ready, creates_held, creates_in_progress, faults."""
        return next(s for s in self._control("GET", "/v1/status")["sites"] if s["name"] == site)

    def fault(self, site: str, **change: Any) -> None:
        """`skyctl sandbox fault SITE` in this process: latency_ms, error_rate, down, boot_delay,
        hold_creates_after (-1 releases held creates)."""
        self._control("POST", f"/v1/faults/{site}", change)

    def sites_of(self, group: str) -> Counter[str]:
        return Counter(n["site"] for n in self.nodes(group))

    def wipe(self) -> None:
        """Delete every group; nothing may be left."""
        groups = sorted({n["group"] for n in self.nodes() if n["group"]})
        if groups:
            self.run("delete", *groups, "--yes")
        assert self.nodes() == []
