"""skyctl's benchmarks: every figure measured side by side with its baseline, in one run.

    python benchmarks/run.py [--json] [--quick]

Each figure is a median of several runs. The sandbox (started here with `skyctl sandbox up`
under a temporary SKYCTL_HOME) is the target of the cloud benchmarks; baselines are a bare
typer app with as many commands, the OpenStack client, and the slowest single site.
Goals (ratios unless named): help_vs_typer <= 1.2, help_vs_openstack <= 0.25,
list1000_vs_osc <= 0.1, launch100_vs_ideal <= 1.2, ps3_vs_slowest <= 1.2,
ps_second_vs_first <= 0.7 (a `ps` right after a `ps`, reusing the stored Keystone token and
versions, vs the first one, which authenticates; 50 ms per request),
plan_10k_50_s <= 0.2, ps_rss_mib <= 60, rank_50_sites_24h_ms <= 5, simulate_10k_jobs_s <= 10,
slurm_resume_return_s <= 1 (32 nodes), slurm_resume_vs_launch <= 1.1,
exec100_vs_openssh <= 1.0 (`skyctl exec` on 100 nodes vs the system ssh through `skyctl
ssh-config`'s file with `xargs -P` at the same parallelism), image_replicate_vs_copy <= 1.3
and image_replicate_rss_growth_mib <= 8 (benchmarks/images.py).

With --guests (boots one real Debian 12 guest under QEMU; needs the guest image, see
`skyctl sandbox image build`): guest_ready_overhead <= 1.1, the wall time of `launch --wait`
over the guest's own boot-to-cloud-init-done time ("Up N seconds" on its serial console).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SKYCTL = str(BIN / "skyctl")
GOALS = {"help_vs_typer": 1.2, "help_vs_openstack": 0.25, "list1000_vs_osc": 0.1, "launch100_vs_ideal": 1.2,
         "ps_second_vs_first": 0.7,
         "ps3_vs_slowest": 1.2, "plan_10k_50_s": 0.2, "ps_rss_mib": 60, "rank_50_sites_24h_ms": 5,
         "simulate_10k_jobs_s": 10, "slurm_resume_return_s": 1.0, "slurm_resume_vs_launch": 1.1,
         "exec100_vs_openssh": 1.0, "image_replicate_vs_copy": 1.3, "image_replicate_rss_growth_mib": 8,
         "guest_ready_overhead": 1.1}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def median_pair(a: Callable[[], float], b: Callable[[], float], runs: int) -> tuple[float, float]:
    """Interleave the two so machine noise hits both alike."""
    xs, ys = [], []
    for _ in range(runs):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


# ---------------------------------------------------------------- CLI start-up

def _command_count() -> int:
    out = subprocess.run([SKYCTL, "--help"], capture_output=True, text=True, check=True).stdout
    block = out.split("Commands:", 1)[1]
    return sum(1 for line in block.splitlines() if line.startswith("  ") and line.strip()[:1].isalpha()
               and not line.startswith("    "))


BARE_TYPER = """
import typer
app = typer.Typer(add_completion=True, rich_markup_mode=None)
def make(n):
    def cmd(name: str = "a", output: str = "table"):
        \"\"\"A command.\"\"\"
    cmd.__name__ = n
    return cmd
for i in range({n}):
    app.command(f"cmd{{i}}")(make(f"cmd{{i}}"))
app()
"""


def bench_help(results: dict[str, Any], runs: int, tmp: Path) -> None:
    n = _command_count()
    bare = tmp / "bare_typer.py"
    bare.write_text(BARE_TYPER.format(n=n))
    env = {**os.environ, "SKYCTL_HOME": str(tmp / "help-home")}
    sky, typer_t = median_pair(lambda: timed([SKYCTL, "--help"], env), lambda: timed([sys.executable, str(bare), "--help"], env),
                               runs)
    results.update(help_s=round(sky, 4), help_typer_s=round(typer_t, 4), help_vs_typer=round(sky / typer_t, 3))
    osc = BIN / "openstack"
    if osc.exists():
        sky2, os_t = median_pair(lambda: timed([SKYCTL, "--help"], env), lambda: timed([str(osc), "--help"], env),
                                 max(3, runs // 3))
        results.update(help_openstack_s=round(os_t, 4), help_vs_openstack=round(sky2 / os_t, 3))
    else:
        log("openstack client not installed: help_vs_openstack skipped (pip install python-openstackclient)")


# ---------------------------------------------------------------- planning

def bench_plan(results: dict[str, Any], runs: int) -> None:
    from skyctl.model import Capacity, Flavor, ImageRef, Limit, Tier
    from skyctl.policy.placement import Catalog, Request, SiteSnapshot, place

    flavors = tuple(Flavor(f"f{c}", f"m{c}", c, 2048 * c) for c in (1, 2, 4, 8))
    sites = [SiteSnapshot(f"s{i:02d}", "openstack", Tier.LOCAL if i < 2 else Tier.REMOTE, float(i % 7),
                          Capacity(Limit("instances", 0, 250), Limit("cores", 0, 1000), Limit("ram_mib", 0, None)),
                          flavors, (ImageRef("img", "alma9"),)) for i in range(50)]
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}})
    req = Request("big", 10_000, 1, 2048, "alma9")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        plan = place(req, sites, (), catalog)
        times.append(time.perf_counter() - t0)
        assert plan.placed == 10_000
    results["plan_10k_50_s"] = round(statistics.median(times), 5)


def _energy(i: int) -> Any:
    from skyctl.policy.energy import parse_energy

    zones = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
    price = [round(0.05 + 0.01 * ((h + i) % 24), 3) for h in range(24)]
    carbon = [100 + 10 * ((h * 7 + i) % 24) for h in range(24)]
    return parse_energy({"timezone": zones[i % len(zones)], "pue": 1.1 + (i % 5) / 10, "watts_per_vcpu": 8 + i % 6,
                         "price": {"per_kwh": price}, "carbon": carbon}, path="bench", read_text=lambda p: "")


def bench_rank(results: dict[str, Any], runs: int) -> None:
    """Rank 50 remote sites with hourly price and carbon profiles in five time zones, for a
    run of 24 hours (24 pieces per site), by the weighted order."""
    from skyctl.model import Capacity, ImageRef, Limit, Tier
    from skyctl.policy.placement import Catalog, Request, SiteSnapshot, place
    from skyctl.policy.rules import parse_rules

    sites = [SiteSnapshot(f"s{i:02d}", "opennebula", Tier.REMOTE, 0.0,
                          Capacity(Limit("instances", 0, 100), Limit("cores", 0, 400), Limit("ram_mib", 0, None)),
                          (), (ImageRef("img", "alma9"),), custom_sizes=True, energy=_energy(i)) for i in range(50)]
    tiers = {s.name: s for s in sites} | {"home": type("L", (), {"tier": Tier.LOCAL})()}
    rules = parse_rules([{"name": "w", "from": ["home"], "to": [s.name for s in sites], "order": "weighted",
                          "expected_duration": "24h"}], sites=tiers)
    catalog = Catalog(images={"alma9": {s.name: "alma9" for s in sites}})
    req = Request("web", 20, 2, 4096, "alma9")
    at = 1767571200.0  # 2026-01-05T00:00Z
    times = []
    for k in range(runs * 5):
        t0 = time.perf_counter()
        plan = place(req, sites, rules, catalog, at=at + k * 3600)
        times.append(time.perf_counter() - t0)
        assert plan.placed == 20
    results["rank_50_sites_24h_ms"] = round(statistics.median(times) * 1000, 3)


def bench_simulate(results: dict[str, Any], runs: int) -> None:
    """10,000 synthetic jobs over 3 sites (one local), under 2 rule sets."""
    from skyctl.model import Tier
    from skyctl.policy.rules import parse_rules
    from skyctl.policy.simulate import SimSite, simulate
    from skyctl.policy.traces import synthetic

    sites = [SimSite("home", Tier.LOCAL, 64, 0.0, _energy(0)), SimSite("night", Tier.REMOTE, 128, 0.0, _energy(1)),
             SimSite("solar", Tier.REMOTE, None, 0.0, _energy(3))]
    by_name = {s.name: s for s in sites}
    rule_sets = [parse_rules([{"name": "cost", "from": ["home"], "to": ["night", "solar"], "order": "cost",
                               "home": {"cooldown": "5m", "max_moves": 2}}], sites=by_name),
                 parse_rules([{"name": "carbon", "from": ["home"], "to": ["night", "solar"], "order": "carbon",
                               "overflow": {"max_utilisation": "90%"},
                               "home": {"cooldown": "10m", "max_moves": 4, "hysteresis_cores": 4}}], sites=by_name)]
    trace = synthetic(1, jobs=10_000, start=1767571200.0, cores=64)
    times = []
    for _ in range(max(runs // 3, 1)):
        t0 = time.perf_counter()
        for rules in rule_sets:
            simulate(trace, sites, rules)
        times.append(time.perf_counter() - t0)
    results["simulate_10k_jobs_s"] = round(statistics.median(times), 3)


# ---------------------------------------------------------------- the sandbox

class Sandbox:
    """`skyctl sandbox up` under a private SKYCTL_HOME; `down` at the end."""

    def __init__(self, tmp: Path, spec: dict[str, Any], name: str = "sandbox", up_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.home = tmp / f"{name}-home"
        self.env = {**os.environ, "SKYCTL_HOME": str(self.home), "NO_COLOR": "1", **(env or {})}
        self.env.pop("SKYCTL_CONFIG", None)
        spec_file = tmp / f"{name}-spec.json"
        spec_file.write_text(json.dumps(spec))
        subprocess.run([SKYCTL, "sandbox", "up", "--spec", str(spec_file), *up_args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        status = json.loads(subprocess.run([SKYCTL, "sandbox", "status", "-o", "json"], env=self.env, check=True,
                                           capture_output=True, text=True).stdout)
        self.status = status
        self.env["SKYCTL_CONFIG"] = status["config"]
        self.sites = {s["name"]: s for s in status["sites"]}

    def fault(self, site: str, *args: str) -> None:
        subprocess.run([SKYCTL, "sandbox", "fault", site, *args], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def down(self) -> None:
        subprocess.run([SKYCTL, "sandbox", "down"], env=self.env, stdout=subprocess.DEVNULL)

    def osc_env(self, site: str) -> dict[str, str]:
        s = self.sites[site]
        return {**self.env, "OS_CLIENT_CONFIG_FILE": s["clouds_yaml"], "OS_CLOUD": s["cloud"]}

    def request_count(self, site: str) -> int:
        st = json.loads(subprocess.run([SKYCTL, "sandbox", "status", "-o", "json"], env=self.env, check=True,
                                       capture_output=True, text=True).stdout)
        return int(next(s for s in st["sites"] if s["name"] == site).get("requests", 0))


def _fill_openstack(sb: Sandbox, site: str, count: int) -> None:
    """Create `count` servers with openstacksdk (as another user of the cloud would)."""
    import openstack

    s = sb.sites[site]
    os.environ["OS_CLIENT_CONFIG_FILE"] = s["clouds_yaml"]
    conn = openstack.connect(cloud=s["cloud"])
    image = next(iter(conn.image.images())).id
    flavor = next(f for f in conn.compute.flavors() if f.vcpus == 1).id

    def one(i: int) -> None:
        conn.compute.post("/servers", json={"server": {"name": f"bulk-{i}", "imageRef": image, "flavorRef": flavor,
                                                       "networks": "none"}},
                          microversion="2.52")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    conn.close()


def bench_sandbox(results: dict[str, Any], runs: int, tmp: Path, quick: bool) -> None:
    n = 200 if quick else 1000
    big = {"boot_delay": 0.0, "sites": {
        "home": {"quota": {"instances": -1, "cores": -1, "ram_mib": -1}},
        "cc": {"quota": {"instances": -1, "cores": -1, "ram_mib": -1}},
        "sara": {"quota": {"instances": -1, "cores": -1, "ram_mib": -1}}}}
    sb = Sandbox(tmp, big)
    try:
        log(f"filling sara with {n} servers")
        _fill_openstack(sb, "sara", n)
        ps = [SKYCTL, "ps", "--all", "--site", "sara", "-o", "json"]
        osc = [str(BIN / "openstack"), "server", "list", "-f", "json"]
        sky_t, osc_t = median_pair(lambda: timed(ps, sb.env), lambda: timed(osc, sb.osc_env("sara")), max(3, runs // 2))
        results.update(list1000_s=round(sky_t, 4), list1000_osc_s=round(osc_t, 4),
                       list1000_vs_osc=round(sky_t / osc_t, 3), list_nodes=n)
        probe = [sys.executable, "-c", "import resource,subprocess,sys;subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", *ps]
        rss = [int(subprocess.run(probe, env=sb.env, capture_output=True, text=True, check=True).stdout) for _ in range(3)]
        results["ps_rss_mib"] = round(statistics.median(rss) / 1024, 1)

        # ps over three sites with different latencies vs the slowest alone.
        for site, ms in (("home", "10"), ("cc", "20"), ("sara", "40")):
            sb.fault(site, "--latency", ms)
        all_t, slow_t = median_pair(lambda: timed([SKYCTL, "ps", "-o", "json"], sb.env),
                                    lambda: timed([SKYCTL, "ps", "--site", "sara", "-o", "json"], sb.env),
                                    max(3, runs // 2))
        results.update(ps3_s=round(all_t, 4), ps_slowest_s=round(slow_t, 4), ps3_vs_slowest=round(all_t / slow_t, 3))
        for site in ("home", "cc", "sara"):
            sb.fault(site, "--latency", "0")

        bench_launch(results, sb, runs, quick)
        sb.fault("home", "--latency", "0")
        bench_slurm(results, sb, tmp, quick)
    finally:
        sb.down()


def bench_launch(results: dict[str, Any], sb: Sandbox, runs: int, quick: bool) -> None:
    """The second command's start and a launch of 100 nodes at 50 ms per request on `home`."""
    # 100 nodes with 50 ms per request on one site, and 10 as the fixed-cost baseline
    # (interpreter, SDK import, authentication, snapshot) measured the same way.
    count = 30 if quick else 100
    latency = 0.05
    concurrency = 8  # sites.*.max_parallel default
    sb.fault("home", "--latency", "50")
    bench_second_command(results, sb, runs)

    def launch(group: str, n: int, env: dict[str, str] | None = None) -> tuple[float, int]:
        before = sb.request_count("home")
        t0 = time.perf_counter()
        timed([SKYCTL, "launch", group, "--count", str(n), "--site", "home", "-o", "json"], env or sb.env)
        return time.perf_counter() - t0, sb.request_count("home") - before

    small_t, small_req = launch("lat10", 10)
    elapsed, requests = launch("lat", count)
    ideal = requests * latency / concurrency
    marginal_ideal = (requests - small_req) * latency / concurrency
    # the baseline: the same launch authenticating and discovering afresh (no token reuse)
    fresh_t, fresh_req = launch("latnc", count, {**sb.env, "SKYCTL_OPENSTACK_TOKEN_CACHE": "0"})
    results.update(launch100_s=round(elapsed, 3), launch100_requests=requests,
                   launch100_requests_per_node=round(requests / count, 2),
                   launch100_ideal_s=round(ideal, 3), launch100_vs_ideal=round(elapsed / ideal, 3),
                   launch10_s=round(small_t, 3),
                   launch100_marginal_vs_ideal=round((elapsed - small_t) / marginal_ideal, 3),
                   launch100_fresh_auth_s=round(fresh_t, 3), launch100_fresh_auth_requests=fresh_req,
                   launch100_fresh_auth_vs_ideal=round(fresh_t / (fresh_req * latency / concurrency), 3))
    sb.fault("home", "--latency", "0")


def bench_second_command(results: dict[str, Any], sb: Sandbox, runs: int) -> None:
    """`ps` on one site at its current latency: the first command (no stored token: it
    authenticates and discovers the API versions) vs one right after it (reuses them)."""
    ps = [SKYCTL, "ps", "--site", "home", "-o", "json"]
    cache = sb.home / "state" / "openstack-auth"

    def first() -> float:
        shutil.rmtree(cache, ignore_errors=True)
        return timed(ps, sb.env)

    def second() -> float:   # right after first(), which stored the token
        return timed(ps, sb.env)

    first_t, second_t = median_pair(first, second, max(5, runs))
    results.update(ps_first_s=round(first_t, 4), ps_second_s=round(second_t, 4),
                   ps_second_vs_first=round(second_t / first_t, 3))


# ---------------------------------------------------------------- exec vs the system ssh

def bench_exec(results: dict[str, Any], runs: int, tmp: Path, quick: bool) -> None:
    """`skyctl exec GROUP -- hostname` on every node vs what one would script instead: the
    system ssh through `skyctl ssh-config`'s file, `xargs -P` at the same parallelism."""
    ssh = shutil.which("ssh")
    if ssh is None:
        log("no ssh client: exec100_vs_openssh skipped")
        return
    count = 30 if quick else 100
    parallel = 16  # skyctl exec's default
    sb = Sandbox(tmp, {"boot_delay": 0.0, "sites": {"home": {"quota": {"instances": -1, "cores": -1,
                                                                       "ram_mib": -1}}}}, name="exec")
    try:
        log(f"launching {count} nodes for exec")
        subprocess.run([SKYCTL, "launch", "ex", "--count", str(count), "--site", "home", "--wait"], env=sb.env,
                       check=True, stdout=subprocess.DEVNULL)
        config = tmp / "exec.ssh"
        config.write_text(subprocess.run([SKYCTL, "ssh-config", "ex"], env=sb.env, check=True, capture_output=True,
                                         text=True).stdout)
        nodes = json.loads(subprocess.run([SKYCTL, "ps", "ex", "-o", "json"], env=sb.env, check=True,
                                          capture_output=True, text=True).stdout)
        names = [n["name"] for n in nodes]

        def both(targets: list[str], hosts: list[str]) -> tuple[float, float]:
            listed = "\n".join(hosts) + "\n"
            openssh = ["sh", "-c", f"printf '{listed}' | xargs -P {parallel} -I NODE {ssh} -F {config} NODE hostname"]
            skyctl = [SKYCTL, "exec", *targets, "--parallel", str(parallel), "-o", "json", "--", "hostname"]
            return median_pair(lambda: timed(skyctl, sb.env), lambda: timed(openssh, sb.env), max(3, runs // 2))

        sky_t, ssh_t = both(["ex"], names)  # skyctl resolves the group; the ssh side gets the names ready-made
        few_sky, few_ssh = both(names[:10], names[:10])
        results.update(exec100_s=round(sky_t, 3), exec100_openssh_s=round(ssh_t, 3),
                       exec100_vs_openssh=round(sky_t / ssh_t, 3), exec_nodes=count, exec_parallel=parallel,
                       exec10_s=round(few_sky, 3), exec10_openssh_s=round(few_ssh, 3),
                       exec100_marginal_vs_openssh=round((sky_t - few_sky) / max(ssh_t - few_ssh, 1e-3), 3))
    finally:
        sb.down()


def bench_slurm(results: dict[str, Any], sb: Sandbox, tmp: Path, quick: bool) -> None:
    """`skyctl slurm resume` as slurmctld calls it: the time until it returns (the work goes on
    detached), and resume --wait of N nodes until all are created vs a plain launch of N."""
    import yaml

    fed = yaml.safe_load(Path(sb.env["SKYCTL_CONFIG"]).read_text())
    fed["slurm"] = {"groups": {"bslurm": {"nodes": "bs-[1-32]", "partition": "bench", "contexts": ["base"]}},
                    "log": str(tmp / "slurm.log"), "programs_dir": str(tmp / "programs")}
    config = tmp / "slurm-sky.yaml"
    config.write_text(yaml.safe_dump(fed))
    env = {**sb.env, "SKYCTL_CONFIG": str(config)}
    resume_file = tmp / "resume.json"

    def ps_count(group: str) -> int:
        out = subprocess.run([SKYCTL, "ps", group, "-o", "json"], env=env, capture_output=True, text=True).stdout
        return len(json.loads(out or "[]"))

    def settle(group: str, n: int) -> None:
        for _ in range(600):
            if ps_count(group) >= n:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{group}: {n} nodes never appeared (see {tmp / 'slurm.log'})")

    returns = []
    for _ in range(2 if quick else 3):
        resume_file.write_text(json.dumps({"jobs": [{"job_id": 1, "nodes": "bs-[1-32]"}], "all_nodes": "bs-[1-32]"}))
        returns.append(timed([SKYCTL, "slurm", "resume", "bs-[1-32]"], {**env, "SLURM_RESUME_FILE": str(resume_file)}))
        settle("bslurm", 32)
        timed([SKYCTL, "slurm", "suspend", "bs-[1-32]"], env)
    results["slurm_resume_return_s"] = round(statistics.median(returns), 3)

    n = 10 if quick else 32
    hosts = f"bs-[1-{n}]"

    def resume_wait() -> float:
        t = timed([SKYCTL, "slurm", "resume", "--wait", hosts], env)
        timed([SKYCTL, "slurm", "suspend", hosts], env)
        return t

    def plain_launch() -> float:
        t = timed([SKYCTL, "launch", "bplain", "--count", str(n), "--context", "base", "-o", "json"], env)
        timed([SKYCTL, "delete", "bplain", "--yes"], env)
        return t

    resume_t, launch_t = median_pair(resume_wait, plain_launch, 2 if quick else 3)
    results.update(slurm_resume_s=round(resume_t, 3), slurm_launch_s=round(launch_t, 3),
                   slurm_resume_vs_launch=round(resume_t / launch_t, 3), slurm_nodes=n)


class _Done(Exception):
    """--only-guests: skip the rest."""


def bench_guests(results: dict[str, Any], tmp: Path) -> None:
    """One real guest: `launch --wait` wall time over the guest's own boot-to-cloud-init-done."""
    spec = {"sites": {"sara": None, "cc": None, "home": {"quota": {"instances": 1}}}}
    # The guest image from skyctl's own cache (as `skyctl sandbox image build` left it), not a
    # private SKYCTL_HOME/cache that would build it again, minutes of both cores, every run.
    from skyctl.paths import shared_cache_dir

    sb = Sandbox(tmp, spec, name="guests", up_args=("--guests", "qemu"),
                 env={"SKYCTL_CACHE_DIR": str(shared_cache_dir())})
    try:
        t0 = time.perf_counter()
        subprocess.run([SKYCTL, "launch", "gb", "--site", "home", "--context", "base", "--wait"], env=sb.env,
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        status = json.loads(subprocess.run([SKYCTL, "sandbox", "status", "-o", "json"], env=sb.env, check=True,
                                           capture_output=True, text=True).stdout)
        vm = status["guests"]["vms"][0]
        own = float(vm["guest_uptime_at_finish"])
        results["guest_accel"] = status["guests"]["accel"]
        results["guest_launch_wait_s"] = round(wall, 1)
        results["guest_boot_to_cloud_init_done_s"] = own
        results["guest_qemu_start_to_done_s"] = vm["finished_after"]
        results["guest_ready_overhead"] = round(wall / own, 3)
        # Where the rest went: QEMU start to the guest kernel's clock starting (firmware, kernel
        # load), and skyctl's own part (API calls and seed ISO before QEMU, the readiness poll after).
        results["guest_qemu_to_kernel_s"] = round(float(vm["finished_after"]) - own, 1)
        results["guest_skyctl_own_s"] = round(wall - float(vm["finished_after"]), 1)
        results["guest_load_avg_1m"] = round(os.getloadavg()[0], 2)   # a shared machine: read the figure with it
        subprocess.run([SKYCTL, "delete", "--yes", "gb"], env=sb.env, stdout=subprocess.DEVNULL)
    finally:
        sb.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="fewer runs and nodes (a smoke test of the harness)")
    ap.add_argument("--only", default="", help="comma-separated sections to run (help, plan, rank, simulate, "
                                               "sandbox, launch (part of sandbox, alone), exec, images); default all")
    ap.add_argument("--guests", action="store_true", help="also boot a real guest under QEMU (guest_ready_overhead)")
    ap.add_argument("--only-guests", action="store_true", help="only guest_ready_overhead")
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}

    def want(section: str) -> bool:
        return not only or section in only

    runs = 3 if args.quick else 9
    results: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="skyctl-bench-"))
    try:
        if args.guests or args.only_guests:
            log("a real guest under QEMU")
            bench_guests(results, tmp)
        if args.only_guests:
            raise _Done
        if want("help"):
            log("CLI start-up")
            # ~0.1 s processes on a shared machine: 9 pairs left the ratio swinging 1.07-1.34
            # between runs; 31 pairs cost about 6 s more.
            bench_help(results, 5 if args.quick else 31, tmp)
        if want("plan"):
            log("planning")
            bench_plan(results, runs)
        if want("rank"):
            log("ranking by energy, price and carbon")
            bench_rank(results, runs)
        if want("simulate"):
            log("simulating bursting rules")
            bench_simulate(results, runs)
        if want("sandbox"):
            log("sandbox")
            bench_sandbox(results, runs, tmp, args.quick)
        if want("launch") and not want("sandbox"):
            log("launch and the second command (a sandbox of its own)")
            sb = Sandbox(tmp, {"boot_delay": 0.0, "sites": {"home": {"quota": {"instances": -1, "cores": -1,
                                                                               "ram_mib": -1}}}}, name="launch")
            try:
                bench_launch(results, sb, runs, args.quick)
            finally:
                sb.down()
        if want("exec"):
            log("exec vs OpenSSH")
            bench_exec(results, runs, tmp, args.quick)
        if want("images"):
            log("image replication")
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from images import bench_images

            bench_images(results, 3 if args.quick else 5, tmp, args.quick)
    except _Done:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for key, value in results.items():
            goal = GOALS.get(key)
            mark = "" if goal is None else (" ok" if value <= goal else " MISSES") + f" (goal <= {goal})"
            print(f"{key:32} {value}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
