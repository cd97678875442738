"""PNG figures of `burst simulate` results, drawn with matplotlib (the optional `skyctl[plot]`).

matplotlib is imported inside `write_all` only, with the non-interactive Agg backend. Each site
keeps one colour in every figure; each rule set keeps one colour and line style.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")
RULE_COLOURS = ("#222222", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00")
RULE_STYLES = ("-", "--", "-.", ":")
FIGURES = ("demand_capacity.png", "cumulative_cost_co2.png", "waits.png", "boots_moves.png", "cost_vs_co2.png")


def site_colour(index: int) -> str:
    return SITE_COLOURS[index % len(SITE_COLOURS)]


def rule_style(index: int) -> dict[str, Any]:
    return {"color": RULE_COLOURS[index % len(RULE_COLOURS)], "linestyle": RULE_STYLES[index % len(RULE_STYLES)]}


def _days(t: float, start: float) -> float:
    return (t - start) / 86400


def write_all(folder: Path, outcomes: Sequence[Any], sites: Sequence[Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": 11,
                         "axes.titleweight": "bold"})
    drawers = (_demand_capacity, _cumulative, _waits, _boots_moves, _cost_vs_co2)
    written = []
    for name, draw in zip(FIGURES, drawers, strict=True):
        fig = draw(plt, outcomes, sites)
        path = folder / name
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _demand_capacity(plt: Any, outcomes: Sequence[Any], sites: Sequence[Any]) -> Any:
    """Rows: all sites together (demand), then each site; columns: rule sets."""
    rows, cols = len(sites) + 1, len(outcomes)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1, 1.9 * rows + 1), sharex=True, squeeze=False)
    for c, out in enumerate(outcomes):
        times = [_days(u[0], out.start) for u in out.usage]
        ax = axes[0][c]
        used = [sum(u[1]) for u in out.usage]
        ax.step(times, [u[2] for u in out.usage], where="post", color="black", lw=1.0, label="asked (incl. queued)")
        ax.step(times, used, where="post", color="#888888", lw=0.8, label="in use")
        ax.set_title(f"{out.name}: demand, all sites")
        ax.set_ylim(0, max([u[2] for u in out.usage] + [1]) * 1.3)
        ax.set_ylabel("cores")
        if c == 0:
            ax.legend(loc="upper right", fontsize=8)
        for r, site in enumerate(sites, start=1):
            ax = axes[r][c]
            colour = site_colour(r - 1)
            series = [u[1][r - 1] for u in out.usage]
            ax.fill_between(times, series, step="post", color=colour, alpha=0.55, lw=0)
            if site.cores is not None:
                ax.axhline(site.cores, color=colour, ls="--", lw=1.2, label=f"capacity {site.cores}")
                ax.set_ylim(0, site.cores * 1.3 + 1)
                ax.legend(loc="upper right", fontsize=8)
            ax.set_title(f"{site.name} ({site.tier.value})", color=colour)
            ax.set_ylabel("cores in use")
        axes[-1][c].set_xlabel("time (days from start)")
    fig.suptitle("Demand and capacity per site over time", fontweight="bold")
    fig.tight_layout()
    return fig


def _cumulative(plt: Any, outcomes: Sequence[Any], sites: Sequence[Any]) -> Any:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, out in enumerate(outcomes):
        hours = sorted(out.hourly)
        times = [_days(h * 3600 + 3600, out.start) for h in hours]
        cost = gco2 = 0.0
        costs, co2 = [], []
        for h in hours:
            cost += out.hourly[h][0]
            gco2 += out.hourly[h][1]
            costs.append(cost)
            co2.append(gco2 / 1000)
        a.plot(times, costs, label=out.name, **rule_style(i))
        b.plot(times, co2, label=out.name, **rule_style(i))
    a.set_title("Cumulative cost")
    a.set_ylabel("cost (price units of the federation file)")
    b.set_title("Cumulative CO2")
    b.set_ylabel("kg CO2")
    for ax in (a, b):
        ax.set_xlabel("time (days from start)")
        ax.legend(title="rule set", fontsize=8)
    fig.tight_layout()
    return fig


def _waits(plt: Any, outcomes: Sequence[Any], sites: Sequence[Any]) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, out in enumerate(outcomes):
        waits = sorted(w / 60 for w in out.waits)
        if not waits:
            continue
        share = [(k + 1) / len(waits) for k in range(len(waits))]
        ax.step(waits, share, where="post", label=f"{out.name} (mean {out.mean_wait / 60:.1f} min, "
                f"p95 {out.p95_wait / 60:.1f} min)", **rule_style(i))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_title("Wait-time distribution (arrival to nodes booted)")
    ax.set_xlabel("wait (minutes, log scale above 1)")
    ax.set_ylabel("share of jobs that waited at most this long")
    ax.set_ylim(0, 1.02)
    ax.legend(title="rule set", fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _per_hour(times: Sequence[float], start: float, end: float) -> tuple[list[float], list[int]]:
    hours = max(int((end - start) // 3600) + 1, 1)
    counts = [0] * hours
    for t in times:
        counts[min(int((t - start) // 3600), hours - 1)] += 1
    return [_days(start + h * 3600, start) for h in range(hours)], counts


def _boots_moves(plt: Any, outcomes: Sequence[Any], sites: Sequence[Any]) -> Any:
    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    for i, out in enumerate(outcomes):
        x, boots = _per_hour(out.boot_times, out.start, out.end)
        a.step(x, boots, where="post", lw=0.9, label=f"{out.name} ({out.boots} boots)", **rule_style(i))
        x, moves = _per_hour(out.move_times, out.start, out.end)
        b.step(x, moves, where="post", lw=0.9, label=f"{out.name} ({out.moves} moves)", **rule_style(i))
    a.set_title("Node boots per hour")
    a.set_ylabel("boots / hour")
    b.set_title("Moves home per hour")
    b.set_ylabel("moves / hour")
    b.set_xlabel("time (days from start)")
    for ax in (a, b):
        ax.legend(title="rule set", fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _cost_vs_co2(plt: Any, outcomes: Sequence[Any], sites: Sequence[Any]) -> Any:
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    xs = [o.cost for o in outcomes]
    ys = [o.gco2 / 1000 for o in outcomes]
    waits = [o.mean_wait / 60 for o in outcomes]
    # From 0, so equal waits read as equal rather than as a range of rounding errors.
    points = ax.scatter(xs, ys, c=waits, cmap="viridis", s=140, edgecolors="black", zorder=3,
                        vmin=0, vmax=max(max(waits) * 1.05, 1.0))
    for x, y, out in zip(xs, ys, outcomes, strict=True):
        ax.annotate(out.name, (x, y), textcoords="offset points", xytext=(8, 6), fontsize=9)
    fig.colorbar(points, ax=ax, label="mean wait (minutes)")
    ax.set_title("Cost against CO2, one point per rule set")
    ax.set_xlabel("total cost (price units of the federation file)")
    ax.set_ylabel("total kg CO2")
    ax.margins(0.25)
    fig.tight_layout()
    return fig
