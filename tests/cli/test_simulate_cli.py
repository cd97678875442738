"""`skyctl burst simulate`: the hand-computed trace through the CLI, rule sets side by side,
synthetic traces, plots, and the errors a user can make."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing.cli import Runner, federation

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"


@pytest.fixture
def sim_sky(sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path) -> Path:
    data = federation(
        home={"driver": "memory", "tier": "local", "watts_per_vcpu": 10, "carbon": 100,
              "price": {"per_core_hour": 0.02}},
        cloud={"driver": "memory", "tier": "remote", "watts_per_vcpu": 10, "pue": 1.5, "carbon": 300,
               "price": {"per_core_hour": 0.06}},
    )
    data["bursting"] = [{"name": "r", "from": ["home"], "to": ["cloud"], "home": {"cooldown": "0s"}}]
    (tmp_path / "trace.csv").write_text((FIXTURES / "hand.csv").read_text())
    (tmp_path / "stay.yaml").write_text(yaml.safe_dump({"bursting": [{"name": "stay", "from": ["home"],
                                                                      "to": ["cloud"]}]}))
    return sky_file(data)


def test_the_hand_trace_through_the_cli(run: Runner, sim_sky: Path) -> None:
    res = run("burst", "simulate", str(sim_sky.parent / "trace.csv"), "--capacity", "home=4", "--capacity", "cloud=8",
              "-o", "json")
    assert res.code == 0, res.err
    data = res.json()
    assert data["trace"]["jobs"] == 12 and data["boot_delay_s"] == 60
    (r,) = data["results"]
    assert r["rules"] == "federation" and r["jobs"] == 11 and r["rejected"] == 1
    assert r["cost"] == pytest.approx(332 / 60 * 0.02 + 387 / 60 * 0.06, abs=1e-4)
    assert r["mean_wait_s"] == pytest.approx(49 * 60 / 11, abs=1e-3) and r["p95_wait_s"] == 27 * 60
    assert (r["boots"], r["moves_home"]) == (29, 5)
    assert r["sites"]["cloud"]["utilisation"] == pytest.approx(387 / (8 * 151), abs=1e-4)


def test_rule_sets_side_by_side_in_a_table(run: Runner, sim_sky: Path) -> None:
    folder = sim_sky.parent
    res = run("burst", "simulate", str(folder / "trace.csv"), "--capacity", "home=4", "--capacity", "cloud=8",
              "--rules", str(folder / "stay.yaml"), "--rules", str(sim_sky))
    assert res.code == 0, res.err
    rows = {line.split()[0]: line.split() for line in res.out.splitlines()[2:] if line.strip()}
    assert set(rows) == {"stay", "sky"}
    assert "11 (+1 too big)" in res.out
    assert rows["stay"][-6:-4] == ["23", "0"] and rows["sky"][-6:-4] == ["29", "5"]  # boots, moves home


def test_a_synthetic_trace_is_reproducible(run: Runner, sim_sky: Path) -> None:
    args = ("burst", "simulate", "--synthetic", "4", "--jobs", "60", "-o", "json")
    a, b = run(*args), run(*args)
    assert a.code == 0, a.err
    assert a.out == b.out and a.json()["trace"]["source"] == "synthetic seed 4"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is the plot extra")
def test_plots_are_written(run: Runner, sim_sky: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    res = run("burst", "simulate", "--synthetic", "1", "--jobs", "80", "--rules", str(sim_sky.parent / "stay.yaml"),
              "--rules", str(sim_sky), "--capacity", "cloud=16", "--plot", str(out))
    assert res.code == 0, res.err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["demand_capacity.png", "cumulative_cost_co2.png", "waits.png", "boots_moves.png",
                            "cost_vs_co2.png"])
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_without_matplotlib_plot_says_what_to_install(run: Runner, sim_sky: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    res = run("burst", "simulate", "--synthetic", "1", "--plot", str(tmp_path / "x"))
    assert res.code == 2 and "--plot needs matplotlib: pip install 'skyctl[plot]'" in res.err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("args", "message"), [
    ((), "give a trace file or --synthetic SEED (one of the two)"),
    (("--synthetic", "1", "--capacity", "mars=4"), "--capacity 'mars=4': expected SITE=CORES with a site"),
    (("--synthetic", "1", "--capacity", "home=lots"), "CORES must be a whole number >= 0 or 'unlimited'"),
    (("--synthetic", "1", "--tick", "often"), "--tick 'often': must be a duration such as 300s or 5m"),
    (("--synthetic", "1", "--size", "huge"), "--size 'huge': unknown size"),
])
def test_usage_errors(run: Runner, sim_sky: Path, args: tuple[str, ...], message: str) -> None:
    res = run("burst", "simulate", *args)
    assert res.code == 2 and message in res.err, res.err


def test_a_bad_rule_set_names_its_file_and_field(run: Runner, sim_sky: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"name": "b", "from": ["home"], "to": ["cloud"], "order": "greenest"}]))
    res = run("burst", "simulate", "--synthetic", "1", "--rules", str(bad))
    assert res.code == 2 and f"{bad}: bursting[0].order: must be one of: cost, listed, carbon, weighted" in res.err


def test_a_bad_trace_line_is_named(run: Runner, sim_sky: Path, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time,group,nodes,duration\n0,web,two,60\n")
    res = run("burst", "simulate", str(trace))
    assert res.code == 2 and f"{trace}: line 2: nodes must be a whole number >= 1, got 'two'" in res.err


def test_an_swf_trace_is_read_by_its_suffix(run: Runner, sim_sky: Path, tmp_path: Path) -> None:

    trace = tmp_path / "log.swf"
    trace.write_text((FIXTURES / "small.swf").read_text())
    res = run("burst", "simulate", str(trace), "--group", "hpc", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["trace"] == {"source": str(trace), "jobs": 3, "skipped": 1,
                                   "node_hours": pytest.approx((4 * 3600 + 8 * 1800 + 3 * 600) / 3600, abs=1e-3)}
