"""Run the CLI in-process against the in-memory driver (its clouds live in this process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """`skyctl ARGS` in this process: its exit code, stdout and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    cap = capsys.readouterr()
    code = info.value.code
    return Result(code if isinstance(code, int) else (0 if code is None else 1), cap.out, cap.err)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], memory_driver: None) -> Runner:
    return lambda *args: invoke(capsys, *args)


def federation(**sites: dict[str, Any]) -> dict[str, Any]:
    for site in sites.values():  # memory nodes have no SSH: --wait means running
        site.setdefault("ssh", {"check_ready": False})
    return {
        "sites": sites,
        "images": {"alma9": {name: "alma9" for name in sites}},
        "sizes": {"small": {"cpus": 1, "memory": "2GiB"}, "large": {"cpus": 4, "memory": "8GiB"}},
        "defaults": {"image": "alma9", "size": "small", "contexts": ["base"]},
    }


@pytest.fixture
def sky_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Path]:
    """Write a federation file and point SKYCTL_CONFIG at it."""

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / "sky.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("SKYCTL_CONFIG", str(path))
        return path

    return write


@pytest.fixture
def two_sites(sky_file: Callable[[dict[str, Any]], Path]) -> Path:
    """home (local, 2 instances) and cc (remote, 8 instances)."""
    return sky_file(federation(
        home={"driver": "memory", "tier": "local", "instances": 2},
        cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
    ))
