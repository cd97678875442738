"""What a sandbox server's guest shows Nova: its hostname and the boot log on its serial console
(shaped like a cloud image's, with cloud-init's host key block so clients can check the key)."""

from __future__ import annotations

import re

from skyctl.sandbox.openstack.http import iso
from skyctl.sandbox.world import SVM


def hostname(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"


def host_key_block(vm: SVM, host: str) -> list[str]:
    """What cloud-init's keys_to_console module prints, so clients can check the SSH host key."""
    if not vm.host_key_fingerprint:
        return []
    stamp = "<14>Nov 27 00:00:03 cloud-init:"
    return [f"{stamp} #############################################################",
            f"{stamp} -----BEGIN SSH HOST KEY FINGERPRINTS-----",
            f"{stamp} 256 {vm.host_key_fingerprint} root@{host} (ED25519)",
            f"{stamp} -----END SSH HOST KEY FINGERPRINTS-----",
            f"{stamp} #############################################################"]


def console_text(vm: SVM) -> str:
    """A boot log shaped like a cloud image's serial console."""
    custom = vm.extra.get("console")
    if callable(custom):   # a real guest: its serial console as it is now
        return str(custom())
    if custom:
        return str(custom)
    booted = vm.created + vm.boot_delay
    host = vm.extra.get("hostname") or hostname(vm.name)
    lines = [
        "[    0.000000] Linux version 5.14.0-427.el9.x86_64 (sandbox) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt3)/vmlinuz root=UUID=sandbox console=ttyS0,115200n8",
        f"[    1.204711] cloud-init[612]: Cloud-init v. 23.4 running 'init-local' at {iso(booted)}.",
        f"[    2.518804] cloud-init[701]: Cloud-init v. 23.4 running 'init' at {iso(booted)}.",
        f"[    2.603317] cloud-init[701]: ci-info: | eth0 | True | {vm.address or '127.0.0.1'} | 255.0.0.0 |",
        f"[    3.110212] cloud-init[798]: Cloud-init v. 23.4 running 'modules:config' at {iso(booted)}.",
        *host_key_block(vm, host),
        f"[    3.402019] cloud-init[812]: Cloud-init v. 23.4 finished at {iso(booted)}. "
        "Datasource DataSourceOpenStackLocal [net,ver=2].  Up 3.40 seconds",
        "",
        f"{host} login: ",
    ]
    if vm.stopped:
        lines.append("[  OK  ] Reached target System Power Off.")
    return "\n".join(lines) + "\n"
