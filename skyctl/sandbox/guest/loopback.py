"""One sandbox guest on a loopback address and port of the caller's choosing, outside any
sandbox cloud: the same SSH server, SFTP and guest tools as every sandbox VM, for one login
user and the public keys given (as a Nova keypair would deliver them).

    guest = start_guest(tmp / "vm", [public_key_line], user="cloud-user")
    ...  # ssh to guest.host:guest.port; guest.root is its file system
    guest.stop()
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import paramiko

from skyctl.sandbox.guest.server import Guest, VmSshFabric, fingerprint, listen
from skyctl.sandbox.world import Quota, SiteWorld

CONTEXT_STATES = ("running", "done", "error")


class LoopbackGuest:
    """A started guest: where it listens, what it shows, what it holds. Stop it when done."""

    def __init__(self, fabric: VmSshFabric, guest: Guest, state_dir: Path) -> None:
        self._fabric = fabric
        self._guest = guest
        self._state_dir = state_dir
        self.host, self.port = guest.address, int(guest.vm.ssh_port or 0)

    @property
    def root(self) -> Path:
        """The guest's file system: the SFTP root and the working directory of its commands."""
        return self._guest.root

    @property
    def host_key(self) -> paramiko.PKey:
        return self._guest.host_key

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._guest.host_key)

    @property
    def authorized_keys(self) -> list[str]:
        """The public key lines it accepts, read at every login: change the list to change that."""
        return self._guest.vm.ssh_keys

    @property
    def connections(self) -> int:
        """SSH connections accepted so far."""
        return self._guest.connections

    @property
    def forwarded(self) -> list[tuple[str, int]]:
        """The (host, port) destinations it relayed to as a jump host, in order."""
        with self._guest.lock:
            return list(self._guest.forwarded)

    def set_context(self, state: str) -> None:
        """What `cloud-init status` answers from now on: running, done, or error."""
        if state not in CONTEXT_STATES:
            raise ValueError(f"context state must be one of {', '.join(CONTEXT_STATES)}, not {state!r}")
        boot = self._fabric.boot
        if state == "running":
            boot.rewind(self._guest)
        else:
            boot.finish(self._guest, ("context failed",) if state == "error" else ())

    def stop(self) -> None:
        """Close its listener and sessions and end its commands; its root stays."""
        self._fabric.stop()
        shutil.rmtree(self._state_dir, ignore_errors=True)


def start_guest(root: Path, authorized_keys: Iterable[str], *, user: str = "cloud-user",
                host_key: paramiko.PKey | None = None, host: str = "127.0.0.1", port: int = 0,
                context: str = "done") -> LoopbackGuest:
    """Start one guest listening on host:port (port 0: a free one), with its files in `root`,
    letting `user` in with any of `authorized_keys` (authorized_keys lines). Its context is
    already in `context` state (see LoopbackGuest.set_context). OSError when the address
    cannot be bound."""
    listener = listen(host, port)
    bound_port = listener.getsockname()[1]
    state_dir = root.parent / f".{root.name}.guest"  # the guest tools beside it, not inside it
    fabric = VmSshFabric(state_dir / "vms", login_user=user, port=bound_port)
    try:
        fabric.start()
        world = SiteWorld("loopback", "openstack", quota=Quota(), flavors=[], images=[])
        vm = world.create_vm(name=root.name, vcpus=1, ram_mib=512, image_id="loopback",
                             ssh_keys=list(authorized_keys))
        guest = LoopbackGuest(fabric, fabric.serve(world, vm, root, listener, host_key=host_key), state_dir)
        guest.set_context(context)
    except BaseException:
        listener.close()
        fabric.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return guest
