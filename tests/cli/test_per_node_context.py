"""A profile that uses `{{ node.name }}` (the example of docs/contexts.md, read from the docs
themselves) works on every path that creates nodes: launch, launch --dry-run, plan, scale, a
move home and Slurm resume; each node receives its own name."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation

DOCS = Path(__file__).resolve().parents[2] / "docs" / "contexts.md"


@pytest.fixture
def documented_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The profile under 'The profile format' in docs/contexts.md, as a file, its secret set."""
    text = DOCS.read_text()
    section = text[text.index("## The profile format"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    doc = yaml.safe_load(block.group(1))
    assert doc["hostname"] == "{{ node.name }}"  # the per-node part this file is about
    path = tmp_path / "documented.yaml"
    path.write_text(block.group(1))
    monkeypatch.setenv("SKYCTL_VAR_pool_token", "tok-secret-1234")
    return str(path)


def _received_hostnames() -> dict[str, str]:
    """node name -> the hostname its cloud-init user-data sets, for every node on every cloud."""
    out: dict[str, str] = {}
    for c in memdriver.CLOUDS.values():
        for node, ctx in c.nodes.values():
            found = re.search(r"^hostname: ['\"]?([^'\"\n]+)", ctx.user_data, re.MULTILINE)
            assert found, ctx.user_data
            out[node.name] = found.group(1)
    return out


def _fed(sky_file: Callable[[dict[str, Any]], Path], profile: str, tmp_path: Path, **extra: Any) -> None:
    doc = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                     cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8})
    doc["defaults"]["contexts"] = [profile]
    doc.update(extra)
    sky_file(doc)


VARS = ("--var", "central_manager=cm.example")


def test_launch_plan_and_scale_the_documented_per_node_profile(
        run: Runner, sky_file: Any, documented_profile: str, tmp_path: Path) -> None:
    _fed(sky_file, documented_profile, tmp_path)
    assert run("context", "validate", documented_profile).code == 0
    dry = run("launch", "web", "--count", "3", "--context", documented_profile, *VARS, "--dry-run")
    assert dry.code == 0, dry.err
    assert "undefined variable" not in dry.err
    plan = run("plan", "web", "--count", "3", "-o", "json")
    assert plan.code == 0, plan.err
    assert plan.json()["placed"] == 3
    res = run("launch", "web", "--count", "3", "--context", documented_profile, *VARS, "-o", "json")
    assert res.code == 0, res.err
    assert _received_hostnames() == {"web-0": "web-0", "web-1": "web-1", "web-2": "web-2"}
    # scale rebuilds the context from the group's spec (the secret again from SKYCTL_VAR_pool_token)
    grown = run("scale", "web", "4")
    assert grown.code == 0, grown.err
    assert _received_hostnames()["web-3"] == "web-3"


def test_a_move_home_gives_the_replacement_its_own_name(
        run: Runner, sky_file: Any, documented_profile: str, tmp_path: Path) -> None:
    _fed(sky_file, documented_profile, tmp_path,
         bursting=[{"name": "overflow", "from": ["home"], "to": ["cc"], "home": {"cooldown": "0s"}}])
    assert run("launch", "pin", "--count", "2", "--site", "home", "--context", "base").code == 0
    res = run("launch", "g", "--count", "1", "--context", documented_profile, *VARS, "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["nodes"][0]["site"] == "cc"
    assert run("delete", "pin", "--yes").code == 0
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    (action,) = tick.json()["actions"]
    assert action["ok"], action
    new = action["new_node"]
    assert _received_hostnames()[new] == new


def test_slurm_resume_renders_each_node_with_its_slurm_name(
        run: Runner, sky_file: Any, documented_profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_SCONTROL", "/bin/true")
    _fed(sky_file, documented_profile, tmp_path,
         slurm={"groups": {"skyb": {"nodes": "sky-[1-4]", "partition": "sky", "contexts": [documented_profile],
                                    "variables": {"central_manager": "cm.example"}}},
                "log": str(tmp_path / "slurm.log"), "programs_dir": str(tmp_path / "progs")})
    r = run("slurm", "resume", "--wait", "sky-[1-3]")
    assert r.code == 0, r.err
    assert _received_hostnames() == {"sky-1": "sky-1", "sky-2": "sky-2", "sky-3": "sky-3"}
