"""A private Slurm controller for the test tiers that need a real one (tests/integration/slurm,
tests/integration/guests): Debian's munged on a socket and key of its own, and slurmctld in
the foreground, both under a folder of the caller's, so several tiers or engineers never share
a daemon. Nothing here imports pytest.

    munge = start_munged(root)                 # root short: munged's socket path is a sockaddr_un
    conf.write_text("\\n".join(controller_lines(root, munge.socket, port) + [...]) + "\\n")
    ctl = start_slurmctld(conf, env, root / "log")
    ...
    stop_group(ctl); munge.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyctl.polling import Expired, iterate_timeout

TOOLS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol")


def missing_tools(tools: tuple[str, ...] = TOOLS) -> list[str]:
    """The Slurm / munge programs not on PATH (apt-get install -y slurm-wlm munge)."""
    return [t for t in tools if shutil.which(t) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Munge:
    """A running private munged: its socket, and the key it was started with."""

    socket: Path
    key_file: Path

    @property
    def key(self) -> bytes:
        return self.key_file.read_bytes()

    def stop(self) -> None:
        subprocess.run(["munged", "--stop", f"--socket={self.socket}"], capture_output=True, timeout=30, check=False)


def start_munged(root: Path, env: dict[str, str] | None = None) -> Munge:
    """munged with a fresh random key (root/munge.key) on root/munge/munge.sock; it forks and
    returns once it listens."""
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    d = root / "munge"
    d.mkdir(exist_ok=True)
    sock = d / "munge.sock"
    proc = subprocess.run(["munged", "--force", f"--socket={sock}", f"--key-file={key}",
                           f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                           f"--seed-file={d / 'munged.seed'}"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"munged exited {proc.returncode}: {proc.stderr.strip()}")
    return Munge(sock, key)


def controller_lines(root: Path, munge_socket: Path, port: int, *, cluster: str = "skytier",
                     address: str = "127.0.0.1") -> list[str]:
    """The slurm.conf lines of a controller on this host at `address`:`port` (slurmctld listens
    on every address), running as whoever starts it, its state and logs under root (made here)."""
    for sub in ("state", "spool", "log", "run"):
        (root / sub).mkdir(exist_ok=True)
    return [
        f"ClusterName={cluster}",
        f"SlurmctldHost={socket.gethostname()}({address})",
        f"SlurmctldPort={port}",
        f"AuthInfo=socket={munge_socket}",
        "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}/%n",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run'}/slurmd-%n.pid",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log'}/slurmd-%n.log",
        *COMMON_LINES,
    ]


# What every test cluster sets besides its paths: no accounting, no cgroups, quick scheduling.
COMMON_LINES = (
    "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
    "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
    "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
    "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none",
    "SchedulerParameters=sched_interval=2", "MaxNodeCount=16",
    "DebugFlags=Power", "SlurmctldDebug=info", "SlurmdDebug=info",
    "InactiveLimit=0", "KillWait=5", "MinJobAge=300", "Waittime=0",
)


def start_slurmctld(conf: Path, env: dict[str, str], log_dir: Path, *, timeout: float = 30) -> subprocess.Popen[bytes]:
    """slurmctld -D on `conf` (a clean start), in a session of its own; returns once
    `scontrol ping` answers. RuntimeError (with its log's tail) when it exits or never answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "slurmctld.out", "ab") as out:
        proc = subprocess.Popen(["slurmctld", "-D", "-c", "-i", "-f", str(conf)], env=env,
                                stdout=out, stderr=out, start_new_session=True)
    ping_env = {**env, "SLURM_CONF": str(conf)}
    try:
        for _ in iterate_timeout(timeout, "slurmctld to answer scontrol ping", interval=0.5):
            if subprocess.run(["scontrol", "ping"], env=ping_env, capture_output=True, check=False).returncode == 0:
                return proc
            if proc.poll() is not None:
                break
    except Expired:
        pass
    stop_group(proc)
    raise RuntimeError("slurmctld did not answer scontrol ping:\n" + log_tails(log_dir, ("slurmctld.log", "slurmctld.out")))


def log_tails(folder: Path, names: Iterable[str], lines: int = 40) -> str:
    """The last `lines` lines of each of `names` under `folder` that exists, each under a header."""
    parts = []
    for name in names:
        p = folder / name
        if p.exists():
            parts.append(f"--- {name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(parts)


def wait_until(what: str, check: Callable[[], Any], timeout: float, *, interval: float = 1.0,
               explain: Callable[[], str] = lambda: "") -> Any:
    """check() every `interval` s until it returns something true, which is returned; else an
    AssertionError naming `what`, the last answer and explain() (the tier's logs)."""
    last = None
    try:
        for _ in iterate_timeout(timeout, what, interval=interval):
            last = check()
            if last:
                return last
    except Expired:
        pass
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}\n{explain()}")


def stop_group(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session), SIGKILL after
    `grace` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
