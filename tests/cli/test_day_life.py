"""Issue 16 items 3 and 9 through the CLI, in process, on the in-memory clouds: stop/start/
reboot where the driver can, ps filters, delete --all (never someone else's), global options
on either side of the command, -v naming the federation file, tables that never split ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation


@pytest.fixture
def sky(two_sites: Path, run: Runner) -> Path:
    assert run("launch", "web", "--count", "3").code == 0   # 2 on home, 1 on cc
    assert run("launch", "db", "--count", "1", "--site", "cc").code == 0
    return two_sites


def test_stop_start_reboot_and_ps_state_filter(run: Runner, sky: Path) -> None:
    res = run("stop", "web-0", "db", "-o", "json")
    assert res.code == 0, res.err
    assert {n["name"]: n["state"] for n in res.json()} == {"web-0": "stopped", "db-0": "stopped"}
    assert [n["name"] for n in run("ps", "--state", "stopped", "-o", "json").json()] == ["db-0", "web-0"]
    assert [n["name"] for n in run("ps", "--state", "running", "--site", "home", "-o", "json").json()] == ["web-1"]
    assert run("stop", "web-0").code == 0  # already stopped: success

    refused = run("reboot", "web-0")  # the cloud's own refusal, one line
    assert refused.code == 1 and "cannot reboot node" in refused.err and refused.err.count("\n") == 1
    assert run("start", "web", "db", "--wait").code == 0
    assert run("ps", "--state", "stopped", "-o", "json").json() == []
    assert run("reboot", "web", "--wait").code == 0
    assert [e[0] for e in memdriver.EVENTS].count("reboot") == 3
    assert run("ps", "--state", "bogus").code == 2


def test_a_site_without_the_capability_is_named_the_others_still_act(run: Runner, sky: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from skyctl.model import Capability

    class NoPower(memdriver.MemoryDriver):
        name = "nopower"
        capabilities = frozenset({Capability.SERVER_SIDE_LABEL_FILTER})

    from skyctl.drivers import registry

    data = yaml.safe_load(sky.read_text())
    data["sites"]["cc"]["driver"] = "nopower"
    sky.write_text(yaml.safe_dump(data))
    registry.register("nopower", NoPower)
    try:
        res = run("stop", "web")
        assert res.code == 3, res.err
        assert "cc: the nopower driver cannot stop nodes" in res.err
        assert sorted(n["name"] for n in run("ps", "--state", "stopped", "-o", "json").json()) == ["web-0", "web-1"]
        only = run("stop", "db")
        assert only.code == 1 and "cannot stop nodes" in only.err
    finally:
        registry.unregister("nopower")


def test_ps_group_filters_combine(run: Runner, sky: Path) -> None:
    both = run("ps", "-g", "web", "-g", "db", "-o", "json").json()
    assert sorted(n["name"] for n in both) == ["db-0", "web-0", "web-1", "web-2"]
    assert [n["name"] for n in run("ps", "--group", "web", "--site", "cc", "-o", "json").json()] == ["web-2"]


def test_delete_all_needs_yes_off_a_terminal_and_spares_other_owners(run: Runner, two_sites: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_OWNER", "alice")
    assert run("launch", "theirs", "--count", "2").code == 0
    monkeypatch.setenv("SKYCTL_OWNER", "bob")
    assert run("launch", "web", "--count", "2").code == 0
    assert run("launch", "db", "--count", "1").code == 0

    refused = run("delete", "--all")
    assert refused.code == 2 and "without --yes" in refused.err
    assert run("delete", "--all", "web").code == 2
    res = run("delete", "--all", "--yes", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(d["name"] for d in res.json()) == ["db-0", "web-0", "web-1"]
    left = sorted((n.name, n.labels["owner"]) for c in memdriver.CLOUDS.values() for n, _ in c.nodes.values())
    assert left == [("theirs-0", "alice"), ("theirs-1", "alice")]
    assert run("ps", "-o", "json").json() == []
    assert "nothing to delete" in run("delete", "--all", "--yes").err


def test_delete_all_on_one_site(run: Runner, sky: Path) -> None:
    res = run("delete", "--all", "--site", "cc", "--yes", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(d["name"] for d in res.json()) == ["db-0", "web-2"]
    assert sorted(n["name"] for n in run("ps", "-o", "json").json()) == ["web-0", "web-1"]


def test_console_log_on_the_memory_cloud(run: Runner, sky: Path) -> None:
    res = run("logs", "web-0")
    assert res.code == 0 and "web-0 login:" in res.out
    assert run("logs", "web-0", "-n", "1").out == "web-0 login: \n"
    assert run("logs", "web").code == 2   # a group is not one node


def test_global_options_before_or_after_the_command(run: Runner, sky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYCTL_CONFIG")
    after = run("ps", "--config", str(sky), "-o", "json", "-v")
    assert after.code == 0, after.err
    assert len(after.json()) == 4
    assert f"federation file: {sky} (given with --config)" in after.err
    before = run("-o", "json", "-c", str(sky), "ps", "web")
    assert before.code == 0 and [n["name"] for n in before.json()] == ["web-0", "web-1", "web-2"]
    monkeypatch.setenv("SKYCTL_CONFIG", str(sky))
    assert f"federation file: {sky} (from SKYCTL_CONFIG)" in run("ps", "-v").err
    assert run("ps", "--debug").code == 0


def test_v_says_when_the_running_sandbox_file_was_chosen(run: Runner, sky: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("SKYCTL_CONFIG")
    sandbox = Path(os.environ["SKYCTL_HOME"]) / "state" / "sandbox"
    sandbox.mkdir(parents=True, exist_ok=True)
    (sandbox / "sky.yaml").write_text(sky.read_text())
    (sandbox / "runtime.json").write_text("{}")
    res = run("-v", "ps", "-o", "json")
    assert res.code == 0, res.err
    assert f"federation file: {sandbox / 'sky.yaml'} (the running sandbox's, as there is no " in res.err


def test_hoisting_leaves_the_node_words_and_command_options_alone() -> None:
    from typer.main import get_command

    from skyctl.cli.main import app, hoist_global_options

    root = get_command(app)
    assert hoist_global_options(root, ["ps", "-v", "--config", "f", "web"]) == ["-v", "--config", "f", "ps", "web"]
    assert hoist_global_options(root, ["-o", "json", "burst", "status"]) == ["burst", "status", "-o", "json"]
    assert hoist_global_options(root, ["-ojson", "exec", "web", "--", "ls", "-v"]) == \
        ["exec", "web", "-ojson", "--", "ls", "-v"]
    assert hoist_global_options(root, ["exec", "web", "--debug", "--", "grep", "-c", "--owner", "x"]) == \
        ["--debug", "exec", "web", "--", "grep", "-c", "--owner", "x"]
    # an option's value that looks like a global option stays the value
    assert hoist_global_options(root, ["launch", "g", "--var", "-v"])[:2] == ["launch", "g"]


@pytest.fixture
def at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout as a terminal 80 columns wide."""
    from rich.console import Console

    from skyctl.cli.terminal import term

    monkeypatch.setattr(term(), "_out", Console(width=80, no_color=True, highlight=False, soft_wrap=False))


def test_ps_at_80_columns_never_splits_an_id(run: Runner, sky: Path, at_80_columns: None) -> None:
    import uuid
    from dataclasses import replace

    ids = []
    for site in ("home", "cc"):
        c = memdriver.cloud(site)
        with c.lock:
            for old, (n, ctx) in list(c.nodes.items()):
                new = str(uuid.uuid4())
                ids.append(new)
                c.nodes[new] = (replace(n, id=new, addresses=("10.254.254.254", "fd00::dead:beef:1")), ctx)
                del c.nodes[old]
    res = run("ps")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), res.out
    for i in ids:
        assert any(i in line for line in lines), f"{i} split:\n{res.out}"


def test_burst_status_groups_identical_reasons(run: Runner, sky_file: Callable[[dict[str, Any]], Path],
                                               at_80_columns: None) -> None:
    data = federation(home={"driver": "memory", "tier": "local", "instances": 2},
                      cc={"driver": "memory", "tier": "remote", "cost": 1, "instances": 12})
    data["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc"], "home": {"max_moves": 1}}]
    sky_file(data)
    assert run("launch", "pin", "--count", "2", "--site", "home").code == 0
    assert run("launch", "batch", "--count", "8").code == 0   # all on cc: home is full
    reasons = run("burst", "status", "-o", "json").json()["rules"][0]["reasons"]
    assert len(reasons) >= 8                                  # the document keeps one per node
    table = run("burst", "status").out
    why = reasons[0].partition(": ")[2]
    assert table.count(why.split()[0]) <= 2, table
    assert "(+5 more)" in table and "batch-0, batch-1, batch-2" in table, table
    assert all(len(line.rstrip()) <= 80 for line in table.splitlines()), table


def test_ssh_forward_specs_and_options_are_checked_before_anything_runs(run: Runner, sky: Path) -> None:
    bad = run("ssh", "web-0", "-L", "not-a-spec")
    assert bad.code == 2 and "expected [BIND:]PORT:HOST:HOSTPORT" in bad.err
    assert "expected [BIND:]PORT:HOST:HOSTPORT" in run("ssh", "web-0", "-R", "-oProxyCommand=x:1:h:2").err
    opt = run("ssh", "web-0", "--ssh-option", "-oProxyCommand")
    assert opt.code == 2 and "expected KEY=VALUE" in opt.err
    assert run("ssh", "web-0", "-N", "--", "uptime").code == 2


def test_delete_all_asks_on_a_terminal_naming_every_node(run: Runner, sky: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from skyctl.cli.terminal import Terminal

    asked: list[str] = []
    answer = [False]
    monkeypatch.setattr(Terminal, "interactive", property(lambda self: True))
    monkeypatch.setattr(Terminal, "confirm", lambda self, q: asked.append(q) or answer[0])
    no = run("delete", "--all")
    assert no.code == 1 and len(run("ps", "-o", "json").json()) == 4   # said no: nothing deleted
    assert asked == ["Delete 4 node(s): db-0, web-0, web-1, web-2?"]
    answer[0] = True
    assert run("delete", "--all").code == 0
    assert run("ps", "-o", "json").json() == []
