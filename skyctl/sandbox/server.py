"""The sandbox process: one protocol front per site, SSH-able VMs, a control channel.

Started detached by `skyctl sandbox up` as `python -m skyctl.sandbox.server --dir DIR`, where
DIR (`<state>/sandbox`, 0700) already holds `spec.json`, the resolved spec. The process:
- builds a `SiteWorld` per site and serves it on 127.0.0.1 (OpenStack or OpenNebula front);
- gives every VM an SSH endpoint (`guest`);
- writes, all 0600: the federation file `sky.yaml`, `clouds.yaml`, `one_auth` (fresh random
  passwords each start), `sandbox.pid` and, last, `runtime.json`, whose presence with this
  pid means "up" (ports, control channel, per-site files);
- answers fault changes on a loopback HTTP/JSON control channel guarded by a token that only
  `runtime.json` holds;
- on SIGTERM/SIGINT stops everything, removes its VMs' dirs, `runtime.json` and the pid file.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyctl.paths import private_dir, write_private
from skyctl.sandbox import spec as specmod

if TYPE_CHECKING:  # pragma: no cover
    from skyctl.sandbox.world import SiteWorld

log = logging.getLogger("skyctl.sandbox")

SPEC_FILE = "spec.json"
RUNTIME_FILE = "runtime.json"
PID_FILE = "sandbox.pid"
LOG_FILE = "sandbox.log"
CONFIG_FILE = "sky.yaml"
CLOUDS_FILE = "clouds.yaml"
ONE_AUTH_FILE = "one_auth"
OPENSTACK_USER, OPENSTACK_PROJECT, OPENSTACK_REGION = "demo", "demo", "RegionOne"
ONE_USER = "skyuser"   # an ordinary user in group users, as at a real site


class Site:
    """One running site: its world and its protocol front."""

    def __init__(self, name: str, world: SiteWorld, front: Any, settings: dict[str, Any]) -> None:
        self.name = name
        self.world = world
        self.front = front
        self.settings = settings   # what runtime.json says about it (no secrets)
        self.lock = threading.Lock()

    @property
    def driver(self) -> str:
        return self.world.kind

    def set_faults(self, change: dict[str, Any]) -> dict[str, Any]:
        """Apply a fault change; `down` stops the listener (clients get connection refused)."""
        with self.lock:
            f = self.world.faults
            with self.world.lock:
                if change.get("latency_ms") is not None:
                    f.latency_ms = float(change["latency_ms"])
                if change.get("error_rate") is not None:
                    f.error_rate = float(change["error_rate"])
                if change.get("boot_delay") is not None:
                    f.boot_delay = float(change["boot_delay"])
            if "hold_creates_after" in change:  # a negative count releases the held creates
                hold = change["hold_creates_after"]
                self.world.hold_creates(None if hold is None or int(hold) < 0 else int(hold))
            down = change.get("down")
            if down is True and not f.down:
                f.down = True
                self.front.stop()
                log.info("%s: down (refusing connections)", self.name)
            elif down is False and f.down:
                self.front.start()
                f.down = False
                log.info("%s: up again on port %s", self.name, self.front.port)
            log.info("%s: faults now %s", self.name, f.as_dict())
            return self.status()

    def status(self) -> dict[str, Any]:
        with self.world.lock:
            vms = self.world.live_vms()
            return {"name": self.name, "driver": self.driver, "faults": self.world.faults.as_dict(),
                    "vms": len(vms), "ready": sum(1 for v in vms if v.ready),
                    "requests": self.world.request_count, "creates_held": self.world.creates_held,
                    "creates_in_progress": self.world.creates_in_progress}


def _make_front(world: SiteWorld, password: str, tls: Any = None) -> Any:
    if world.kind == "openstack":
        from skyctl.sandbox.openstack import OpenStackFront

        return OpenStackFront(world, host="127.0.0.1", port=0, username=OPENSTACK_USER, password=password,
                              project=OPENSTACK_PROJECT, region=OPENSTACK_REGION, tls=tls)
    from skyctl.sandbox.opennebula.methods import OpenNebulaFront

    return OpenNebulaFront(world, host="127.0.0.1", port=0, username=ONE_USER, password=password, tls=tls)


class Sandbox:
    def __init__(self, directory: Path, spec: dict[str, Any]) -> None:
        self.dir = directory
        self.spec = spec
        from skyctl.sandbox.guest.server import VmSshFabric

        self.sites: dict[str, Site] = {}
        self.guests = None
        if spec.get("guests") == "qemu":
            from skyctl.sandbox.guest.image import Image
            from skyctl.sandbox.guest.qemu import QemuGuests

            folder = Path(str(spec.get("guest_image") or ""))
            self.guests = QemuGuests(Image(folder, folder.name), folder.parent,
                                     memory_mib=int(spec.get("guest_memory_mib", 512)),
                                     accel=str(spec.get("guest_accel", "auto")))
        self.fabric = VmSshFabric(directory / "vms", login_user=spec["login_user"], guests=self.guests)
        self.token = secrets.token_urlsafe(32)
        self.control: ThreadingHTTPServer | None = None

    def start(self) -> dict[str, Any]:
        from skyctl.logsafe import register_secret

        register_secret(self.token)
        self.fabric.start()
        clouds: dict[str, dict[str, str]] = {}
        # One ONE_AUTH file holds one user:password, so every OpenNebula site shares it.
        one_auth = secrets.token_urlsafe(18)
        register_secret(one_auth)
        has_one = False
        per_site: dict[str, dict[str, Any]] = {}
        server_tls = None
        if any(s.get("tls") for s in self.spec["sites"].values()):
            # One private CA per start for every HTTPS site: what a client trusts is its PEM.
            from skyctl.sandbox.tls import make_server_tls

            server_tls = make_server_tls(self.dir, "sandbox")
        for index, (name, site_spec) in enumerate(self.spec["sites"].items()):
            world = specmod.build_world(name, site_spec, self.spec)
            world.image_dir = str(private_dir(self.dir / "images" / name))
            self.fabric.attach(world, index)
            password = secrets.token_urlsafe(18) if world.kind == "openstack" else one_auth
            register_secret(password)
            tls = server_tls if site_spec.get("tls") else None
            front = _make_front(world, password, tls.context() if tls else None)
            front.start()
            run: dict[str, Any] = {"name": name, "driver": world.kind, "port": front.port,
                                   "ssh_port": self.fabric.port, "ssh_subnet": f"127.{10 + index}.0.0/16"}
            if tls is not None:
                run["ca_bundle"] = str(tls.ca_pem)
            if world.kind == "openstack":
                clouds[name] = {"auth_url": front.auth_url, "username": OPENSTACK_USER, "password": password,
                                "project_name": OPENSTACK_PROJECT, "region_name": OPENSTACK_REGION}
                if tls is not None:
                    clouds[name]["cacert"] = str(tls.ca_pem)
                run.update(endpoint=front.auth_url, cloud=name, clouds_yaml=str(self.dir / CLOUDS_FILE))
            else:
                has_one = True
                run.update(endpoint=front.endpoint, one_auth=str(self.dir / ONE_AUTH_FILE))
            self.sites[name] = Site(name, world, front, run)
            per_site[name] = run
            log.info("%s: %s front on 127.0.0.1:%s", name, world.kind, run["port"])

        if clouds:
            write_private(self.dir / CLOUDS_FILE, _yaml(specmod.clouds_document(clouds)))
        if has_one:
            write_private(self.dir / ONE_AUTH_FILE, f"{ONE_USER}:{one_auth}\n")
        config = self.dir / CONFIG_FILE
        write_private(config, "# Written by 'skyctl sandbox up'; rewritten on every start.\n"
                      + _yaml(specmod.federation_document(self.spec, per_site)))
        self._start_control()
        assert self.control is not None
        runtime = {"pid": os.getpid(), "started": time.time(), "config": str(config),
                   "log": str(self.dir / LOG_FILE), "ssh_port": self.fabric.port,
                   "control": {"url": f"http://127.0.0.1:{self.control.server_address[1]}", "token": self.token},
                   "sites": [per_site[n] for n in self.sites],
                   "guests": "qemu" if self.guests is not None else "ssh"}
        write_private(self.dir / RUNTIME_FILE, json.dumps(runtime, indent=1))  # last: "we are up"
        log.info("sandbox up: %d sites, ssh port %s, config %s", len(self.sites), self.fabric.port, config)
        return runtime

    def stop(self) -> None:
        for path in (RUNTIME_FILE,):
            _unlink(self.dir / path)
        if self.control is not None:
            self.control.shutdown()
            self.control.server_close()
        for site in self.sites.values():
            try:
                site.front.stop()
            except Exception:  # keep stopping the rest
                log.exception("%s: stopping the front failed", site.name)
        self.fabric.stop()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": os.getpid(), "ssh_vms": self.fabric.guest_count(),
                               "sites": [s.status() for s in self.sites.values()]}
        if self.guests is not None:
            out["guests"] = {"kind": "qemu", "accel": self.guests.accel, "running": self.guests.count(),
                             "vms": self.guests.timings()}
        return out

    # ------------------------------------------------------------ control channel
    def _start_control(self) -> None:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "skyctl-sandbox-control"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("control: " + fmt, *args)

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if hmac.compare_digest(given.encode(), sandbox.token.encode()):
                    return True
                self._reply(401, {"error": "unauthorised"})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path == "/v1/status":
                    self._reply(200, sandbox.status())
                else:
                    self._reply(404, {"error": f"no such resource {self.path}"})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                prefix = "/v1/faults/"
                if not self.path.startswith(prefix):
                    self._reply(404, {"error": f"no such resource {self.path}"})
                    return
                site = sandbox.sites.get(self.path[len(prefix):])
                if site is None:
                    self._reply(404, {"error": f"unknown site (sites: {', '.join(sandbox.sites)})"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    change = json.loads(self.rfile.read(length) or b"{}")
                    _check_fault_change(change)
                except (ValueError, TypeError) as e:
                    self._reply(400, {"error": str(e)})
                    return
                try:
                    self._reply(200, site.set_faults(change))
                except OSError as e:
                    self._reply(500, {"error": f"{site.name}: could not apply: {e.strerror or e}"})

        self.control = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.control.daemon_threads = True
        threading.Thread(target=self.control.serve_forever, name="sandbox-control", daemon=True).start()


def _check_fault_change(change: Any) -> None:
    if not isinstance(change, dict):
        raise TypeError("a fault change is a JSON object")
    for key, value in change.items():
        if key not in ("latency_ms", "error_rate", "down", "boot_delay", "hold_creates_after"):
            raise ValueError(f"unknown fault {key!r}")
        if value is None:
            continue
        if key == "hold_creates_after":  # a count, or a negative number to release
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("hold_creates_after must be a whole number (negative: release)")
        elif key == "down":
            if not isinstance(value, bool):
                raise ValueError("down must be true or false")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a number >= 0")
        elif key == "error_rate" and value > 1:
            raise ValueError("error_rate must be between 0 and 1")


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skyctl.sandbox.server",
                                     description="The skyctl sandbox process (started by 'skyctl sandbox up').")
    parser.add_argument("--dir", required=True, help="the sandbox state dir holding spec.json")
    args = parser.parse_args(argv)
    directory = private_dir(Path(args.dir))

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    from skyctl.logsafe import install_redaction

    install_redaction()
    os.umask(0o077)

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    write_private(directory / PID_FILE, f"{os.getpid()}\n")
    try:
        # Already resolved by `up` (a site removed there must stay removed): validate only.
        spec = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
        specmod.validate(spec)
    except Exception as e:  # noqa: BLE001 - one clear line in the log, then exit
        log.error("cannot read the sandbox spec: %s", e)
        _unlink(directory / PID_FILE)
        return 2
    sandbox = Sandbox(directory, spec)
    try:
        sandbox.start()
    except Exception:
        log.exception("sandbox failed to start")
        sandbox.stop()
        _unlink(directory / PID_FILE)
        return 1
    while not stop.wait(timeout=1.0):
        pass
    sandbox.stop()
    _unlink(directory / PID_FILE)
    log.info("sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
