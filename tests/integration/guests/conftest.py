"""The real-guest tier: a sandbox whose VMs boot Debian 12 under QEMU and run real cloud-init.

One module-scoped `fleet`: `sandbox up --guests qemu` on an OpenStack-style site (home) and an
OpenNebula-style one (cc), each with room for two guests (never more than 4 QEMU guests at
once), then four `launch --wait` runs at the same time, one node each, so every boot this tier
pays for happens in one round:

- `osg` on home and `oneg` on cc: `base` plus the test profile `guesttest.yaml` (a user, files,
  commands, a Debian package);
- `dock` on home: `base` plus the built-in `docker-host`;
- `condor` on cc: `base` plus the built-in `htcondor-worker`, which cannot work on Debian 12
  (no htcondor package): its launch must fail with the guest's own error.

The image comes from skyctl's cache (`skyctl sandbox image build`, run by .ci/run before this
tier; built here when missing). Nothing runs at import: collecting this folder in the default
run costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

SKYCTL = str(Path(sys.executable).with_name("skyctl"))
HERE = Path(__file__).parent
LAUNCH_TIMEOUT = 2400.0   # a subprocess guard only; readiness has its own (generous) ready_timeout

# Each launch: group -> (site, contexts, vars). One node each, all four at once.
LAUNCHES: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "osg": ("home", ["base", str(HERE / "guesttest.yaml")], {"greeting": "hello from osg"}),
    "oneg": ("cc", ["base", str(HERE / "guesttest.yaml")], {"greeting": "hello from oneg"}),
    "dock": ("home", ["base", "docker-host"], {}),
    "condor": ("cc", ["base", "htcondor-worker"], {"central_manager": "cm.example.org"}),
}

SPEC = {
    "sites": {
        "sara": None,
        "home": {"quota": {"instances": 2, "cores": 4}},
        "cc": {"quota": {"instances": 2, "cores": 4}, "group_quota": {"instances": 2, "cores": 4}},
    },
}


def guest_cache_dir() -> str:
    """The cache the CI step built the image into (shared by every SKYCTL_HOME of the tier)."""
    explicit = os.environ.get("SKYCTL_CACHE_DIR")
    if explicit:
        return explicit
    import platformdirs

    return platformdirs.user_cache_dir("skyctl")


@dataclass
class Launch:
    group: str
    code: int
    out: str
    err: str
    seconds: float

    def nodes(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.out)
        except ValueError:
            return []
        return data if isinstance(data, list) else data.get("nodes", [])


@dataclass
class Fleet:
    home: Path
    env: dict[str, str]
    launches: dict[str, Launch] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def sh(self, node: str, command: str, check: bool = True) -> str:
        """The command's own stdout (`skyctl ssh NODE -- CMD`: no 'node | ' prefixes)."""
        return self.run("ssh", node, "--", command, check=check).stdout

    def sandbox_status(self) -> dict[str, Any]:
        return json.loads(self.run("sandbox", "status", "-o", "json").stdout)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="skyctl-guests-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
    env.update(SKYCTL_HOME=str(root / "home"), SKYCTL_CACHE_DIR=guest_cache_dir(), NO_COLOR="1",
               HOME=str(root / "user"))
    (root / "user").mkdir()
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    f = Fleet(root / "home", env)
    f.run("sandbox", "image", "build", timeout=3600)   # cached: instant
    f.run("sandbox", "up", "--guests", "qemu", "--spec", str(spec), timeout=300)
    try:
        procs: dict[str, tuple[subprocess.Popen[str], float]] = {}
        for group, (site, contexts, variables) in LAUNCHES.items():
            argv = [SKYCTL, "launch", group, "--site", site, "--image", "alma9", "--size", "small", "--wait",
                    "-o", "json"]
            for c in contexts:
                argv += ["--context", c]
            for k, v in variables.items():
                argv += ["--var", f"{k}={v}"]
            penv = dict(env)
            if group == "condor":
                penv["SKYCTL_VAR_pool_token"] = "eyJhbGciOiJIUzI1NiJ9.sandbox.token"
            procs[group] = (subprocess.Popen(argv, env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True), time.monotonic())
        def finish(group: str) -> Launch:   # each timed on its own, not in the order they are read
            proc, t0 = procs[group]
            out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
            return Launch(group, proc.returncode, out, err, round(time.monotonic() - t0, 1))

        with ThreadPoolExecutor(len(procs)) as pool:
            for launch in pool.map(finish, list(procs)):
                f.launches[launch.group] = launch
        f.status = f.sandbox_status()
        _report(f)
        yield f
    finally:
        f.run("delete", "--yes", "osg", "oneg", "dock", "condor", check=False, timeout=300)
        f.run("sandbox", "down", check=False, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _report(f: Fleet) -> None:
    """What the boots took, for the CI log (and the benchmark's numbers)."""
    timings = {v["name"]: v for v in (f.status.get("guests") or {}).get("vms", [])}
    lines = [f"real guests ({(f.status.get('guests') or {}).get('accel')}):"]
    for group, launch in f.launches.items():
        t = timings.get(f"{group}-0") or {}
        lines.append(f"  {group}: launch --wait exit {launch.code} in {launch.seconds} s; QEMU start to "
                     f"cloud-init finished {t.get('finished_after')} s (guest uptime {t.get('guest_uptime_at_finish')} s)")
    print("\n".join(lines), file=sys.stderr)
