"""The real-guest tier: a sandbox whose VMs boot Debian 12 under QEMU and run real cloud-init.

One module-scoped `fleet`: `sandbox up --guests qemu` on an OpenStack-style site (home) and an
OpenNebula-style one (cc), each with room for two guests (never more than 4 QEMU guests at
once), then four `launch --wait` runs at the same time, one node each, so every boot this tier
pays for happens in one round:

- `osg` on home: `base`, the test profile `guesttest.yaml` (a user, files, commands, a Debian
  package) and the built-in `jupyter` (JupyterLab from PyPI behind its token, a secret); where
  this host trusts CAs of its own (a TLS-inspecting proxy in front of PyPI), a generated
  profile makes the guest trust them too (`site_trust_profile`), as a real site would;
- `oneg` on cc: `base`, `guesttest.yaml` and the built-in `slurm-worker`, whose slurmd joins a
  real slurmctld on this host (`slurm`, below) with the munge key delivered as a secret;
- `dock` on home: `base` plus the built-in `docker-host`;
- `condor` on cc: `base` plus the built-in `htcondor-worker`, which cannot work on Debian 12
  (no htcondor package): its launch must fail with the guest's own error.

Each composed profile writes its own files and services, so each check still names what it
tests. `cvmfs-client` is not booted: it needs CERN's package repository, which this machine
cannot reach; its caveat is checked through `context validate` instead.

The Slurm controller (`slurm`): a private munged and Debian's slurmctld on this host, listening
on every address. QEMU's user-mode network shows this host to a guest as 10.0.2.2, so the
guest's slurm.conf (the profile's `slurm_conf` variable) names the controller 10.0.2.2, while
the host's names 127.0.0.1; they differ in that and in AuthInfo (the host's munged has a private
socket), which is why the profile's configless mode (slurmd --conf-server) cannot serve here: it
would ship the host's file. The other way, slurmctld reaches the guest's slurmd through an SSH
forward (`skyctl ssh oneg-0 -N -L`, through the guest's own sshd) from the port its NodeAddr
names, as the user-mode network lets no connection in otherwise.

The image comes from skyctl's cache (`skyctl sandbox image build`, run by .ci/run before this
tier; built here when missing). Nothing runs at import: collecting this folder in the default
run costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.paths import shared_cache_dir
from skyctl.testing import slurmctl

SKYCTL = str(Path(sys.executable).with_name("skyctl"))
HERE = Path(__file__).parent
LAUNCH_TIMEOUT = 2400.0   # a subprocess guard only; readiness has its own (generous) ready_timeout

# Each launch: group -> (site, contexts, vars). One node each, all four at once.
LAUNCHES: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "osg": ("home", ["base", str(HERE / "guesttest.yaml"), "jupyter"], {"greeting": "hello from osg"}),
    "oneg": ("cc", ["base", str(HERE / "guesttest.yaml"), "slurm-worker"],
             {"greeting": "hello from oneg", "controller": "10.0.2.2"}),
    "dock": ("home", ["base", "docker-host"], {}),
    "condor": ("cc", ["base", "htcondor-worker"], {"central_manager": "cm.example.org"}),
}

JUPYTER_TOKEN = "tier-jupyter-" + os.urandom(12).hex()   # a secret: never in skyctl's output or state
SLURM_NODE = "oneg-0"
HOST_FROM_GUEST = "10.0.2.2"   # QEMU user-mode networking's address of this host

SPEC = {
    "sites": {
        "sara": None,
        "home": {"quota": {"instances": 2, "cores": 4}},
        "cc": {"quota": {"instances": 2, "cores": 4}, "group_quota": {"instances": 2, "cores": 4}},
    },
}


def site_trust_profile(folder: Path, ca_dir: Path = Path("/usr/local/share/ca-certificates")) -> Path | None:
    """A profile that makes a guest trust the CAs this host's admin added (Debian's
    /usr/local/share/ca-certificates), as a site behind a TLS-inspecting proxy must: cloud-init's
    ca_certs adds them to the guest's store, and pip is told to use that store. None when the
    host added none (its guests reach PyPI with the public CAs)."""
    pems = [p.read_text(encoding="utf-8").strip() + "\n" for p in sorted(ca_dir.glob("**/*.crt"))]
    if not pems:
        return None
    profile = {
        "description": "The site's own CAs (test tier): trusted by the guest's store and by pip.",
        "files": [{"path": "/etc/pip.conf", "permissions": "0644",
                   "content": "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"}],
        "raw": {"cloud_config": {"ca_certs": {"trusted": pems}}},
    }
    path = folder / "sitetrust.yaml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


@dataclass
class Launch:
    group: str
    code: int
    out: str
    err: str
    seconds: float

    def nodes(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.out)
        except ValueError:
            return []
        return data if isinstance(data, list) else data.get("nodes", [])


@dataclass
class Fleet:
    home: Path
    env: dict[str, str]
    launches: dict[str, Launch] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    slurm: SlurmController | None = None
    jupyter_token: str = JUPYTER_TOKEN

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKYCTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"skyctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def sh(self, node: str, command: str, check: bool = True) -> str:
        """The command's own stdout (`skyctl ssh NODE -- CMD`: no 'node | ' prefixes)."""
        return self.run("ssh", node, "--", command, check=check).stdout

    def sandbox_status(self) -> dict[str, Any]:
        return json.loads(self.run("sandbox", "status", "-o", "json").stdout)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="skyctl-guests-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_"))}
    env.update(SKYCTL_HOME=str(root / "home"), SKYCTL_CACHE_DIR=str(shared_cache_dir()), NO_COLOR="1",
               HOME=str(root / "user"))
    (root / "user").mkdir()
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    f = Fleet(root / "home", env)
    f.run("sandbox", "image", "build", timeout=3600)   # cached: instant
    missing = slurmctl.missing_tools()
    if missing:
        msg = f"{', '.join(missing)} not installed (apt-get install -y slurm-wlm munge)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    f.run("sandbox", "up", "--guests", "qemu", "--spec", str(spec), timeout=300)
    try:
        f.slurm = SlurmController(Path(tempfile.mkdtemp(prefix="skyg-")), env)   # short: munged's socket path
        f.slurm.start()
        procs: dict[str, tuple[subprocess.Popen[str], float]] = {}
        trust = site_trust_profile(root)
        for group, (site, contexts, variables) in LAUNCHES.items():
            if group == "osg" and trust is not None:   # pip install from PyPI through this site's proxy
                contexts = [*contexts[:1], str(trust), *contexts[1:]]
            argv = [SKYCTL, "launch", group, "--site", site, "--image", "alma9", "--size", "small", "--wait",
                    "-o", "json"]
            for c in contexts:
                argv += ["--context", c]
            for k, v in variables.items():
                argv += ["--var", f"{k}={v}"]
            penv = dict(env)
            if group == "condor":
                penv["SKYCTL_VAR_pool_token"] = "eyJhbGciOiJIUzI1NiJ9.sandbox.token"
            if group == "osg":
                penv["SKYCTL_VAR_token"] = JUPYTER_TOKEN
            if group == "oneg":
                penv.update(f.slurm.guest_vars())
            procs[group] = (subprocess.Popen(argv, env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True), time.monotonic())
        def finish(group: str) -> Launch:   # each timed on its own, not in the order they are read
            proc, t0 = procs[group]
            out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
            launch = Launch(group, proc.returncode, out, err, round(time.monotonic() - t0, 1))
            if group == "oneg" and launch.code == 0 and f.slurm is not None:
                f.slurm.forward_from_host(f)   # at once: slurmctld pings its new node soon
            return launch

        with ThreadPoolExecutor(len(procs)) as pool:
            for launch in pool.map(finish, list(procs)):
                f.launches[launch.group] = launch
        f.status = f.sandbox_status()
        _report(f)
        yield f
    finally:
        if f.slurm is not None:
            f.slurm.stop()
        f.run("delete", "--yes", "osg", "oneg", "dock", "condor", check=False, timeout=300)
        f.run("sandbox", "down", check=False, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


class SlurmController:
    """A real slurmctld on this host for the guest `oneg-0`'s slurmd (see the module's doc)."""

    node = SLURM_NODE

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(self.conf)
        self.ctl_port = slurmctl.free_port()
        self.node_port = slurmctl.free_port()   # slurmd's port in the guest, and the forward's here
        self.munge: slurmctl.Munge | None = None
        self.slurmctld: subprocess.Popen[bytes] | None = None
        self.tunnel: subprocess.Popen[bytes] | None = None

    def cluster_lines(self) -> list[str]:
        """What both files say: the node (reached at this host's end of the forward) and its partition."""
        return [*slurmctl.COMMON_LINES,
                "ReturnToService=2", "SlurmdTimeout=30",   # a node back from not responding rejoins at once
                f"NodeName={SLURM_NODE} NodeAddr=127.0.0.1 Port={self.node_port} CPUs=1 RealMemory=200",
                f"PartitionName=guests Nodes={SLURM_NODE} Default=YES MaxTime=10 State=UP"]

    def guest_conf(self) -> str:
        """The guest's slurm.conf: the same cluster, its controller at the address the guest sees."""
        return "\n".join([
            "ClusterName=skyguests",
            f"SlurmctldHost={socket.gethostname()}({HOST_FROM_GUEST})",
            f"SlurmctldPort={self.ctl_port}",
            "SlurmUser=root", "SlurmdUser=root",
            *self.cluster_lines()]) + "\n"

    def start(self) -> None:
        self.munge = slurmctl.start_munged(self.root, self.env)
        lines = slurmctl.controller_lines(self.root, self.munge.socket, self.ctl_port, cluster="skyguests")
        lines = [ln for ln in lines if ln not in slurmctl.COMMON_LINES]
        self.conf.write_text("\n".join([*lines, *self.cluster_lines()]) + "\n")
        self.slurmctld = slurmctl.start_slurmctld(self.conf, self.env, self.root / "log")

    def guest_vars(self) -> dict[str, str]:
        assert self.munge is not None
        return {"SKYCTL_VAR_munge_key": self.munge_key_b64, "SKYCTL_VAR_slurm_conf": self.guest_conf()}

    @property
    def munge_key_b64(self) -> str:
        import base64

        assert self.munge is not None
        return base64.b64encode(self.munge.key).decode()

    def forward_from_host(self, f: Fleet) -> None:
        """127.0.0.1:node_port here -> the guest's slurmd, through the guest's own sshd."""
        log = open(self.root / "log" / "tunnel.out", "ab")  # noqa: SIM115 - the tunnel keeps writing to it
        try:
            self.tunnel = subprocess.Popen(
                [SKYCTL, "ssh", SLURM_NODE, "-N", "-L", f"127.0.0.1:{self.node_port}:127.0.0.1:{self.node_port}",
                 "--ssh-option", "ExitOnForwardFailure=yes", "--ssh-option", "ServerAliveInterval=15"],
                env=f.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()

    def run(self, *argv: str) -> str:
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def wait_for(self, what: str, check: Any, timeout: float = 300) -> Any:
        return slurmctl.wait_until(what, check, timeout, interval=2.0, explain=self.diagnostics)

    def diagnostics(self) -> str:
        return slurmctl.log_tails(self.root, ("log/slurmctld.log", "log/tunnel.out"), lines=30)

    def stop(self) -> None:
        for proc in (self.tunnel, self.slurmctld):
            if proc is not None:
                slurmctl.stop_group(proc)
        if self.munge is not None:
            self.munge.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _report(f: Fleet) -> None:
    """What the boots took, for the CI log (and the benchmark's numbers)."""
    timings = {v["name"]: v for v in (f.status.get("guests") or {}).get("vms", [])}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"real guests ({(f.status.get('guests') or {}).get('accel')}; load average now {load}):"]
    for group, launch in f.launches.items():
        t = timings.get(f"{group}-0") or {}
        lines.append(f"  {group}: launch --wait exit {launch.code} in {launch.seconds} s; QEMU start to "
                     f"cloud-init finished {t.get('finished_after')} s (guest uptime {t.get('guest_uptime_at_finish')} s)")
        if launch.code == 0:   # where the guest spent it: packages (apt) and scripts-user (the commands: pip...)
            blame = f.run("ssh", f"{group}-0", "--", "sudo -n cloud-init analyze blame", check=False).stdout
            lines += [f"    {ln.strip()}" for ln in blame.splitlines()
                      if any(w in ln.replace("_", "-") for w in ("package", "scripts-user", "users-groups"))]
    print("\n".join(lines), file=sys.stderr)
