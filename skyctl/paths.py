"""skyctl's own files, in the XDG places (platformdirs), always private.

SKYCTL_HOME, when set, puts config/state/data under one folder (tests, sandboxes).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "skyctl"


def base(kind: str) -> Path:
    """The folder for `kind` (config, state, data), not created."""
    return _base(kind)


def _base(kind: str) -> Path:
    home = os.environ.get("SKYCTL_HOME")
    if home:
        return Path(home) / kind
    import platformdirs  # light, but only needed here

    fn = {"config": platformdirs.user_config_dir, "state": platformdirs.user_state_dir,
          "data": platformdirs.user_data_dir}[kind]
    return Path(fn(APP))


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make the leaf 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (path.stat().st_mode & 0o777) != 0o700:
        path.chmod(0o700)
    return path


def config_dir() -> Path:
    return _base("config")


def state_dir() -> Path:
    return private_dir(_base("state"))


def data_dir() -> Path:
    return private_dir(_base("data"))


def cache_dir() -> Path:
    """Rebuildable files (the sandbox's guest images): SKYCTL_CACHE_DIR, else SKYCTL_HOME/cache,
    else the XDG cache dir."""
    home = os.environ.get("SKYCTL_HOME")
    if home and not os.environ.get("SKYCTL_CACHE_DIR"):
        return private_dir(Path(home) / "cache")
    return shared_cache_dir()


def shared_cache_dir() -> Path:
    """SKYCTL_CACHE_DIR, else the XDG cache dir, whatever SKYCTL_HOME says: where a test tier or
    a benchmark with private SKYCTL_HOMEs finds the image `skyctl sandbox image build` left."""
    explicit = os.environ.get("SKYCTL_CACHE_DIR")
    if explicit:
        return private_dir(Path(explicit))
    import platformdirs

    return private_dir(Path(platformdirs.user_cache_dir(APP)))


def default_config_file() -> Path:
    return config_dir() / "sky.yaml"


def write_private(path: Path, text: str | bytes) -> Path:
    """Write a file that is 0600 from its first byte (no window where it is readable)."""
    private_dir(path.parent)
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
