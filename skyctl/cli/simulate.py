"""burst simulate: replay a demand trace against the federation's sites and one or more rule sets."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from pathlib import Path
from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

DEFAULT_START = "2026-01-05T00:00:00Z"   # a Monday: relative and synthetic traces start here
DEFAULT_LOCAL_CORES = 64


def simulate(
    trace: Annotated[Path | None, typer.Argument(help="Demand trace: a CSV of time,group,nodes,duration or an "
                                                 "SWF file (.swf; Parallel Workloads Archive format).",
                                                 show_default=False)] = None,
    synthetic: Annotated[int | None, typer.Option("--synthetic", metavar="SEED", help="Generate a trace from "
                                                  "this seed instead (busy days, quiet nights).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=1_000_000, help="Jobs in a --synthetic trace.")] = 400,
    rules: Annotated[list[Path] | None, typer.Option("--rules", metavar="FILE", help="A rule set: YAML with a "
                                                     "bursting: list (repeatable, compared side by side). "
                                                     "Default: the federation file's own rules.")] = None,
    capacity: Annotated[list[str] | None, typer.Option("--capacity", metavar="SITE=CORES", help="Cores a site has "
                                                       "(repeatable; 'unlimited' for none). Default: 64 on a "
                                                       "local site, unlimited on a remote one.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="Logical size of every node (default: defaults.size, "
                                             "else 1 vCPU).")] = None,
    boot_delay: Annotated[str, typer.Option("--boot-delay", metavar="DURATION",
                                            help="How long a node takes to boot.")] = "60s",
    tick: Annotated[str, typer.Option("--tick", metavar="DURATION", help="How often moves home are decided "
                                      "(as burst watch --interval).")] = "60s",
    start: Annotated[str, typer.Option("--start", metavar="TIME", help="When relative and synthetic traces start "
                                       "(ISO 8601).")] = DEFAULT_START,
    group: Annotated[str, typer.Option("--group", help="The group SWF jobs belong to.")] = "batch",
    plot: Annotated[Path | None, typer.Option("--plot", metavar="DIR", help="Write PNG figures here (needs "
                                              "matplotlib: pip install 'skyctl[plot]').")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Replay a demand trace in simulated time: cost, CO2, waits and churn per rule set.

    The same placement and move-home decisions as launch and burst run, on simulated sites:
    nodes boot, run, move home with hysteresis and cooldown; nothing touches a cloud.

    \b
    Examples:
      skyctl burst simulate --synthetic 1 --rules cost.yaml --rules carbon.yaml --plot out/
      skyctl burst simulate jobs.csv --capacity home=128 -o json
    """
    from skyctl.cli.launch import parse_at, parse_duration_opt
    from skyctl.errors import UsageError

    if (trace is None) == (synthetic is None):
        raise UsageError("give a trace file or --synthetic SEED (one of the two)")
    if plot is not None:
        _check_matplotlib()
    fed = _federation()
    cpus, memory_mib = _node_size(fed, size)
    sites = _sites(fed, capacity or [])
    rule_sets = _rule_sets(fed, rules or [])
    t0 = parse_at(start) or 0.0
    demand = _trace(trace, synthetic, jobs, t0, cpus, group, fed, sites, rule_sets)

    from skyctl.policy.simulate import Settings
    from skyctl.policy.simulate import simulate as run

    settings = Settings(cpus=cpus, memory_mib=memory_mib, boot_delay_s=_boot_delay(boot_delay),
                        tick_s=parse_duration_opt(tick, "--tick") or 60.0)
    outcomes = [run(demand, sites, rs, name=name, settings=settings) for name, rs in rule_sets]
    data = {"trace": demand.to_json(), "node": {"cpus": cpus, "memory_mib": memory_mib},
            "boot_delay_s": settings.boot_delay_s, "tick_s": settings.tick_s,
            "results": [o.to_json() for o in outcomes]}
    term().emit(data, output, table=_table)
    if plot is not None:
        from skyctl.cli.plots import write_all

        for path in write_all(plot, outcomes, sites):
            term().info(f"wrote {path}")


def _boot_delay(text: str) -> float:
    from skyctl.errors import UsageError
    from skyctl.policy.rules import parse_duration

    try:
        return parse_duration(text)  # 0s is allowed: nodes that are up at once
    except ValueError as e:
        raise UsageError(f"--boot-delay {text!r}: {e}") from None


def _check_matplotlib() -> None:
    import importlib.util

    from skyctl.errors import UsageError

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'skyctl[plot]'")


def _federation() -> Any:
    from skyctl import config
    from skyctl.cli import runtime

    return config.load(runtime.CONFIG_PATH, validate_drivers=False)  # no cloud is asked anything


def _node_size(fed: Any, size: str | None) -> tuple[int, int]:
    from skyctl.errors import UsageError

    name = size or fed.defaults.size
    if name is None:
        return 1, 2048
    if name not in fed.sizes:
        raise UsageError(f"--size {name!r}: unknown size (sizes: {', '.join(fed.sizes) or 'none'})")
    return fed.sizes[name].cpus, fed.sizes[name].memory_mib


def _sites(fed: Any, capacity: list[str]) -> list[Any]:
    from skyctl.errors import UsageError
    from skyctl.model import Tier
    from skyctl.policy.simulate import SimSite

    given: dict[str, int | None] = {}
    for item in capacity:
        name, sep, value = item.partition("=")
        if not sep or name not in fed.sites:
            raise UsageError(f"--capacity {item!r}: expected SITE=CORES with a site of the federation "
                             f"({', '.join(fed.sites)})")
        if value.strip().lower() == "unlimited":
            given[name] = None
            continue
        try:
            cores = int(value)
        except ValueError:
            cores = -1
        if cores < 0:
            raise UsageError(f"--capacity {item!r}: CORES must be a whole number >= 0 or 'unlimited'")
        given[name] = cores
    out = []
    for name, site in fed.sites.items():
        default = DEFAULT_LOCAL_CORES if site.tier is Tier.LOCAL else None
        out.append(SimSite(name, site.tier, given[name] if name in given else default, site.cost,
                           fed.energy.get(name)))
    return out


def _rule_sets(fed: Any, files: list[Path]) -> list[tuple[str, list[Any]]]:
    if not files:
        return [("federation", list(fed.rules))]
    import yaml

    from skyctl.errors import ConfigError
    from skyctl.policy.rules import parse_rules

    out: list[tuple[str, list[Any]]] = []
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{getattr(e, 'problem', None) or 'invalid YAML'}", source=str(path)) from None
        if isinstance(raw, dict) and "bursting" in raw:  # a federation file will do too
            raw = raw["bursting"]
        name = path.stem
        if any(name == n for n, _ in out):
            name = str(path)
        out.append((name, parse_rules(raw, sites=fed.sites, path="bursting", source=str(path))))
    return out


def _trace(path: Path | None, seed: int | None, jobs: int, t0: float, cpus: int, group: str, fed: Any,
           sites: list[Any], rule_sets: list[tuple[str, list[Any]]]) -> Any:
    from skyctl.errors import ConfigError
    from skyctl.model import Tier
    from skyctl.policy import traces

    if path is None:
        groups = sorted({g for _, rs in rule_sets for r in rs for g in r.groups}) or ["batch"]
        local = sum(s.cores or 0 for s in sites if s.tier is Tier.LOCAL) or DEFAULT_LOCAL_CORES
        return traces.synthetic(seed or 0, jobs=jobs, start=t0, groups=groups, cores=local, cpus_per_node=cpus)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    try:
        if path.suffix.lower() == ".swf":
            return traces.parse_swf(text, start=t0, cpus_per_node=cpus, group=group, source=str(path))
        return traces.parse_csv_trace(text, start=t0, source=str(path))
    except ValueError as e:
        raise ConfigError(str(e), source=str(path)) from None


def _table(data: dict[str, Any]) -> Any:
    rows = []
    for r in data["results"]:
        util = ", ".join(f"{n} {s['utilisation'] * 100:.0f}%" if s["utilisation"] is not None
                         else f"{n} {s['node_hours']:.0f} node-h" for n, s in r["sites"].items())
        jobs = f"{r['jobs']}" + (f" (+{r['rejected']} too big)" if r["rejected"] else "")
        rows.append((r["rules"], jobs, f"{r['cost']:.2f}", f"{r['kg_co2']:.2f}", _dur(r["mean_wait_s"]),
                     _dur(r["p95_wait_s"]), f"{r['remote_node_hours']:.1f}", r["boots"], r["moves_home"], util))
    t = data["trace"]
    title = f"{t['source']}: {t['jobs']} jobs, {t['node_hours']:.0f} node-hours"
    return term().table(["RULES", "JOBS", "COST", "KG CO2", "MEAN WAIT", "P95 WAIT", "REMOTE NODE-H", "BOOTS",
                         "MOVES HOME", "UTILISATION"], rows, title=title)


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
