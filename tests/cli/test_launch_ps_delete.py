"""The CLI contract end to end on the in-memory driver: launch, ps, show, delete, exit codes."""

from __future__ import annotations

import json

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner, federation

NODE_KEYS = {"name", "group", "site", "driver", "id", "state", "addresses", "image", "size", "created_at", "labels"}


def test_help_lists_the_core_commands(run: Runner) -> None:
    res = run("--help")
    assert res.code == 0
    for cmd in ("sites", "launch", "ps", "show", "delete"):
        assert f"  {cmd} " in res.out
    assert "Exit codes" in res.out


def test_version(run: Runner) -> None:
    from skyctl import __version__

    res = run("--version")
    assert res.code == 0 and res.out.strip() == f"skyctl {__version__}"


def test_launch_fills_local_then_bursts_and_ps_shows_one_sky(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    res = run("launch", "web", "--count", "5", "-o", "json")
    assert res.code == 0, res.err
    data = json.loads(res.out)  # stdout holds only JSON
    assert data["created"] == 5 and data["missing"] == 0
    sites = [n["site"] for n in data["nodes"]]
    assert sites.count("home") == 2 and sites.count("cc") == 3
    assert [n["name"] for n in data["nodes"]] == [f"web-{i}" for i in range(5)]
    reasons = {d["site"]: d["reasons"] for d in data["plan"][0]["sites"]}
    assert any("local" in r["text"] and r["code"] == "tier_order" for r in reasons["home"])

    ps = run("ps", "-o", "json")
    assert ps.code == 0
    nodes = ps.json()
    assert len(nodes) == 5 and all(set(n) == NODE_KEYS for n in nodes)
    assert {n["state"] for n in nodes} == {"running"}
    assert all(n["group"] == "web" and n["labels"]["group"] == "web" for n in nodes)

    only_cc = run("ps", "web", "--site", "cc", "-o", "json").json()
    assert {n["site"] for n in only_cc} == {"cc"} and len(only_cc) == 3


def test_show_by_name_and_by_cloud_id(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    node = run("launch", "db", "-o", "json").json()["nodes"][0]
    by_name = run("show", "db-0", "-o", "json")
    assert by_name.code == 0 and by_name.json()["id"] == node["id"]
    by_id = run("show", node["id"], "--site", node["site"], "-o", "yaml")
    assert by_id.code == 0 and f"id: {node['id']}" in by_id.out
    missing = run("show", "db-99")
    assert missing.code == 1 and "db-99" in missing.err and "Traceback" not in missing.err


def test_delete_needs_yes_when_not_a_terminal_then_removes_everything(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    run("launch", "tmp", "--count", "4")
    refused = run("delete", "tmp")
    assert refused.code == 2 and "--yes" in refused.err
    assert len(run("ps", "-o", "json").json()) == 4
    done = run("delete", "tmp", "--yes", "-o", "json")
    assert done.code == 0 and len(done.json()) == 4
    assert run("ps", "-o", "json").json() == []
    assert all(not c.nodes for c in memdriver.CLOUDS.values())


def test_partial_launch_exits_3_and_says_what_is_missing(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 2}))
    res = run("launch", "big", "--count", "3", "-o", "json")
    assert res.code == 3
    assert res.json()["created"] == 2 and res.json()["missing"] == 1
    assert "1 node(s) could not be created" in res.err


def test_no_capacity_anywhere_exits_4_and_creates_nothing(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 0},
                        cc={"driver": "memory", "cores": 2}))
    res = run("launch", "big", "--size", "large")
    assert res.code == 4
    assert "error:" in res.err and "Traceback" not in res.err
    assert all(not c.nodes for c in memdriver.CLOUDS.values())


def test_auth_failure_everywhere_exits_5(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "auth_ok": False}))
    assert run("launch", "x").code == 5
    assert run("ps").code == 5
    assert run("sites").code == 5


def test_quota_running_out_mid_launch_fails_over_with_the_reason(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    # home shows room for 2, but someone else takes one between snapshot and create.
    memdriver.cloud("home").hidden_instance_limit = 1
    res = run("launch", "race", "--count", "4", "-o", "json")
    assert res.code == 0, res.err
    data = res.json()
    sites = sorted(n["site"] for n in data["nodes"])
    assert sites == ["cc", "cc", "cc", "home"]
    assert data["full_sites"]["home"].startswith("Quota exceeded for instances")
    # The site is named once, then the cloud's own words.
    assert "home is full, placing the rest elsewhere: Quota exceeded for instances" in res.err
    assert len(data["plan"]) == 2  # placed again after home filled up
    assert len({n["name"] for n in data["nodes"]}) == 4


def test_one_site_down_ps_answers_with_the_others_and_exits_3(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local"}, cc={"driver": "memory", "down": True}))
    run("launch", "a", "--count", "2", "--site", "home")
    res = run("ps", "-o", "json")
    assert res.code == 3
    assert len(res.json()) == 2
    assert "cc" in res.err


def test_dry_run_and_plan_create_nothing_and_explain(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    for args in (("launch", "p", "--count", "12", "--dry-run"), ("plan", "p", "--count", "12")):
        res = run(*args, "-o", "json")
        assert res.code == 3  # 2 + 8 fit, 12 asked
        plan = res.json()
        assert plan["placed"] == 10 and plan["unplaced"] == 2
        assert {d["site"]: d["count"] for d in plan["sites"]} == {"home": 2, "cc": 8}
    assert all(not c.nodes for c in memdriver.CLOUDS.values())


def test_usage_errors_exit_2(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    assert run("launch", "Bad_Name").code == 2
    res = run("launch", "g", "--image", "nope")
    assert res.code == 2 and "unknown image 'nope'" in res.err
    assert run("launch", "g", "--size", "small", "--cpus", "2").code == 2
    assert run("launch", "g", "--site", "mars").code == 2
    assert run("ps", "-o", "xml").code == 2


def test_site_native_image_and_flavor_when_pinned(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    res = run("launch", "n", "--image", "img-alma9", "--size", "m1.medium", "--site", "cc", "-o", "json")
    assert res.code == 0, res.err
    node = res.json()["nodes"][0]
    assert node["site"] == "cc" and node["size"] == "m1.medium"


def test_sites_reports_capacity(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    run("launch", "s", "--count", "3")
    rows = {r["name"]: r for r in run("sites", "-o", "json").json()}
    assert rows["home"]["capacity"]["instances"] == {"used": 2, "limit": 2}
    assert rows["cc"]["capacity"]["instances"] == {"used": 1, "limit": 8}
    assert rows["home"]["tier"] == "local" and rows["cc"]["reachable"] is True


def test_nodes_in_error_for_lack_of_hosts_fail_over_while_waiting(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    # home's quota says 2, but its hosts take only 1: the second node lands in ERROR.
    memdriver.cloud("home").host_slots = 1
    res = run("launch", "hw", "--count", "3", "--wait", "-o", "json")
    assert res.code == 0, res.err
    data = res.json()
    assert sorted(n["site"] for n in data["nodes"]) == ["cc", "cc", "home"]
    assert {n["state"] for n in data["nodes"]} == {"running"}
    assert "No valid host" in data["full_sites"]["home"]
    # The faulted node was removed from home; nothing is left in error anywhere.
    assert all(n.state.value == "running" for c in memdriver.CLOUDS.values() for n, _ in c.nodes.values())
    assert len(run("ps", "hw", "-o", "json").json()) == 3


def test_no_host_anywhere_exits_4_naming_the_fault(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local"}))
    memdriver.cloud("home").host_slots = 0
    res = run("launch", "e", "--count", "1", "--wait")
    assert res.code == 4  # the only site had no host: nothing could be placed
    assert "No valid host" in res.err


def test_deleting_a_group_whose_nodes_never_came_up_forgets_it(run: Runner, sky_file) -> None:  # type: ignore[no-untyped-def]
    sky_file(federation(home={"driver": "memory", "tier": "local", "instances": 0}))
    assert run("launch", "empty").code == 4
    res = run("delete", "empty", "--yes")
    assert res.code == 0 and "nothing to delete" in res.err
    assert run("delete", "empty", "--yes").code == 1  # now unknown


def test_one_node_failing_flakily_does_not_write_the_site_off(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    # More failures in a row than one node's retries, fewer than the site's allowance.
    memdriver.cloud("home").fail_next_creates = 5
    res = run("launch", "fl", "--count", "2", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(n["site"] for n in res.json()["nodes"]) == ["home", "home"]
    assert "home" not in res.json()["full_sites"]


def test_a_site_that_keeps_failing_is_written_off_and_the_rest_fail_over(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    memdriver.cloud("home").fail_next_creates = 1000
    res = run("launch", "fl", "--count", "3", "-o", "json")
    assert res.code == 0, res.err
    assert sorted(n["site"] for n in res.json()["nodes"]) == ["cc", "cc", "cc"]
    assert "503" in res.json()["full_sites"]["home"]
