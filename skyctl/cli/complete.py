"""Dynamic shell completion: node, group, site, profile, image and size names.

Called by the completion scripts at TAB time (typer's `autocompletion=`), so each answers from
local files only, never from a cloud: node and group names from the local state (what this
skyctl launched), sites, images and sizes from the federation file, profiles from the profile
folders. Any problem (no state yet, no federation file) completes nothing, silently.
Import only the standard library here: this module loads for every command's --help.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable


def _matching(names: Iterable[str], incomplete: str) -> list[str]:
    return sorted({n for n in names if n and n.startswith(incomplete)})


def _state_names(*, groups: bool, nodes: bool) -> list[str]:
    try:
        from skyctl.state import State, default_path

        if not default_path().exists():   # never create the state from a TAB
            return []
        state = State()
        try:
            out = list(state.groups()) if groups else []
            if nodes:
                out += [r.name for r in state.nodes()]
            return out
        finally:
            state.close()
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []


def _federation() -> object | None:
    try:
        from skyctl import config
        from skyctl.cli import runtime

        path = os.environ.get("SKYCTL_CONFIG") or runtime.CONFIG_PATH
        return config.load(path, validate_drivers=False)
    except Exception:  # noqa: BLE001
        return None


def nodes(incomplete: str) -> list[str]:
    """Node names (for commands that take exactly one node)."""
    return _matching(_state_names(groups=False, nodes=True), incomplete)


def targets(incomplete: str) -> list[str]:
    """Group and node names."""
    return _matching(_state_names(groups=True, nodes=True), incomplete)


def groups(incomplete: str) -> list[str]:
    return _matching(_state_names(groups=True, nodes=False), incomplete)


def sites(incomplete: str) -> list[str]:
    fed = _federation()
    return _matching(getattr(fed, "sites", {}) or {}, incomplete)


def images(incomplete: str) -> list[str]:
    fed = _federation()
    return _matching(getattr(fed, "images", {}) or {}, incomplete)


def sizes(incomplete: str) -> list[str]:
    fed = _federation()
    return _matching(getattr(fed, "sizes", {}) or {}, incomplete)


def profiles(incomplete: str) -> list[str]:
    try:
        from skyctl.context.profile import available

        return _matching(available(), incomplete)
    except Exception:  # noqa: BLE001
        return []


def locations(incomplete: str) -> list[str]:
    """cp's SRC/DST: NODE: and GROUP: prefixes (a local path falls back to the shell's files)."""
    if ":" in incomplete:
        return []
    return [f"{n}:" for n in _matching(_state_names(groups=True, nodes=True), incomplete)]


COMPLETERS: dict[str, Callable[[str], list[str]]] = {
    "nodes": nodes, "targets": targets, "groups": groups, "sites": sites, "images": images, "sizes": sizes,
    "profiles": profiles, "locations": locations}
