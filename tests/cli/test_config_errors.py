"""Bad federation files: exit 2, one line naming the file and the field path, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.testing.cli import Runner, federation


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_file_names_it_and_says_how_to_fix(run: Runner, tmp_path: Path) -> None:
    res = run("--config", str(tmp_path / "nope.yaml"), "ps")
    assert res.code == 2
    line = _one_error_line(res.err)
    assert "nope.yaml" in line and "skyctl sandbox up" in line


def test_invalid_yaml_names_line_and_column(run: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "sky.yaml"
    bad.write_text("sites:\n  home: {driver: memory\n")
    res = run("--config", str(bad), "ps")
    assert res.code == 2
    line = _one_error_line(res.err)
    assert f"{bad}:" in line


@pytest.mark.parametrize(
    ("site", "path"),
    [
        ({"driver": "nosuch"}, "sites.home.driver"),
        ({"tier": "local"}, "sites.home.driver"),
        ({"driver": "memory", "tier": "nearby"}, "sites.home.tier"),
        ({"driver": "memory", "cost": -1}, "sites.home.cost"),
        ({"driver": "memory", "instances": "many"}, "sites.home.instances"),
        ({"driver": "memory", "bogus": 1}, "sites.home.bogus"),
        ({"driver": "memory", "password": "hunter2"}, "sites.home.password"),
    ],
)
def test_field_errors_name_the_path(run: Runner, sky_file, site: dict, path: str) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home=site))
    res = run("sites")
    assert res.code == 2, res.err
    line = _one_error_line(res.err)
    assert f"{path}:" in line
    assert "hunter2" not in res.err + res.out


def test_unknown_driver_lists_installed_ones(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "nosuch"}))
    res = run("ps")
    assert res.code == 2
    assert "unknown driver 'nosuch'" in res.err and "memory" in res.err


def test_image_mapped_to_unknown_site(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    data = federation(home={"driver": "memory"})
    data["images"]["alma9"]["elsewhere"] = "x"
    sky_file(data)
    res = run("ps")
    assert res.code == 2
    assert "images.alma9.elsewhere:" in res.err


def test_debug_shows_the_traceback(run: Runner, tmp_path: Path) -> None:
    res = run("--debug", "--config", str(tmp_path / "nope.yaml"), "ps")
    assert res.code == 2
    assert "Traceback" in res.err
