"""Fuzzing drill: thousands of generated federation files, --var values, context profiles and
command lines. skyctl must never show a traceback or an internal error; bad input exits 2 with
the field or option named."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyctl.cli.main import main
from skyctl.drivers import registry
from skyctl.testing import memory as memdriver

pytestmark = pytest.mark.drill
SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
PATH_IN_ERROR = re.compile(r"error: .*(\w+(\.\w+|\[\d+\])*: |--\w+|'\w+')")


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code: Any = 0
        except SystemExit as e:
            code = e.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert code in (0, 1, 2, 3, 4, 5), (code, err)


@pytest.fixture(autouse=True)
def _memory() -> Any:
    registry.register("memory", memdriver.MemoryDriver)
    memdriver.reset()
    yield
    registry.unregister("memory")


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["memory", "local", "remote", "2GiB", "-1", "5m", "90%"]))
keys = st.sampled_from(["sites", "images", "sizes", "defaults", "bursting", "driver", "tier", "cost", "home", "cc",
                        "instances", "cpus", "memory", "image", "size", "contexts", "name", "from", "to",
                        "overflow", "keep_free_cores", "max_utilisation", "home", "cooldown", "max_moves",
                        "groups", "min", "max", "ssh", "port", "max_parallel", "alma9", "password", "order"]) | \
    st.text(min_size=1, max_size=8)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=25)


def _valid_base() -> dict[str, Any]:
    return {"sites": {"home": {"driver": "memory", "tier": "local"}, "cc": {"driver": "memory", "cost": 1}},
            "images": {"alma9": {"home": "alma9", "cc": "alma9"}},
            "sizes": {"small": {"cpus": 1, "memory": "2GiB"}},
            "defaults": {"image": "alma9", "size": "small"}}


@SETTINGS
@given(doc=documents)
def test_random_federation_documents(doc: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fz") / "sky.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = cli("--config", str(path), "plan", "g", "--count", "2")
    assert_clean(code, err)
    if code == 2:
        assert err.startswith("error: ") and str(path) in err


@SETTINGS
@given(where=st.sampled_from(["sites.home", "sites.cc", "sizes.small", "defaults", "images.alma9"]),
       key=keys, value=documents)
def test_mutated_valid_federation(where: str, key: str, value: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    doc = _valid_base()
    node = doc
    for part in where.split("."):
        node = node[part]
    node[key] = value
    path = tmp_path_factory.mktemp("fz") / "sky.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = cli("--config", str(path), "plan", "g")
    assert_clean(code, err)
    if code == 2:
        assert PATH_IN_ERROR.search(err), err


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_federation_file(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fz") / "sky.yaml"
    path.write_text(text)
    code, _, err = cli("--config", str(path), "sites")
    assert_clean(code, err)
    assert code in (0, 2)


@SETTINGS
@given(name=st.text(max_size=10), value=st.text(max_size=60), profile=st.sampled_from(
    ["base", "jupyter", "htcondor-worker", "cvmfs-client", "docker-host"]))
def test_var_values_render_or_fail_cleanly(name: str, value: str, profile: str) -> None:
    code, out, err = cli("context", "render", profile, "--for", "opennebula", "--var", f"{name}={value}", "-o", "json")
    assert_clean(code, err)
    assert code in (0, 2)
    if code == 2:
        assert "error:" in err


@SETTINGS
@given(doc=documents)
def test_random_context_profiles(doc: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fz") / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = cli("context", "validate", str(path))
    assert_clean(code, err)
    assert code in (0, 2)


TOKENS = ["sites", "launch", "plan", "ps", "show", "delete", "scale", "reconcile", "burst", "run", "status",
          "context", "render", "show", "list", "-o", "json", "yaml", "xml", "--count", "-n", "0", "3", "-1",
          "--image", "alma9", "--size", "small", "--cpus", "--memory", "2GiB", "--site", "home", "mars",
          "--var", "x=1", "--dry-run", "--yes", "--all", "--wait", "--for", "openstack", "g", "Bad Name",
          "--", "--help", "-v", "--no-color"]


@SETTINGS
@given(args=st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=7))
def test_random_command_lines(args: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fz") / "sky.yaml"
    path.write_text(yaml.safe_dump(_valid_base()))
    memdriver.reset()
    code, _, err = cli("--config", str(path), *args)
    assert_clean(code, err)
