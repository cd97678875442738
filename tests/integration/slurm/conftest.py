"""The real Slurm tier's cluster, started once for the module and stopped whatever happens:
a private munged, slurmctld with the lines `skyctl slurm config` prints, the sandbox federation
as its cloud, and the node agent.

The node agent stands in for the guest side of the slurm-worker profile: a sandbox VM is a
directory and an SSH server, not a machine that can run slurmd, so for every slurm node whose
VM runs on a sandbox cloud the agent runs that guest's `slurmd -D -b -N NAME` on this host
(what the profile's `systemctl restart slurmd` starts), and stops it as soon as the VM is gone
from the cloud (deleted, or killed by a test). Slurm therefore sees exactly the nodes whose VMs
run, register with their names, run jobs and go idle. A VM that goes takes everything of its
node with it: slurmd's process group, and the slurmstepd and job processes slurmd started in
sessions of their own (found by the node agent's marker or the job's SLURMD_NODENAME, under
this cluster's SLURM_CONF), as a powered-off machine would.

Nothing runs at import: collecting this folder in the default run (which deselects the
`slurm` marker) costs nothing and needs no Slurm.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing.slurmctl import (controller_lines, free_port, log_tails, missing_tools, start_munged,
                                     start_slurmctld, stop_group, wait_until)

SKYCTL = str(Path(sys.executable).with_name("skyctl"))
GROUP = "skyb"
NODES = [f"sky-{i}" for i in range(1, 9)]
SUSPEND_TIME = 15
AGENT_MARK = "SKYCTL_TIER_NODE"   # in the environment of a node's slurmd, and so of its slurmstepds


class Cluster:
    suspend_time = SUSPEND_TIME

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "skyctl"
        self.conf = root / "slurm.conf"
        self.sky_yaml = root / "sky.yaml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYCTL_", "OS_", "ONE_", "SLURM_"))}
        self.env.update(SKYCTL_HOME=str(self.home), HOME=str(root / "user"), NO_COLOR="1", SLURM_CONF=str(self.conf))
        (root / "user").mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.slurmd: dict[str, subprocess.Popen[bytes]] = {}
        self.slurmd_started: dict[str, int] = {}
        self._stop = threading.Event()
        self._agent: threading.Thread | None = None
        self.agent_errors: list[str] = []
        self.hold_slurmd = False     # a test's guest that never finishes booting: no new slurmd
        self.resume_timeout = 60    # slurmd registers well within it, even on a loaded 2-core machine

    # --- commands ---------------------------------------------------------------------------
    def run(self, *argv: str, ok: tuple[int, ...] = (0,), timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode in ok, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def sky(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        return self.run(SKYCTL, "--config", str(self.sky_yaml), *args, ok=ok)

    def vms(self) -> list[dict[str, Any]]:
        """The slurm group's VMs as the clouds list them."""
        import json

        return list(json.loads(self.sky("ps", GROUP, "-o", "json", ok=(0, 3)).stdout))

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args).stdout

    def node_states(self) -> dict[str, str]:
        out = self.scontrol("-o", "show", "nodes")
        states = {}
        for line in out.splitlines():
            f = dict(p.split("=", 1) for p in line.split() if "=" in p)
            states[f["NodeName"]] = f.get("State", "")
        return states

    # --- start ------------------------------------------------------------------------------
    def start(self, *, home_instances: int = 4) -> None:
        spec = self.root / "spec.yaml"
        spec.write_text(yaml.safe_dump({"sites": {"home": {"quota": {"instances": home_instances}}}}))
        self.run(SKYCTL, "sandbox", "up", "--spec", str(spec), "--boot-delay", "0.5", timeout=180)
        self._write_federation()
        self._start_munged()
        self._write_slurm_conf()
        self._start_slurmctld()
        self._agent = threading.Thread(target=self._agent_loop, name="slurm-node-agent", daemon=True)
        self._agent.start()

    def _write_federation(self) -> None:
        sandbox = yaml.safe_load((self.home / "state" / "sandbox" / "sky.yaml").read_text())
        sandbox.pop("bursting", None)
        sandbox["bursting"] = [{"name": "overflow", "from": ["home"], "to": ["cc", "sara"], "order": "cost"}]
        sandbox["slurm"] = {
            "groups": {GROUP: {"nodes": "sky-[1-8]", "partition": "sky", "features": ["burst"],
                               "size": "small", "contexts": ["base", "slurm-worker"],
                               "variables": {"controller": "127.0.0.1"}}},
            "programs_dir": str(self.root / "programs"),
            "log": str(self.root / "skyctl-slurm.log"),
            "suspend_time": SUSPEND_TIME, "suspend_timeout": 10, "resume_timeout": self.resume_timeout,
        }
        self.sky_yaml.write_text(yaml.safe_dump(sandbox, sort_keys=False))

    def _start_munged(self) -> None:
        self.munge = start_munged(self.root, self.env)
        self.munge_socket = self.munge.socket
        # The secret the slurm-worker profile receives: from the programs' env file, never the federation file.
        env = self.root / "programs" / "env"
        env.parent.mkdir(exist_ok=True)
        import base64

        env.write_text(f"SKYCTL_VAR_munge_key={base64.b64encode(self.munge.key).decode()}\n"
                       f"SLURM_CONF={self.conf}\n")
        env.chmod(0o600)

    def _write_slurm_conf(self) -> None:
        generated = self.sky("slurm", "config", "--write-programs").stdout.splitlines()
        self.ports = {name: free_port() for name in NODES}
        ctl_port = free_port()
        lines = controller_lines(self.root, self.munge_socket, ctl_port)
        for line in generated:
            if line.startswith("NodeName="):
                # One slurmd per node on this one host: each needs its own port.
                rest = line.split(" ", 1)[1]
                lines += [f"NodeName={n} NodeHostname=127.0.0.1 NodeAddr=127.0.0.1 Port={self.ports[n]} {rest}"
                          for n in NODES]
            elif line.startswith("PartitionName="):
                lines.append(line + " Default=YES MaxTime=10")
            else:
                lines.append(line)
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_slurmctld(self) -> None:
        self.procs.append(start_slurmctld(self.conf, self.env, self.root / "log"))

    # --- the node agent ---------------------------------------------------------------------
    def _agent_loop(self) -> None:
        while not self._stop.is_set():
            try:
                running = {v["name"] for v in self.vms() if v["state"] == "running"}
                self._sync_slurmd(running)
            except Exception as e:  # noqa: BLE001 - told to the test at the end
                self.agent_errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(0.5)

    def _sync_slurmd(self, running: set[str]) -> None:
        for name in sorted(running - set(self.slurmd)):
            if name not in self.ports or self.hold_slurmd:
                continue
            log = open(self.root / "log" / f"slurmd-{name}.out", "ab")
            self.slurmd[name] = subprocess.Popen(["slurmd", "-D", "-b", "-N", name, "-f", str(self.conf)],
                                                 env={**self.env, AGENT_MARK: name}, stdout=log, stderr=log,
                                                 start_new_session=True)
            self.slurmd_started[name] = self.slurmd_started.get(name, 0) + 1
        for name in sorted(set(self.slurmd) - running):
            self._stop_slurmd(name)

    def _stop_slurmd(self, name: str) -> None:
        proc = self.slurmd.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)   # the VM is gone: its slurmd with it, jobs and all
        proc.wait(timeout=10)
        for pid in self.node_processes(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def node_processes(self, name: str) -> list[int]:
        """Processes of node `name` of this cluster: its slurmd and slurmstepds (started with the
        agent's marker) and its jobs' processes (SLURMD_NODENAME), each under our SLURM_CONF."""
        conf = f"SLURM_CONF={self.conf}".encode()
        marks = (f"{AGENT_MARK}={name}".encode(), f"SLURMD_NODENAME={name}".encode())
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:   # gone meanwhile, or not ours to read
                continue
            if conf in env and any(m in env for m in marks):
                out.append(int(entry.name))
        return out

    # --- waiting ----------------------------------------------------------------------------
    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        return wait_until(what, check, timeout, interval=interval, explain=self.diagnostics)

    def diagnostics(self) -> str:
        parts = [log_tails(self.root, ("skyctl-slurm.log", "log/slurmctld.log"))]
        try:
            parts.append("--- sinfo\n" + self.run("sinfo", "-N", "-l", ok=(0, 1)).stdout)
            parts.append("--- squeue\n" + self.run("squeue", ok=(0, 1)).stdout)
        except Exception as e:  # noqa: BLE001
            parts.append(f"(sinfo failed: {e})")
        return "\n".join(parts)

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._agent is not None:
            self._agent.join(timeout=10)
        for name in list(self.slurmd):
            self._stop_slurmd(name)
        for proc in self.procs:
            stop_group(proc)
        if getattr(self, "munge", None) is not None:
            self.munge.stop()
        subprocess.run([SKYCTL, "sandbox", "down"], env=self.env, capture_output=True, timeout=120)


def require_slurm() -> None:
    missing = missing_tools()
    if missing:
        import pytest

        msg = f"{', '.join(missing)} not installed (apt-get install -y slurm-wlm munge)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_slurm()
    # Short: munged's socket path must fit a sockaddr_un.
    root = Path(tempfile.mkdtemp(prefix="skyslurm-"))
    c = Cluster(root)
    try:
        c.start(home_instances=4)
        yield c
    finally:
        c.stop()
    assert not c.agent_errors[-3:], c.agent_errors[-3:]
