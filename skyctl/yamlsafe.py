"""The one YAML loader for files users hand skyctl: plain YAML only (no anchors or aliases),
bounded in size and nesting, refused before anything walks the tree.

Aliases turn a few hundred bytes into a tree of billions of nodes (the "billion laughs");
deep nesting overflows the parser's recursion. Both are refused with a marked error that
callers report like any other YAML error (it is a `yaml.MarkedYAMLError`).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024  # a federation file, profile or spec is kilobytes; user-data can embed files
MAX_DEPTH = 64


class RefusedYaml(yaml.MarkedYAMLError):
    """YAML that skyctl will not load: `problem` says why, `problem_mark` where."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and counts nesting while composing."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise RefusedYaml(f"aliases (*{event.anchor}) are not allowed: write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise RefusedYaml(f"anchors (&{event.anchor}) are not allowed: write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise RefusedYaml(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load(text: str) -> Any:
    """One YAML document as plain Python data, or `yaml.YAMLError` (a `RefusedYaml` for
    aliases, anchors, more than MAX_DEPTH levels or more than MAX_BYTES)."""
    if len(text) > MAX_BYTES:
        raise RefusedYaml(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    loader = _PlainLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
