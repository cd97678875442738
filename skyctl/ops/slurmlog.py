"""The part of skyctl's Slurm programs that slurmctld waits for: the `slurm:` section read
from the federation, hostlists, the Slurm log and the resume file. Kept apart from
skyctl.ops.slurm (which loads the clouds' machinery) so that `skyctl slurm resume` imports
only this before it detaches: its return to slurmctld is mostly Python's imports."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from skyctl.config import Federation, SlurmConfig, expand_hostlist
from skyctl.errors import ConfigError, UsageError
from skyctl.policy.slurm import NodeSet


def slurm_of(fed: Federation) -> SlurmConfig:
    if fed.slurm is None:
        raise ConfigError("the federation file has no 'slurm:' section", path="slurm",
                          hint="add slurm.groups.GROUP with nodes (a hostlist) and partition")
    return fed.slurm


def node_sets(fed: Federation) -> list[NodeSet]:
    slurm = slurm_of(fed)
    out = []
    for group, s in slurm.groups.items():
        size = fed.sizes[s.size or fed.defaults.size or ""]
        out.append(NodeSet(group, tuple(s.names), s.partition, tuple(s.features), s.weight,
                           size.cpus, size.memory_mib))
    return out


def collect_hostlist(names: list[str]) -> str:
    import hostlist

    return str(hostlist.collect_hostlist(names))


def expand(text: str) -> list[str]:
    try:
        return expand_hostlist(text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def log_path(fed: Federation) -> Path:
    slurm = slurm_of(fed)
    if slurm.log:
        return Path(slurm.log).expanduser()
    from skyctl.paths import state_dir

    return state_dir() / "slurm.log"


class SlurmLog:
    """One line per event, `TIME VERB NODE site=SITE: reason`, appended (and echoed to stderr)."""

    def __init__(self, path: Path, *, echo: bool = True) -> None:
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def line(self, verb: str, node: str, site: str | None, why: str, *, echo: bool | None = None) -> None:
        """`echo` overrides the log's own choice for this line (True: a wait someone may be
        staring at, said on stderr even by `slurm reconcile`)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = f"{stamp} [{os.getpid()}] {verb} {node} site={site or '-'}: {why}"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
        if (self.echo if echo is None else echo) and sys.stderr is not None:   # slurmctld closes every fd of its programs
            try:
                sys.stderr.write(text + "\n")
            except (OSError, ValueError):
                pass


def read_resume_file(path: str | None) -> dict[str, Any] | None:
    """SLURM_RESUME_FILE's JSON (slurmctld removes it after about 10 s: read it at once)."""
    if not path:
        return None
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UsageError(f"SLURM_RESUME_FILE {path} does not exist (read too late?)") from None
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"SLURM_RESUME_FILE {path}: cannot read it ({type(e).__name__})") from None
