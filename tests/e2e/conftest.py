"""Fixtures for the e2e tier: the installed `skyctl` executable run as a subprocess, with its
own SKYCTL_HOME, against the sandbox it starts (`skyctl sandbox up`).

- `skyctl_at(home, *args, check=True)`: one run; with `check`, a non-zero exit fails the test.
- `sandbox_up(home, *up_args)`: a context manager, `sandbox up` before the block and `down`
  after it whatever happens, giving a `Sandbox`: its status document and SDK connections to
  its sites.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from skyctl.testing.cli import SKYCTL


def _run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
    env.update(SKYCTL_HOME=str(home), NO_COLOR="1")
    proc = subprocess.run([SKYCTL, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


class Sandbox:
    """A running sandbox under SKYCTL_HOME=`home`: `status` is `sandbox status -o json`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "state" / "sandbox"
        self.status = json.loads(_run(home, "sandbox", "status", "-o", "json").stdout)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.home, *args, check=check)

    def site(self, name: str) -> dict[str, Any]:
        return next(s for s in self.status["sites"] if s["name"] == name)

    def openstack(self, name: str = "home") -> Any:
        import openstack
        from openstack import config as os_config

        site = self.site(name)
        cloud = os_config.OpenStackConfig(config_files=[site["clouds_yaml"]], vendor_files=[])
        return openstack.connection.Connection(config=cloud.get_one(cloud=site["cloud"]))

    def one(self, name: str = "cc") -> Any:
        import pyone

        site = self.site(name)
        return pyone.OneServer(site["endpoint"], session=Path(site["one_auth"]).read_text().strip())


@contextmanager
def _sandbox_up(home: Path, *up_args: str) -> Iterator[Sandbox]:
    try:
        _run(home, "sandbox", "up", *up_args)
        yield Sandbox(home)
    finally:
        _run(home, "sandbox", "down", check=False)


@pytest.fixture(scope="session")
def skyctl_at() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`skyctl_at(home, *args, check=True)`: the installed `skyctl ARGS` with SKYCTL_HOME=home."""
    return _run


@pytest.fixture(scope="session")
def sandbox_up() -> Callable[..., AbstractContextManager[Sandbox]]:
    """`with sandbox_up(home, *up_args) as sandbox:` a sandbox for the block."""
    return _sandbox_up
