"""The real guests' disk image: Debian 12 with cloud-init, built with mmdebstrap from Debian's
own packages, cached in skyctl's cache dir under a key of everything that went into it.

`build` runs mmdebstrap into a folder, configures it as a cloud image (cloud-init's data
sources, the default user, no host keys or machine-id, slow timers masked), takes the kernel
and initrd out for direct kernel boot and turns the folder into an ext4 disk with
`mkfs.ext4 -d` (no loop mounts). Every VM then boots from a copy-on-write overlay of that
disk (`overlay`). A missing host tool is a `ToolMissing` naming the Debian package to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skyctl.errors import SkyError

IMAGE_VERSION = 1   # bump when the recipe below changes in a way the inputs do not show
SUITE = "bookworm"
DEFAULT_USER = "cloud-user"   # the sandbox's login_user: what a cloud image's default user is
DISK_SIZE = "2G"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# What a cloud image needs and no more (mmdebstrap --variant=minbase adds the essentials).
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "kmod", "initramfs-tools", "linux-image-cloud-amd64",
    "cloud-init", "openssh-server", "openssh-sftp-server", "sudo", "python3", "ifupdown", "isc-dhcp-client",
    "iproute2", "netbase", "procps", "curl", "ca-certificates",
    # cloud-init's ntp module picks an installed client; without one it would install chrony.
    "systemd-timesyncd",
)

# Units that only slow a software-emulated boot down (or touch the network on a timer).
MASKED_UNITS = ("e2scrub_reap.service", "apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer",
                "e2scrub_all.timer", "man-db.timer", "systemd-networkd-wait-online.service")

# Debian 12's cloud-init 22.4: the data sources a sandbox guest may meet (OpenStack config
# drive, NoCloud seed, OpenNebula CONTEXT CD-ROM), the default user a cloud image has, ed25519
# host keys only, and the settings without which a minimal image ends in `status: error`.
CLOUD_CFG = f"""\
# Written by skyctl's sandbox image build.
datasource_list: [ConfigDrive, NoCloud, OpenNebula, None]
system_info:
  default_user:
    name: {DEFAULT_USER}
    lock_passwd: true
    gecos: Cloud User
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
ssh_genkeytypes: [ed25519]
ssh_deletekeys: true
# No 'locales' package in a minimal image: the locale module would fail.
locale: false
manage_etc_hosts: true
# Keep the mirror the image was built from (Debian's template would point elsewhere).
apt:
  preserve_sources_list: true
"""

# The host's mirror may be a dated snapshot whose Release files have expired; a guest booting
# under emulation on a loaded host sees the odd DNS or download timeout: retry, as apt can.
# Under emulation every megabyte counts: no translations, no recommended packages.
APT_CONF = ('Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAcquire::Retries "8";\n'
            'Acquire::Languages "none";\nAPT::Install-Recommends "false";\n')
# QEMU's user-mode network answers DNS on 10.0.2.3 (with the host's resolver behind it).
RESOLV_CONF = "nameserver 10.0.2.3\noptions timeout:3 attempts:5\n"

TOOLS = {  # command -> Debian package
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
}


class ToolMissing(SkyError):
    """A host tool the real guests need is not installed."""


def require(*commands: str) -> None:
    """Raise ToolMissing naming the package for the first command not on PATH."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pkgs = sorted({TOOLS_ALL.get(c, c) for c in missing})
        raise ToolMissing(f"{', '.join(missing)} not found: the real guests need it",
                          hint=f"apt-get install {' '.join(pkgs)}")


TOOLS_ALL = {**TOOLS, "qemu-system-x86_64": "qemu-system-x86", "genisoimage": "genisoimage",
             "xorriso": "xorriso"}


@dataclass(frozen=True)
class ImageInputs:
    """Everything that decides what the image holds: its cache key is a digest of this."""

    mirror: str = DEFAULT_MIRROR
    security_mirror: str | None = None
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    cloud_cfg: str = CLOUD_CFG
    apt_conf: str = APT_CONF
    resolv_conf: str = RESOLV_CONF
    masked: tuple[str, ...] = MASKED_UNITS
    disk_size: str = DISK_SIZE
    version: int = IMAGE_VERSION

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def sources(self) -> list[str]:
        lines = [f"deb {self.mirror} {self.suite} main", f"deb {self.mirror} {self.suite}-updates main"]
        if self.security_mirror:
            lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return lines


@dataclass
class Image:
    """A built image: the disk every overlay is backed by, and the kernel to boot it with."""

    dir: Path
    key: str
    disk: Path = field(init=False)
    kernel: Path = field(init=False)
    initrd: Path = field(init=False)

    def __post_init__(self) -> None:
        self.disk = self.dir / "disk.raw"
        self.kernel = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd, self.dir / "manifest.json"))

    def manifest(self) -> dict[str, object]:
        try:
            return dict(json.loads((self.dir / "manifest.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}


# ---------------------------------------------------------------- the host's mirror


def host_mirrors(etc_apt: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """The Debian mirror (and security mirror) the host's apt uses, from sources.list(.d):
    one-line `deb URI SUITE ...` and deb822 `URIs:`. Debian's own when none is found."""
    uris: list[str] = []
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list")),
             *sorted((etc_apt / "sources.list.d").glob("*.sources"))]
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line)
            if m:
                uris.append(m.group(1))
            elif line.lower().startswith("uris:"):
                uris.extend(line.split(":", 1)[1].split())
    main = next((u.rstrip("/") for u in uris if re.search(r"/debian/?$", u)), DEFAULT_MIRROR)
    security = next((u.rstrip("/") for u in uris if re.search(r"/debian-security/?$", u)), None)
    return main, security


def default_inputs() -> ImageInputs:
    main, security = host_mirrors()
    return ImageInputs(mirror=main, security_mirror=security)


# ---------------------------------------------------------------- build


def images_dir(cache: Path) -> Path:
    return cache / "sandbox-images"


def find(cache: Path, inputs: ImageInputs | None = None) -> Image | None:
    """The built image for these inputs, or None."""
    inputs = inputs or default_inputs()
    image = Image(images_dir(cache) / inputs.key(), inputs.key())
    return image if image.complete() else None


def build(cache: Path, inputs: ImageInputs | None = None, *, force: bool = False,
          say: Callable[[str], None] = lambda _m: None) -> tuple[Image, bool]:
    """The image for these inputs, built unless cached (`force`: build anyway).
    Returns (image, built_now)."""
    inputs = inputs or default_inputs()
    key = inputs.key()
    final = images_dir(cache) / key
    image = Image(final, key)
    if image.complete() and not force:
        return image, False
    require("mmdebstrap", "mkfs.ext4")
    if os.geteuid() != 0:
        raise SkyError("building the guest image needs root (mmdebstrap --mode=root; mkfs.ext4 -d keeps "
                       "the files' owners only when run as root)", hint="sudo skyctl sandbox image build")
    images_dir(cache).mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=images_dir(cache)))
    try:
        root = work / "root"
        t0 = time.monotonic()
        say(f"mmdebstrap {inputs.suite} from {inputs.mirror} ({len(inputs.packages)} packages)")
        _run(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
              # the image itself is built as Debian installs it (with recommended packages)
              *(f"--aptopt={line}" for line in inputs.apt_conf.splitlines()
                if line.strip() and "Install-Recommends" not in line),
              f"--include={','.join(inputs.packages)}", inputs.suite, str(root), *inputs.sources()],
             "mmdebstrap", timeout=1800)
        _configure(root, inputs)
        kernel = _newest(root / "boot", "vmlinuz-*")
        initrd = _newest(root / "boot", "initrd.img-*")
        shutil.copyfile(kernel, work / "vmlinuz")
        shutil.copyfile(initrd, work / "initrd.img")
        say(f"mkfs.ext4 -d ({inputs.disk_size})")
        _run(["mkfs.ext4", "-q", "-F", "-L", "skyroot", "-d", str(root), str(work / "disk.raw"), inputs.disk_size],
             "mkfs.ext4", timeout=600)
        shutil.rmtree(root)
        manifest = {"key": key, "inputs": asdict(inputs), "kernel": kernel.name, "initrd": initrd.name,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.monotonic() - t0, 1)}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return Image(final, key), True


def _configure(root: Path, inputs: ImageInputs) -> None:
    """Make the folder a cloud image: first-boot state only, cloud-init configured."""
    _put(root / "etc/cloud/cloud.cfg.d/90-skyctl-sandbox.cfg", inputs.cloud_cfg)
    _put(root / "etc/apt/apt.conf.d/90skyctl-sandbox", inputs.apt_conf)
    _put(root / "etc/fstab", "/dev/vda / ext4 rw,noatime 0 1\n")
    _put(root / "etc/hostname", "localhost\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    _put(root / "etc/resolv.conf", inputs.resolv_conf)
    _put(root / "etc/machine-id", "")   # empty: systemd makes one at first boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()   # every guest makes its own (cloud-init's ssh module)
    for unit in inputs.masked:
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    _put(root / "etc/network/interfaces", "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n")
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / d).glob("*"):
            if p.is_file():
                p.unlink()


def _put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


def _newest(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise SkyError(f"the guest image has no {pattern} in /boot (did linux-image-cloud-amd64 install?)")
    return found[-1]


def _run(argv: list[str], what: str, *, timeout: float) -> None:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise SkyError(f"{what} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "mkfs", "error"))] or lines
        raise SkyError(f"{what} failed (exit {proc.returncode}): {(errors or ['no output'])[-1][:300]}")


# ---------------------------------------------------------------- per VM


def overlay(image: Image, path: Path) -> Path:
    """A copy-on-write qcow2 overlay of the image's disk (about 10 MB until written)."""
    require("qemu-img")
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(path)],
         "qemu-img create", timeout=60)
    return path
