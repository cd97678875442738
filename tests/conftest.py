"""Shared fixtures: every test gets its own SKYCTL_HOME. The fixtures themselves (`skyctl_home`,
`memory_driver`, the sandbox sites) come from skyctl's pytest plugin, skyctl.testing.plugin;
the ones here are used by more than one tier:

- `skyctl_cli`: the CLI in this process, `skyctl_cli("ps", "-o", "json")` -> a `Result`.
- `run`: the same with the in-memory driver registered (tiers cli and component).
- `sky_file`: write a federation file and point SKYCTL_CONFIG at it.
- `skyctl_sandbox`: `skyctl sandbox up` run by the installed executable for a block (e2e, drills).

Test modules never import each other or a conftest: what they share lives here, in a tier's
own conftest.py, or in skyctl.testing (tests/unit/test_architecture.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing.cli import Result, Runner, SkyCli


@pytest.fixture(autouse=True)
def skyctl_home(skyctl_home: Path) -> Path:
    return skyctl_home


def _invoke(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    from skyctl.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    cap = capsys.readouterr()
    code = info.value.code
    return Result(code if isinstance(code, int) else (0 if code is None else 1), cap.out, cap.err)


@pytest.fixture
def skyctl_cli(capsys: pytest.CaptureFixture[str]) -> Runner:
    """`skyctl_cli(*args)`: `skyctl ARGS` in this process, its exit code, stdout and stderr."""
    return lambda *args: _invoke(capsys, *args)


@pytest.fixture
def run(skyctl_cli: Runner, memory_driver: None) -> Runner:
    """`run(*args)`: `skyctl ARGS` in this process, the driver `memory` registered."""
    return skyctl_cli


@pytest.fixture
def sky_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Path]:
    """Write a federation file and point SKYCTL_CONFIG at it."""

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / "sky.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("SKYCTL_CONFIG", str(path))
        return path

    return write


@contextmanager
def _sandbox(home: Path, boot_delay: float) -> Iterator[SkyCli]:
    sky = SkyCli(home)
    sky.run("sandbox", "up", "--boot-delay", str(boot_delay))
    try:
        yield sky
    finally:
        sky.run("sandbox", "down", ok=(0, 1))


@pytest.fixture(scope="session")
def skyctl_sandbox() -> Callable[[Path, float], AbstractContextManager[SkyCli]]:
    """`with skyctl_sandbox(home, boot_delay) as sky:` the installed `skyctl` (a `SkyCli` under
    SKYCTL_HOME=home) with `sandbox up` run before the block and `sandbox down` after it,
    whatever happens."""
    return _sandbox
