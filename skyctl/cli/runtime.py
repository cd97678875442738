"""Process-wide settings from the global options (set once by the top-level callback)."""

from __future__ import annotations

CONFIG_PATH: str | None = None


def load_federation():  # type: ignore[no-untyped-def]
    """The federation file named by --config / SKYCTL_CONFIG / the XDG default."""
    from skyctl import config

    return config.load(CONFIG_PATH)
