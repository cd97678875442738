"""What Ctrl-C keeps, per command: the one line `skyctl` prints before it exits 130.

Commands that know more (a launch counts the nodes it created) raise their own `Interrupted`
with that line; every other command gets the sentence below for its name, so no Ctrl-C ends
silently or with a traceback.
"""

from __future__ import annotations

READ_ONLY = "nothing was changed"
MADE = "nodes already created are kept ('skyctl ps' lists them; 'skyctl reconcile' records any it missed)"

KEPT: dict[str, str] = {
    "sites": READ_ONLY, "plan": READ_ONLY, "ps": READ_ONLY, "show": READ_ONLY,
    "context": READ_ONLY, "simulate": READ_ONLY, "burst simulate": READ_ONLY, "completion": READ_ONLY,
    "launch": MADE,
    "scale": "nodes already created or deleted stay so, the rest are kept ('skyctl ps' shows the size now)",
    "delete": "nodes deleted so far are gone, the others are kept ('skyctl ps' lists them)",
    "reconcile": "what it fixed so far stays fixed; run 'skyctl reconcile' again for the rest",
    "burst run": "a move home that had started is in the intent log; 'skyctl reconcile' finishes or undoes it",
    "burst watch": "the tick in progress stopped; a move home that had started is in the intent log "
                   "('skyctl reconcile' finishes or undoes it)",
    "wait": "the nodes are kept; 'skyctl wait' waits again",
    "exec": "the nodes are kept; a command already started on a node may still be running there",
    "cp": "the nodes are kept; files copied so far are kept, the one in transit may be partial",
    "ssh": "the session ended; the node is kept",
    "ssh-config": READ_ONLY,
    "stop": "nodes already stopped stay stopped, the others are kept running",
    "start": "nodes already started stay running, the others are kept stopped",
    "slurm resume": MADE,
    "slurm suspend": "nodes deleted so far are gone, the others are kept",
    "slurm resume-fail": "nodes deleted so far are gone, the others are kept",
    "slurm reconcile": "what it fixed so far stays fixed; run it again for the rest",
    "sandbox": "the sandbox is left as it was ('skyctl sandbox status' shows it)",
}
DEFAULT = "what was done so far is kept ('skyctl ps' shows the nodes)"

# Global options that take a value (skipped when finding the command in argv).
_VALUED = {"-c", "--config", "--owner"}
_NESTED = {"burst", "slurm", "sandbox", "context"}


def command_of(argv: list[str]) -> str:
    """'burst run' for ['-v', 'burst', 'run', '--dry-run']; '' when there is none."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _VALUED:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        words.append(arg)
        if len(words) == 2 or words[0] not in _NESTED:
            break
    return " ".join(words[:2])


def kept_line(argv: list[str]) -> str:
    """'interrupted: <what was kept>' for the command in `argv`."""
    cmd = command_of(argv)
    kept = KEPT.get(cmd) or KEPT.get(cmd.split(" ")[0]) or DEFAULT
    return f"interrupted: {kept}"
