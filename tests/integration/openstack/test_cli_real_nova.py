"""`skyctl launch / ps / delete` end to end on real Nova, quota exhaustion included.

The installed `skyctl` script runs as a subprocess, as a user's shell would run it, with its own
SKYCTL_HOME and a federation file naming one OpenStack site backed by the real cloud. What
skyctl claims is checked against what Nova itself reports (raw JSON, admin-independent).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.polling import iterate_timeout
from skyctl.testing.cli import SKYCTL

pytestmark = pytest.mark.integration

SITE = "nova"
EXIT_PARTIAL = 3


@dataclass
class Sky:
    home: Path
    config: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # Only what this test sets: no OS_* or SKYCTL_* from the caller's shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
        env.update(SKYCTL_HOME=str(self.home), SKYCTL_CONFIG=str(self.config), HOME=str(self.home / "user"),
                   NO_COLOR="1")
        return subprocess.run([SKYCTL, *args], env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)


def _federation(real: Any, network: str, max_parallel: int) -> dict[str, Any]:
    return {
        "sites": {SITE: {"driver": "openstack", "tier": "local", "cloud": real.cloud,
                         "clouds_yaml": str(real.clouds_yaml), "network": network,
                         "max_parallel": max_parallel}},
        "images": {"cirros": {SITE: real.image}},
        "sizes": {"tiny": {"cpus": 1, "memory": "512MiB"}},
        "defaults": {"contexts": ["base"]},
    }


@pytest.fixture
def make_sky(tmp_path: Path) -> Callable[..., Sky]:
    def make(real: Any, *, network: str = "none", max_parallel: int = 8) -> Sky:
        home = tmp_path / "home"
        (home / "user").mkdir(parents=True, exist_ok=True)
        config = tmp_path / "sky.yaml"
        config.write_text(yaml.safe_dump(_federation(real, network, max_parallel)), encoding="utf-8")
        return Sky(home, config)

    return make


@pytest.fixture
def group(real_cloud: Any) -> Iterator[str]:
    """A fresh group name; whatever of it is left on Nova afterwards is deleted."""
    name = f"it-{uuid.uuid4().hex[:8]}"
    yield name
    for s in _group_on_nova(real_cloud, name):
        real_cloud.conn.compute.delete_server(s["id"], ignore_missing=True)
    _wait_group_gone(real_cloud, name)


def _group_on_nova(real: Any, group: str) -> list[dict[str, Any]]:
    return real.servers(tags=f"skyctl,skyctl-group={group}")


def _wait_group_gone(real: Any, group: str) -> None:
    for _ in iterate_timeout(120, f"Nova to delete the servers of group {group}", interval=0.5):
        if not _group_on_nova(real, group):
            return


def _settled(real: Any, group: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The group's servers on Nova once none is still building (possibly none at all)."""
    deadline = time.monotonic() + timeout
    while True:
        servers = _group_on_nova(real, group)
        if all(s["status"] != "BUILD" for s in servers):
            return servers
        assert time.monotonic() < deadline, f"servers of {group} still building"
        time.sleep(0.5)


def _quota_named(text: str) -> bool:
    low = text.lower()
    return "quota" in low and "instances" in low


# ---------------------------------------------------------------- launch / ps / delete


def test_launch_ps_delete_on_real_nova(real_cloud: Any, make_sky: Callable[..., Sky], group: str) -> None:
    sky = make_sky(real_cloud, network=real_cloud.network)
    launched = sky.run("launch", group, "--count", "2", "--image", "cirros", "--size", real_cloud.flavor,
                       "--site", SITE, "-o", "json")
    assert launched.returncode == 0, launched.stderr
    result = json.loads(launched.stdout)
    assert result["created"] == 2 and result["missing"] == 0
    made = {n["id"]: n for n in result["nodes"]}
    assert sorted(n["name"] for n in made.values()) == [f"{group}-0", f"{group}-1"]

    # Nova itself holds skyctl's labels: tags to filter on, metadata for the rest.
    on_nova = _group_on_nova(real_cloud, group)
    assert {s["id"] for s in on_nova} == set(made)
    launch_id = made[next(iter(made))]["labels"]["launch"]
    for s in on_nova:
        assert {"skyctl", f"skyctl-group={group}", f"skyctl-launch={launch_id}"} <= set(s["tags"])
        md = s["metadata"]
        assert md["skyctl:group"] == group and md["skyctl:launch"] == launch_id
        assert md["skyctl:name"] == s["name"] and md["skyctl:index"] in {"0", "1"}
        assert md["skyctl:owner"]
        assert s["flavor"]["original_name"] == real_cloud.flavor

    def running() -> list[dict[str, Any]] | None:
        shown = sky.run("ps", group, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        nodes = json.loads(shown.stdout)
        return nodes if len(nodes) == 2 and all(n["state"] == "running" for n in nodes) else None

    for _ in iterate_timeout(120, "ps to show both nodes running", interval=0.5):
        if nodes := running():
            break
    assert {n["id"] for n in nodes} == set(made)
    for n in nodes:
        assert n["site"] == SITE and n["driver"] == "openstack" and n["group"] == group
        assert n["labels"]["group"] == group and n["labels"]["launch"] == launch_id
        assert n["labels"]["name"] == n["name"]
        assert n["addresses"], "a port on the seeded network gives each server an address"
    assert all(s["status"] == "ACTIVE" for s in _group_on_nova(real_cloud, group))

    gone = sky.run("delete", group, "--yes", "-o", "json")
    assert gone.returncode == 0, gone.stderr
    assert {d["id"] for d in json.loads(gone.stdout)} == set(made)
    _wait_group_gone(real_cloud, group)
    after = sky.run("ps", group, "-o", "json")
    assert after.returncode == 0 and json.loads(after.stdout) == []


# ---------------------------------------------------------------- quota runs out


def _launch_three(real: Any, sky: Sky, group: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    launched = sky.run("launch", group, "--count", "3", "--image", "cirros", "--size", real.flavor,
                       "--site", SITE, "-o", "json")
    assert "Traceback" not in launched.stderr
    return launched, json.loads(launched.stdout) if launched.stdout.strip() else None


def _delete_group(real: Any, sky: Sky, group: str) -> None:
    deleted = sky.run("delete", group, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    _wait_group_gone(real, group)


def _assert_made_exactly_one(real: Any, launched: subprocess.CompletedProcess[str], result: Any,
                             group: str) -> None:
    assert launched.returncode == EXIT_PARTIAL, (launched.returncode, launched.stderr)
    assert result["created"] == 1 and result["missing"] == 2
    # What skyctl says it made is what Nova holds, and nothing half-made (ERROR) is left.
    settled = _settled(real, group)
    assert [s["id"] for s in settled] == [n["id"] for n in result["nodes"]]
    assert [s["status"] for s in settled] == ["ACTIVE"]


@pytest.fixture
def room_for_one_in_project(real_cloud: Any) -> Iterator[None]:
    real_cloud.set_instance_quota(real_cloud.instances_used() + 1)
    yield
    real_cloud.set_instance_quota(None)


@pytest.fixture
def room_for_one_for_user(real_cloud: Any) -> Iterator[None]:
    """The member user's own quota allows one more, while the project's limits (what skyctl plans
    from: Nova's GET /limits reports only the project's) still show room for all three, so the
    quota runs out mid-launch, on Nova's side."""
    real_cloud.set_user_instance_quota(real_cloud.instances_used() + 1)
    limits = real_cloud.conn.compute.get_limits().absolute
    assert limits.instances - limits.instances_used >= 3, "the project itself must still have room"
    yield
    real_cloud.set_user_instance_quota(None)


def test_project_quota_allows_one_more_launch_makes_one_and_exits_3(
        real_cloud: Any, make_sky: Callable[..., Sky], group: str, room_for_one_in_project: None) -> None:
    sky = make_sky(real_cloud)
    launched, result = _launch_three(real_cloud, sky, group)
    _assert_made_exactly_one(real_cloud, launched, result, group)
    _delete_group(real_cloud, sky, group)


def test_project_quota_shortfall_is_named(real_cloud: Any, make_sky: Callable[..., Sky], group: str,
                                          room_for_one_in_project: None) -> None:
    sky = make_sky(real_cloud)
    launched, _ = _launch_three(real_cloud, sky, group)
    try:
        assert launched.returncode == EXIT_PARTIAL, launched.stderr
        assert _quota_named(launched.stderr), launched.stderr
    finally:
        _delete_group(real_cloud, sky, group)


def test_quota_runs_out_mid_launch_makes_one_and_exits_3(
        real_cloud: Any, make_sky: Callable[..., Sky], group: str, room_for_one_for_user: None) -> None:
    # One create at a time. When the first is in Nova's cell database before the second is
    # sent, Nova refuses the second at once with 403 "Quota exceeded for instances"; when not,
    # the second is accepted and fails in ERROR (413 fault) a moment later. Either way skyctl
    # must end with exactly one server, exit 3 and name the quota.
    sky = make_sky(real_cloud, max_parallel=1)
    launched, result = _launch_three(real_cloud, sky, group)
    assert _quota_named(launched.stderr), launched.stderr
    _assert_made_exactly_one(real_cloud, launched, result, group)
    _delete_group(real_cloud, sky, group)


def test_quota_runs_out_mid_launch_with_parallel_creates(
        real_cloud: Any, make_sky: Callable[..., Sky], group: str, room_for_one_for_user: None) -> None:
    sky = make_sky(real_cloud)   # the default: creates go out in parallel
    launched, result = _launch_three(real_cloud, sky, group)
    try:
        # Nova may refuse all three (each recheck sees the others): 0 or 1 made, never more.
        assert launched.returncode in (EXIT_PARTIAL, 4), (launched.returncode, launched.stderr)
        assert _quota_named(launched.stderr), launched.stderr
        settled = _settled(real_cloud, group)
        assert all(s["status"] == "ACTIVE" for s in settled)
        created = result["created"] if result else 0
        assert created == len(settled) <= 1
    finally:
        _delete_group(real_cloud, sky, group)
