"""A demand-driven group on the sandbox, as an admin runs it: a demand script reports pending
cores (as a batch system would), `burst run` grows the group at home first then on the
cheapest remote site, `burst status` says why, and when the work is done the idle burst nodes
are drained (drain_command) and deleted."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing.cli import SkyCli


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory, skyctl_sandbox: Any) -> Iterator[SkyCli]:
    with skyctl_sandbox(tmp_path_factory.mktemp("demand-home"), boot_delay=0.1) as s:
        yield s


def test_pending_cores_grow_the_group_and_idle_burst_nodes_drain_away(sky: SkyCli, tmp_path: Path) -> None:
    demand = tmp_path / "demand.json"
    script = tmp_path / "pending-cores"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write(open({str(demand)!r}).read())\n")
    script.chmod(0o755)
    drained = tmp_path / "drained.log"
    drain = tmp_path / "drain"
    drain.write_text(f"#!{sys.executable}\nimport sys\nopen({str(drained)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    drain.chmod(0o755)

    fed = yaml.safe_load((sky.home / "state" / "sandbox" / "sky.yaml").read_text())
    fed["bursting"] = [{"name": "batch", "from": ["home"], "to": ["cc", "sara"], "order": "cost",
                        "groups": {"work": {"max": 12}},
                        "demand": {"command": str(script), "every": "10s", "max_starting_per_site": 8},
                        "drain_command": f"{drain} {{node}} {{site}}"}]
    config = tmp_path / "demand.yaml"
    config.write_text(yaml.safe_dump(fed, sort_keys=False))
    sky.env["SKYCTL_CONFIG"] = str(config)
    home = 8   # the sandbox's home holds 8 instances (README)

    sky.run("launch", "work", "--count", "1", "--site", "home", "--size", "small")
    demand.write_text(json.dumps({"pending_cores": home + 2}))   # 1 core per small node
    status = sky.json("burst", "status")["demand"][0]["decision"]
    assert status["target"] == home + 2 + 1 and status["grow"] == {"home": home - 1, "cc": 3}, status
    assert status["reasons"][0] == f"{home + 2} pending core(s) / 1 per node = {home + 2} node(s)"

    tick = sky.json("burst", "run")
    assert tick["demand"][0]["error"] is None and len(tick["demand"][0]["created"]) == home + 2
    nodes = sky.nodes("work")
    assert Counter(n["site"] for n in nodes) == {"home": home, "cc": 3}

    # The work is done: every node is idle; the burst nodes leave, home keeps its nodes up to
    # the idle ceiling (0 here: all idle nodes beyond pending work go, remote first).
    cc_nodes = sorted(n["name"] for n in nodes if n["site"] == "cc")
    demand.write_text(json.dumps({"pending_cores": 0, "idle_nodes": cc_nodes}))
    tick = sky.json("burst", "run")
    assert sorted(tick["demand"][0]["deleted"]) == cc_nodes
    assert sorted(drained.read_text().splitlines()) == [f"{n} cc" for n in cc_nodes]
    demand.write_text("not json")
    bad = sky.run("burst", "run", ok=(3,))
    assert "bursting rule batch: demand command" in bad.stderr and "printed no JSON" in bad.stderr
    assert sky.sites_of("work") == {"home": home}
