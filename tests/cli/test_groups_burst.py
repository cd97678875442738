"""scale, reconcile and burst on the in-memory driver, through the CLI."""

from __future__ import annotations

from typing import Any

from skyctl.site import SiteConfig
from skyctl.model import Flavor, ImageRef, NodeSpec, RenderedContext, node_labels
from skyctl.state import State
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


def _sites(nodes: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in nodes:
        out[n["site"]] = out.get(n["site"], 0) + 1
    return out


def test_scale_grows_through_placement_and_shrinks_burst_nodes_first(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    assert run("launch", "w", "--count", "2").code == 0
    grown = run("scale", "w", "5", "-o", "json")
    assert grown.code == 0, grown.err
    assert _sites(run("ps", "w", "-o", "json").json()) == {"home": 2, "cc": 3}
    shrunk = run("scale", "w", "3", "-o", "json")
    assert shrunk.code == 0
    assert sorted(n["name"] for n in shrunk.json()["deleted"]) == ["w-3", "w-4"]  # newest burst nodes
    assert _sites(run("ps", "w", "-o", "json").json()) == {"home": 2, "cc": 1}
    assert run("scale", "nosuch", "1").code == 1


def _crashed_create(site: str, group: str, name: str, index: int, owner: str) -> str:
    """A node that a killed skyctl created on the cloud (labels and all) but never recorded."""
    drv = memdriver.MemoryDriver(SiteConfig(name=site, driver="memory", options=memdriver.MemoryOptions()))
    spec = NodeSpec(group=group, site=site, image=ImageRef("img-alma9", "alma9"), flavor=Flavor("f1", "m1.small", 1, 2048),
                    labels=node_labels(group, "l-crashed", owner, index, name))
    return drv.create(spec, name, RenderedContext()).id


def test_reconcile_adopts_forgets_and_reports_orphans(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    assert run("launch", "r", "--count", "2").code == 0
    st = State()
    owner = "memory-user"  # who the memory cloud knows the caller as: the owner label of our nodes
    # The crashed launch: an intent written, the node made on the cloud, nothing recorded.
    st.begin("l-crashed", "create", "r", "r-7", "cc")
    _crashed_create("cc", "r", "r-7", 7, owner)
    # A node of ours whose group this state does not know (its group was lost): an orphan.
    orphan_id = _crashed_create("cc", "lost", "lost-0", 0, owner)
    # Someone else's skyctl: not ours, left alone.
    _crashed_create("cc", "theirs", "theirs-0", 0, "another-install")
    # A recorded node deleted behind skyctl's back.
    gone = next(r for r in st.nodes("r") if r.name == "r-1")
    memdriver.cloud(gone.site).nodes.pop(gone.cloud_id or "")
    st.close()

    res = run("reconcile", "-o", "json")
    assert res.code == 0, res.err
    data = res.json()
    assert data["adopted"] == ["r-7"]
    assert data["forgotten"] == ["r-1"]
    assert data["intents_closed"] == 1
    assert [n["name"] for n in data["orphans"]] == ["lost-0"]
    assert "orphan: lost-0" in res.err

    again = run("reconcile", "-o", "json").json()
    assert again["adopted"] == [] and again["forgotten"] == [] and again["intents_closed"] == 0

    assert run("reconcile", "--delete-orphans").code == 2  # not a terminal: needs --yes
    deleted = run("reconcile", "--delete-orphans", "--yes", "-o", "json").json()
    assert deleted["deleted"] == ["lost-0"]
    assert orphan_id not in memdriver.cloud("cc").nodes
    names = {n for n, _ in [(v[0].name, 0) for v in memdriver.cloud("cc").nodes.values()]}
    assert "theirs-0" in names


def _burst_fed(sky_file, cooldown: str = "0s", max_moves: int = 1) -> None:  # type: ignore[no-untyped-def]
    data = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                      cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
                      sara={"driver": "memory", "tier": "remote", "cost": 2, "instances": 8})
    data["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc", "sara"], "order": "cost",
                         "home": {"cooldown": cooldown, "max_moves": max_moves}}]
    sky_file(data)


def test_burst_moves_load_home_make_before_break(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    _burst_fed(sky_file)
    assert run("launch", "pin", "--count", "2", "--site", "home").code == 0
    res = run("launch", "g1", "--count", "2", "-o", "json")
    assert _sites(res.json()["nodes"]) == {"cc": 2}  # home full: cheapest remote

    status = run("burst", "status", "-o", "json").json()
    assert status["rules"][0]["moves"] == []
    assert "full" in " ".join(status["rules"][0]["reasons"])

    assert run("delete", "pin", "--yes").code == 0
    memdriver.EVENTS.clear()
    tick = run("burst", "run", "-o", "json")
    assert tick.code == 0, tick.err
    actions = tick.json()["actions"]
    assert len(actions) == 1 and actions[0]["ok"] and actions[0]["to"] == "home"  # step: 1 per tick
    # Make-before-break: the replacement exists at home before the remote node goes.
    assert memdriver.EVENTS == [("create", "home", actions[0]["new_node"]), ("delete", "cc", actions[0]["node"])]
    assert _sites(run("ps", "g1", "-o", "json").json()) == {"home": 1, "cc": 1}
    run("burst", "run")
    assert _sites(run("ps", "g1", "-o", "json").json()) == {"home": 2}
    assert run("burst", "run", "-o", "json").json()["actions"] == []


def test_burst_respects_cooldown(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    _burst_fed(sky_file, cooldown="1h")
    run("launch", "pin", "--count", "2", "--site", "home")
    run("launch", "g", "--count", "2")
    run("delete", "pin", "--yes")
    assert len(run("burst", "run", "-o", "json").json()["actions"]) == 1
    second = run("burst", "run", "-o", "json").json()
    assert second["actions"] == []
    assert "cooldown" in " ".join(second["rules"][0]["reasons"])


def test_failed_move_keeps_the_remote_node(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    _burst_fed(sky_file)
    run("launch", "pin", "--count", "2", "--site", "home")
    run("launch", "g", "--count", "1")
    run("delete", "pin", "--yes")
    memdriver.cloud("home").hidden_instance_limit = 0  # home looks free but refuses creates
    res = run("burst", "run", "-o", "json")
    assert res.code == 3
    assert res.json()["actions"][0]["ok"] is False
    assert _sites(run("ps", "g", "-o", "json").json()) == {"cc": 1}
