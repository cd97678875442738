"""`skyctl sandbox up | down | status | fault`: the embedded local federation.

`up` starts one detached process (`python -m skyctl.sandbox.server`) that outlives the
command; its pid file, log, runtime file and the generated federation file, clouds.yaml and
ONE_AUTH file live in `<XDG state>/skyctl/sandbox/` (dir 0700, files 0600). Only typer and
the light CLI modules are imported at module level (this loads for `skyctl --help`).
"""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from pathlib import Path
from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

app = typer.Typer(help="The embedded local federation: up, down, status, fault, image.", no_args_is_help=True)


def _add_image_commands() -> None:
    from skyctl.cli import guestimage

    app.add_typer(guestimage.app, name="image")


_add_image_commands()

START_TIMEOUT = 60.0   # seconds `up --wait` waits for the process to report it is serving
STOP_TIMEOUT = 15.0    # seconds `down` waits after SIGTERM before SIGKILL
LOG_KEEP_BYTES = 1 << 20  # the log starts afresh (one old copy kept) beyond this
_SERVER_MODULE = "skyctl.sandbox.server"


# ---------------------------------------------------------------- the process, seen from outside


def _dir() -> Path:
    from skyctl.paths import private_dir, state_dir

    return private_dir(state_dir() / "sandbox")


def _is_sandbox_process(pid: int) -> bool:
    """Alive, not a zombie, and (where /proc tells) really our server: a pid file can outlive
    its process and the pid can be reused by an unrelated one."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return _SERVER_MODULE.encode() in (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    return True


def _read_pid(d: Path) -> int | None:
    from skyctl.sandbox.server import PID_FILE

    try:
        return int((d / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_runtime(d: Path) -> dict[str, Any] | None:
    import json

    from skyctl.sandbox.server import RUNTIME_FILE

    try:
        data = json.loads((d / RUNTIME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _forget(d: Path) -> None:
    from skyctl.sandbox.server import PID_FILE, RUNTIME_FILE

    for name in (PID_FILE, RUNTIME_FILE):
        try:
            (d / name).unlink()
        except FileNotFoundError:
            pass


def _state(d: Path) -> tuple[str, int | None, dict[str, Any] | None]:
    """("running", pid, runtime) | ("starting", pid, None) | ("stopped", None, None).
    Stale pid/runtime files of a dead process are removed on the way."""
    pid = _read_pid(d)
    runtime = _read_runtime(d)
    if pid is None and runtime is not None:
        pid = runtime.get("pid")
    if pid is None or not _is_sandbox_process(int(pid)):
        _forget(d)
        return "stopped", None, None
    if runtime is not None and runtime.get("pid") == pid:
        return "running", int(pid), runtime
    return "starting", int(pid), None


def _not_running() -> Exception:
    from skyctl.errors import SkyError

    return SkyError("the sandbox is not running (start it with 'skyctl sandbox up')")


def _control(runtime: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the running process's control channel. The token never appears in errors."""
    import json
    import urllib.error
    import urllib.request

    from skyctl.errors import SkyError, UsageError

    control = runtime["control"]
    req = urllib.request.Request(control["url"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {control['token']}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            message = e.reason
        raise (UsageError if 400 <= e.code < 500 else SkyError)(f"sandbox: {message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SkyError(f"the sandbox process does not answer on its control channel ({reason})") from None


def _status_doc(runtime: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
    """The documented `status -o json` shape, plus what the process reports live."""
    live_sites = {s["name"]: s for s in (live or {}).get("sites", [])}
    sites = []
    for s in runtime["sites"]:
        entry: dict[str, Any] = {"name": s["name"], "driver": s["driver"], "endpoint": s["endpoint"]}
        if s["driver"] == "openstack":
            entry.update(clouds_yaml=s["clouds_yaml"], cloud=s["cloud"])
        else:
            entry["one_auth"] = s["one_auth"]
        if s.get("ca_bundle"):
            entry["ca_bundle"] = s["ca_bundle"]   # the private CA of a site served over HTTPS
        entry["ssh_port"] = s["ssh_port"]
        if s["name"] in live_sites:
            ls = live_sites[s["name"]]
            entry.update(vms=ls["vms"], ready=ls["ready"], requests=ls["requests"], faults=ls["faults"],
                         creates_held=ls.get("creates_held", 0), creates_in_progress=ls.get("creates_in_progress", 0))
        sites.append(entry)
    doc: dict[str, Any] = {"pid": runtime["pid"], "config": runtime["config"], "sites": sites}
    if (live or {}).get("guests"):
        doc["guests"] = live["guests"]   # type: ignore[index]  # real guests: accel, QEMU count, boot times
    return doc


def _status_table(doc: dict[str, Any]) -> Any:
    t = term()

    def faults(f: dict[str, Any] | None) -> str:
        if not f:
            return "?"
        if f["down"]:
            return "DOWN"
        parts = [f"{k}={f[k]:g}" for k in ("latency_ms", "error_rate") if f[k]]
        return ", ".join(parts) or "none"

    table = t.table(["SITE", "DRIVER", "ENDPOINT", "VMS", "FAULTS", "BOOT DELAY"],
                    [(s["name"], s["driver"], s["endpoint"], s.get("vms", "?"), faults(s.get("faults")),
                      f"{s['faults']['boot_delay']:g}s" if s.get("faults") else "?") for s in doc["sites"]],
                    title=f"sandbox pid {doc['pid']}")
    from rich.console import Group
    from rich.text import Text

    guests = doc.get("guests")
    real = (f"\nreal guests: QEMU ({guests.get('accel')}), {guests.get('running')} running" if guests else "")
    return Group(table, Text(f"\nconfig: {doc['config']}\nuse it:  export SKYCTL_CONFIG={doc['config']}{real}"))


def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in text if " ERROR " in ln or "Error" in ln]
    return (errors or text[-lines:] or [""])[-1].strip()


# ---------------------------------------------------------------- commands


@app.command()
def up(
    spec: Annotated[Path | None, typer.Option("--spec", metavar="FILE",
                                              help="A sandbox spec (YAML) merged over the default federation.")] = None,
    boot_delay: Annotated[float | None, typer.Option("--boot-delay", metavar="S", min=0,
                                                     help="Seconds from create to running, every site.")] = None,
    guests: Annotated[str | None, typer.Option(
        "--guests", metavar="KIND",
        help="'qemu': every VM boots a real Debian 12 under QEMU and runs real cloud-init on its "
             "context (builds the image first if needed). Without it VMs are SSH endpoints on this "
             "host that run no context script.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every site answers.")] = True,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Start the local federation (home: OpenStack, cc: OpenNebula, sara: OpenStack) in the background.

    Writes the federation file, clouds.yaml and a ONE_AUTH file (0600) to the state dir; point
    skyctl at it with SKYCTL_CONFIG (status shows the path). Running it again is harmless.
    """
    import json
    import os
    import subprocess
    import sys

    from skyctl.errors import SkyError
    from skyctl.paths import write_private
    from skyctl.polling import Expired, iterate_timeout
    from skyctl.sandbox import spec as specmod
    from skyctl.sandbox.server import LOG_FILE, PID_FILE, SPEC_FILE

    t = term()
    d = _dir()
    state, pid, runtime = _state(d)
    if state == "running":
        assert runtime is not None
        t.info(f"the sandbox is already running (pid {pid})")
        _emit_status(runtime, output)
        return
    if state == "starting":
        t.info(f"the sandbox is already starting (pid {pid}); 'skyctl sandbox status' shows when it is up")
        return

    user = specmod.load_file(spec) if spec is not None else None
    resolved = specmod.resolve(user, boot_delay=boot_delay, guests=guests)
    if resolved.get("guests") == "qemu":
        from skyctl.cli.guestimage import ensure_image
        from skyctl.sandbox.guest.image import DEFAULT_USER

        if resolved["login_user"] != DEFAULT_USER:
            from skyctl.errors import ConfigError

            raise ConfigError(f"real guests log in as the image's default user {DEFAULT_USER}", path="login_user")
        image, _ = ensure_image()
        resolved["guest_image"] = str(image.dir)
    write_private(d / SPEC_FILE, json.dumps(resolved, indent=1))
    log_path = d / LOG_FILE
    if log_path.exists() and log_path.stat().st_size > LOG_KEEP_BYTES:
        os.replace(log_path, log_path.with_name(LOG_FILE + ".1"))  # one old log is enough
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-m", _SERVER_MODULE, "--dir", str(d)],
                                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, cwd=d,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(log_fd)
    write_private(d / PID_FILE, f"{proc.pid}\n")
    if not wait:
        t.info(f"the sandbox is starting (pid {proc.pid}); 'skyctl sandbox status' shows when it is up")
        return

    try:
        for _ in iterate_timeout(START_TIMEOUT, "the sandbox to start", interval=0.05):
            rc = proc.poll()
            if rc is not None:
                _forget(d)
                raise SkyError(f"the sandbox process exited ({rc}) while starting: {_log_tail(log_path)}",
                               hint=f"log: {log_path}")
            runtime = _read_runtime(d)
            if runtime is not None and runtime.get("pid") == proc.pid:
                break
    except Expired:
        proc.terminate()
        raise SkyError(f"the sandbox did not come up within {START_TIMEOUT:g} s", hint=f"log: {log_path}") from None
    t.info(f"the sandbox is up (pid {proc.pid})")
    _emit_status(runtime, output)


def _emit_status(runtime: dict[str, Any], output: OutputFormat) -> None:
    live = None
    try:
        live = _control(runtime, "GET", "/v1/status")
    except Exception as e:  # noqa: BLE001 - the documented part does not need it
        term().warn(str(e))
    term().emit(_status_doc(runtime, live), output, table=_status_table)


@app.command()
def down() -> None:
    """Stop the sandbox process and wait until it has exited (its VMs go with it)."""
    import contextlib
    import os
    import signal

    from skyctl.polling import Expired, iterate_timeout

    t = term()
    d = _dir()
    _, pid, _ = _state(d)
    if pid is None:
        t.info("the sandbox is not running")
        return
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(Expired):
            for _ in iterate_timeout(timeout, "the sandbox to stop", interval=0.05):
                if not _is_sandbox_process(pid):
                    break
        if not _is_sandbox_process(pid):
            break
        t.warn(f"the sandbox (pid {pid}) did not stop within {timeout:g} s; killing it")
    if _is_sandbox_process(pid):
        from skyctl.errors import SkyError

        raise SkyError(f"could not stop the sandbox process (pid {pid})")
    _forget(d)
    t.info(f"the sandbox is stopped (pid {pid})")


@app.command()
def status(output: OutputOpt = OutputFormat.table) -> None:
    """Show the running sandbox: pid, federation file, each site's endpoint and credentials file.

    Exits 1 when it is not running.
    """
    d = _dir()
    state, pid, runtime = _state(d)
    if state == "starting":
        from skyctl.errors import SkyError

        raise SkyError(f"the sandbox is still starting (pid {pid})")
    if runtime is None:
        raise _not_running()
    _emit_status(runtime, output)


@app.command()
def fault(
    site: Annotated[str, typer.Argument(help="The site to change.")],
    latency: Annotated[float | None, typer.Option("--latency", metavar="MS", min=0,
                                                  help="Milliseconds added to every request.")] = None,
    error_rate: Annotated[float | None, typer.Option("--error-rate", metavar="P", min=0, max=1,
                                                     help="Share of requests answered with a server error "
                                                     "(OpenStack 5xx, OpenNebula 0x2000).")] = None,
    down: Annotated[bool | None, typer.Option("--down/--up", help="Refuse connections / serve again.")] = None,
    boot_delay: Annotated[float | None, typer.Option("--boot-delay", metavar="S", min=0,
                                                     help="Seconds new VMs take to boot.")] = None,
    hold_creates_after: Annotated[int | None, typer.Option(
        "--hold-creates-after", metavar="N", min=0,
        help="Accept N more creates, then hold further create requests open (the client waits) until "
             "--release-creates.")] = None,
    release_creates: Annotated[bool, typer.Option("--release-creates",
                                                  help="Let held create requests go on.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Inject faults into a running site, or clear them (--latency 0 --error-rate 0 --up --release-creates).

    With no option, shows the site's current faults.
    """
    from skyctl.errors import UsageError

    d = _dir()
    _, _, runtime = _state(d)
    if runtime is None:
        raise _not_running()
    names = [s["name"] for s in runtime["sites"]]
    if site not in names:
        raise UsageError(f"unknown site {site!r} (sites: {', '.join(names)})")
    if release_creates and hold_creates_after is not None:
        raise UsageError("give --hold-creates-after or --release-creates, not both")
    change = {k: v for k, v in {"latency_ms": latency, "error_rate": error_rate, "down": down,
                                "boot_delay": boot_delay, "hold_creates_after": hold_creates_after,
                                }.items() if v is not None}
    if release_creates:
        change["hold_creates_after"] = -1
    if change:
        result = _control(runtime, "POST", f"/v1/faults/{site}", change)
    else:
        live = _control(runtime, "GET", "/v1/status")
        result = next(s for s in live["sites"] if s["name"] == site)
    doc = {"name": result["name"], "driver": result["driver"], "faults": result["faults"]}

    def table(data: dict[str, Any]) -> str:
        f = data["faults"]
        held = f.get("hold_creates_after")
        return (f"{data['name']}: {'DOWN (refusing connections)' if f['down'] else 'up'}, "
                f"latency {f['latency_ms']:g} ms, error rate {f['error_rate']:g}, boot delay {f['boot_delay']:g} s"
                + (f", holding creates after {held} more" if held is not None else ""))

    term().emit(doc, output, table=table)
