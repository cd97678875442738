"""Two people who both call a group `web` on the same clouds never touch each other's nodes;
`ps --all-owners` shows everyone's; an emptied state does not change who you are."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _on_clouds() -> dict[str, str]:
    """cloud id -> owner label, read on the clouds directly."""
    return {n.id: n.labels.get("owner", "") for site in memdriver.CLOUDS.values() for n, _ in site.nodes.values()}


def _names() -> list[str]:
    return sorted(n.name for site in memdriver.CLOUDS.values() for n, _ in site.nodes.values())


@pytest.fixture
def as_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Become `who`: their own installation (SKYCTL_HOME) and their own cloud credentials."""
    def become(who: str) -> None:
        home = tmp_path / who
        home.mkdir(exist_ok=True)
        data = federation(home={"driver": "memory", "tier": "local", "instances": 4, "user": who},
                          cc={"driver": "memory", "tier": "remote", "instances": 8, "user": who})
        (home / "sky.yaml").write_text(yaml.safe_dump(data))
        monkeypatch.setenv("SKYCTL_HOME", str(home))
        monkeypatch.setenv("SKYCTL_CONFIG", str(home / "sky.yaml"))
        monkeypatch.delenv("SKYCTL_OWNER", raising=False)

    return become


def test_two_owners_with_the_same_group_name_never_touch_each_other(run: Runner, as_user) -> None:  # type: ignore[no-untyped-def]
    as_user("alice")
    assert run("launch", "web", "--count", "3").code == 0
    as_user("bob")
    assert run("launch", "web", "--count", "3").code == 0
    owners = list(_on_clouds().values())
    assert owners.count("alice") == 3 and owners.count("bob") == 3

    mine = run("ps", "-o", "json").json()
    assert len(mine) == 3 and {n["labels"]["owner"] for n in mine} == {"bob"}
    everyone = run("ps", "--all-owners")
    assert everyone.code == 0 and "OWNER" in everyone.out
    assert everyone.out.count("alice") == 3 and everyone.out.count("bob") == 3

    assert run("scale", "web", "1").code == 0
    assert list(_on_clouds().values()).count("alice") == 3  # bob's scale did not shrink alice's group
    shown = run("show", "web-0", "-o", "json").json()
    assert shown["labels"]["owner"] == "bob"  # no silent pick of alice's web-0
    assert run("delete", "web", "--yes").code == 0
    assert sorted(_on_clouds().values()) == ["alice"] * 3

    as_user("alice")
    res = run("reconcile", "--delete-orphans", "--yes", "-o", "json")
    assert res.code == 0 and res.json()["deleted"] == []
    assert sorted(_on_clouds().values()) == ["alice"] * 3


def test_an_emptied_state_does_not_change_who_you_are(run: Runner, as_user) -> None:  # type: ignore[no-untyped-def]
    as_user("alice")
    assert run("launch", "web", "--count", "2").code == 0
    state = Path(os.environ["SKYCTL_HOME"]) / "state"
    for f in state.glob("state.db*"):
        f.unlink()
    assert len(run("ps", "web", "-o", "json").json()) == 2  # still yours
    assert run("launch", "web", "--count", "1", "--add").code == 0
    assert _names() == ["web-0", "web-1", "web-2"]  # no second web-0


def test_skyctl_owner_names_a_shared_robot_account(run: Runner, as_user,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    as_user("alice")
    monkeypatch.setenv("SKYCTL_OWNER", "ci robot/1")
    assert run("launch", "job", "--count", "1").code == 0
    assert list(_on_clouds().values()) == ["ci_robot_1"]
    as_user("bob")
    monkeypatch.setenv("SKYCTL_OWNER", "ci robot/1")
    assert [n["name"] for n in run("ps", "-o", "json").json()] == ["job-0"]


def test_acting_for_a_colleague_is_said_on_stderr(run: Runner, as_user) -> None:  # type: ignore[no-untyped-def]
    as_user("alice")
    assert run("launch", "web", "--count", "2").code == 0
    as_user("bob")
    assert run("ps", "-o", "json").json() == []
    theirs = run("--owner", "alice", "ps", "-o", "json")
    assert theirs.code == 0 and len(theirs.json()) == 2
    assert "acting for owner alice" in theirs.err
    assert run("--owner", "alice", "delete", "web", "--yes").code == 0
    assert _on_clouds() == {}


def test_a_node_name_that_names_two_nodes_is_an_error_not_a_pick(run: Runner, as_user) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    as_user("alice")
    assert run("launch", "web", "--count", "2").code == 0
    cloud = next(site for site in memdriver.CLOUDS.values() if site.nodes)
    node_id, (node, ctx) = next(iter(cloud.nodes.items()))
    other = next(k for k in cloud.nodes if k != node_id)
    twin = replace(cloud.nodes[other][0], name=node.name, labels={**cloud.nodes[other][0].labels, "name": node.name})
    cloud.nodes[other] = (twin, cloud.nodes[other][1])
    res = run("show", node.name)
    assert res.code == 2 and "names 2 nodes" in res.err
    assert run("delete", node.name, "--yes").code == 2
    assert len(_on_clouds()) == 2
