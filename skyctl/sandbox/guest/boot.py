"""Boot timing of sandbox VMs: what a guest holds from its first moment, and when its context
counts as applied.

At create the user-data / CONTEXT it received sits at the paths real guests use, inside the VM
dir. After its boot delay the context is "applied": `cloud-init status` answers `status: done`
(`status: running` before) and `vm.ready` is set (the OpenNebula front turns it into
`READY=YES` when REPORT_READY was asked, as OneGate does). The context's own scripts (runcmd,
START_SCRIPT, packages, users) never run: they would run on this host, as whoever started the
sandbox. Real guests (`sandbox up --guests qemu`, `qemu`) apply them inside a VM. One timer
thread serves every VM.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from skyctl.sandbox.guest.access import cloud_config_docs, context_sh, guest_user_data
from skyctl.sandbox.world import SVM, SiteWorld

log = logging.getLogger("skyctl.sandbox.ssh")

# Paths inside a VM dir, as on a real guest.
USER_DATA_PATH = "var/lib/cloud/instance/user-data.txt"
ONE_CONTEXT_PATH = "var/run/one-context/context.sh"
CLOUD_INIT_RESULT = "run/cloud-init/result.json"
CLOUD_INIT_STATUS = "run/cloud-init/status.json"
CLOUD_INIT_OUTPUT = "var/log/cloud-init-output.log"

# Stand-ins for the guest tools that skyctl and users call over SSH. They live in one shared
# bin dir on every VM's PATH (not copied per VM: 3000 VMs).
_CLOUD_INIT_SH = r"""#!/bin/sh
# Sandbox stand-in for a guest's cloud-init: answers 'cloud-init status' from the VM's own
# run/cloud-init/result.json, which the sandbox writes once the context is applied.
root="${SKYCTL_SANDBOX_VM:-.}"
if [ "$1" != status ]; then
  echo "cloud-init: the sandbox guest only answers 'cloud-init status'" >&2
  exit 2
fi
shift
wait=0
for a in "$@"; do
  case "$a" in -w|--wait) wait=1 ;; esac
done
while [ ! -f "$root/run/cloud-init/result.json" ]; do
  if [ "$wait" = 0 ]; then echo "status: running"; exit 0; fi
  sleep 0.1
done
if grep -q '"errors": \[\]' "$root/run/cloud-init/result.json"; then
  echo "status: done"
else
  echo "status: error"
  case " $* " in
    *" --long "*|*" -l "*)
      echo "detail:"
      sed -n 's/^   "\(.*\)",\{0,1\}$/\1/p' "$root/run/cloud-init/result.json" ;;
  esac
  exit 1
fi
"""

_SUDO_SH = r"""#!/bin/sh
# Sandbox guests run commands as the sandbox's own user: sudo just runs its command.
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -eq 0 ] && exit 0
exec "$@"
"""

_HOSTNAME_SH = r"""#!/bin/sh
# Sandbox guests answer with the name their context set (etc/hostname in the VM dir).
if [ $# -eq 0 ] && [ -f "${SKYCTL_SANDBOX_VM:-.}/etc/hostname" ]; then
  cat "${SKYCTL_SANDBOX_VM:-.}/etc/hostname"
  exit 0
fi
PATH="${PATH#*:}" exec hostname "$@"
"""


class BootingGuest(Protocol):
    """What boot needs of a guest (the SSH server's Guest has it)."""

    site: str
    kind: str
    world: SiteWorld
    vm: SVM
    root: Path
    address: str
    gone: bool


class _Timers:
    """One thread running callbacks at their time (context application for every VM)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sandbox-timers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.time()):
                    wait = (self._heap[0][0] - time.time()) if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # one VM's failure must not stop the others' contexts
                log.exception("sandbox timer callback failed")


class Boot:
    """The guest side every VM of one fabric shares: the tools on PATH, the login
    environment, and the timer that applies each VM's context after its boot delay."""

    def __init__(self, bin_dir: Path, *, login_user: str) -> None:
        self.bin_dir = bin_dir
        self.login_user = login_user
        self._timers = _Timers()

    def start(self) -> None:
        self._install_guest_tools()
        self._timers.start()

    def stop(self) -> None:
        self._timers.stop()

    def received(self, guest: BootingGuest) -> None:
        """Put what the VM received where a real guest keeps it, before it is reachable."""
        vm, root = guest.vm, guest.root
        user_data = guest_user_data(vm)
        if user_data is not None:
            _write(root / USER_DATA_PATH, user_data)
        if vm.context:
            _write(root / ONE_CONTEXT_PATH, context_sh(vm.context))
        _write(root / "var/lib/cloud/data/instance-id", vm.id + "\n")

    def schedule(self, guest: BootingGuest) -> None:
        """Apply the VM's context once its boot delay is over."""
        self._timers.at(guest.vm.created + guest.vm.boot_delay, lambda: self._apply_context(guest))

    def env(self, guest: BootingGuest, user: str | None, extra: dict[str, str]) -> dict[str, str]:
        """The environment a login shell (or a context script) of this guest runs with."""
        env = {"PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(guest.root), "USER": user or self.login_user, "LOGNAME": user or self.login_user,
               "SHELL": "/bin/sh", "LANG": "C.UTF-8", "SKYCTL_SANDBOX_VM": str(guest.root)}
        env.update({k: v for k, v in extra.items() if k not in ("PATH", "SKYCTL_SANDBOX_VM")})
        return env

    def _install_guest_tools(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text in (("cloud-init", _CLOUD_INIT_SH), ("sudo", _SUDO_SH), ("hostname", _HOSTNAME_SH)):
            p = self.bin_dir / name
            p.write_text(text, encoding="utf-8")
            p.chmod(0o700)

    def _apply_context(self, guest: BootingGuest) -> None:
        if guest.gone:
            return
        self.finish(guest)

    def finish(self, guest: BootingGuest, errors: tuple[str, ...] = ()) -> None:
        """The end of boot: the hostname the context set, then the result cloud-init leaves
        (with `errors`) and `vm.ready`."""
        vm, root = guest.vm, guest.root
        hostname = vm.context.get("SET_HOSTNAME") or next(
            (str(d["hostname"]) for d in cloud_config_docs(guest_user_data(vm)) if d.get("hostname")), vm.name)
        _write(root / "etc/hostname", hostname + "\n")
        failed = list(errors)
        if guest.gone:
            return
        source = "DataSourceOpenNebula" if guest.kind == "opennebula" else "DataSourceOpenStack"
        # What cloud-init's own stages print to cloud-init-output.log (its output: all |
        # tee -a /var/log/cloud-init-output.log), after any script output above.
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        _write(root / CLOUD_INIT_OUTPUT, "".join(
            f"Cloud-init v. 23.4 running '{stage}' at {stamp}. Up 3.0 seconds.\n"
            for stage in ("init", "modules:config", "modules:final"))
            + f"Cloud-init v. 23.4 finished at {stamp}. Datasource {source}.  Up 3.4 seconds\n"
            + "".join(f"{e}\n" for e in failed), append=True)
        _write(root / CLOUD_INIT_STATUS, json.dumps({"v1": {"datasource": source, "init": {"errors": failed}}}))
        _write(root / CLOUD_INIT_RESULT, json.dumps({"v1": {"datasource": source, "errors": failed}}, indent=1))
        with guest.world.lock:
            vm.ready = True  # fronts show it: READY=YES with REPORT_READY (OpenNebula)
        log.debug("%s/%s: context applied (%s)", guest.site, vm.id, "errors" if failed else "ok")

    def rewind(self, guest: BootingGuest) -> None:
        """Back to before the context was applied, as after `cloud-init clean`: status running."""
        for path in (CLOUD_INIT_RESULT, CLOUD_INIT_STATUS):
            (guest.root / path).unlink(missing_ok=True)
        with guest.world.lock:
            guest.vm.ready = False


def _write(path: Path, text: str, *, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        f.write(text)
