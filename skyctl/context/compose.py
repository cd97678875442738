"""Compose profiles in order: lists append, maps merge, a scalar conflict is an error.

`users` are keyed by name and `files` by path: two profiles naming the same user merge that
user (its groups and keys append); two profiles writing the same file with different content
conflict. Packages and SSH keys drop exact duplicates. Variable declarations of the same name
merge when their types agree (required/secret if any profile says so; one default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from skyctl.context.profile import LoadedProfile
from skyctl.context.variables import Declared
from skyctl.errors import ContextError
from skyctl.model import MASK

KEYED = {"users": "name", "files": "path"}
DEDUPED = {"packages", "ssh_authorized_keys", "groups", "servers"}


@dataclass
class Composed:
    names: tuple[str, ...]
    data: dict[str, Any]
    declared: dict[str, Declared]
    origins: dict[str, str] = field(default_factory=dict)  # field path -> profile that set it

    def origin_of(self, path: str) -> str:
        """The profile that set `path` (or its nearest set parent)."""
        p = path
        while p:
            if p in self.origins:
                return self.origins[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return self.names[-1] if self.names else "?"


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class _Merger:
    def __init__(self) -> None:
        self.origins: dict[str, str] = {}

    def _claim(self, path: str, value: Any, profile: str) -> None:
        self.origins[path] = profile
        if isinstance(value, dict):
            for k, v in value.items():
                self._claim(f"{path}.{k}", v, profile)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._claim(f"{path}[{i}]", v, profile)

    def merge(self, acc: dict[str, Any], new: dict[str, Any], profile: str, path: str = "") -> None:
        for key, val in new.items():
            p = f"{path}.{key}" if path else key
            if key not in acc or acc[key] is None:
                acc[key] = copy.deepcopy(val)
                self._claim(p, val, profile)
            elif isinstance(acc[key], dict) and isinstance(val, dict):
                self.merge(acc[key], val, profile, p)
            elif isinstance(acc[key], list) and isinstance(val, list):
                if key in KEYED and not path:
                    self._merge_keyed(acc[key], val, KEYED[key], profile, p)
                else:
                    for item in val:
                        if key in DEDUPED and item in acc[key]:
                            continue
                        self._claim(f"{p}[{len(acc[key])}]", item, profile)
                        acc[key].append(copy.deepcopy(item))
            elif acc[key] == val and type(acc[key]) is type(val):
                continue
            elif val is None:
                continue
            else:
                first = self.origins.get(p, "?")
                raise ContextError(
                    f"{p}: profile '{first}' sets {_short(acc[key])} and profile '{profile}' sets "
                    f"{_short(val)}; set it in one profile only")

    def _merge_keyed(self, acc: list[dict[str, Any]], new: list[dict[str, Any]], key: str,
                     profile: str, path: str) -> None:
        index = {item[key]: i for i, item in enumerate(acc)}
        for item in new:
            k = item[key]
            if k in index:
                self.merge(acc[index[k]], item, profile, f"{path}[{index[k]}]")
            else:
                index[k] = len(acc)
                self._claim(f"{path}[{len(acc)}]", item, profile)
                acc.append(copy.deepcopy(item))


def _declare(out: dict[str, Declared], prof: LoadedProfile) -> None:
    for name, var in prof.profile.variables.items():
        prev = out.get(name)
        if prev is None:
            out[name] = Declared(name, var.type, var.required, var.secret, var.default,
                                 var.description, (prof.name,))
            continue
        if prev.type != var.type:
            raise ContextError(f"variables.{name}: profile '{prev.profiles[0]}' declares it as {prev.type} "
                               f"and profile '{prof.name}' as {var.type}")
        if prev.default is not None and var.default is not None and prev.default != var.default:
            shown = (MASK, MASK) if (prev.secret or var.secret) else (_short(prev.default), _short(var.default))
            raise ContextError(f"variables.{name}.default: profile '{prev.profiles[0]}' sets {shown[0]} "
                               f"and profile '{prof.name}' sets {shown[1]}; set it in one profile only")
        out[name] = Declared(name, prev.type, prev.required or var.required, prev.secret or var.secret,
                             prev.default if prev.default is not None else var.default,
                             prev.description or var.description, (*prev.profiles, prof.name))


def _normalise_raw(data: dict[str, Any]) -> dict[str, Any]:
    """raw: {cloud_config, script} -> lists, so several profiles' raw parts append."""
    out = dict(data)
    raw = out.pop("raw", None) or {}
    parts = {"cloud_config": [], "script": []}
    for k in parts:
        if raw.get(k) is not None:
            parts[k].append(raw[k])
    out["raw"] = parts
    return out


def compose(profiles: list[LoadedProfile]) -> Composed:
    seen: set[str] = set()
    for p in profiles:
        if p.name in seen:
            raise ContextError(f"profile '{p.name}' is given twice")
        seen.add(p.name)
    merger = _Merger()
    acc: dict[str, Any] = {}
    declared: dict[str, Declared] = {}
    for p in profiles:
        data = _normalise_raw(p.data)
        data.pop("variables", None)
        merger.merge(acc, data, p.name)
        _declare(declared, p)
    return Composed(tuple(p.name for p in profiles), acc, declared, merger.origins)
