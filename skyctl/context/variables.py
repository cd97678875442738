"""Typed context variables: coercion, and where values come from.

Precedence, lowest first: the profile default, SKYCTL_VAR_<NAME> in the environment,
--var-file files (in order), --var K=V.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyctl.errors import ContextError
from skyctl.model import MASK

ENV_PREFIX = "SKYCTL_VAR_"
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", ""}


def coerce(vtype: str, value: Any) -> Any:
    """Turn `value` (text from the command line, or YAML data) into `vtype`; ValueError if it cannot."""
    if vtype == "string":
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a string, got a {type(value).__name__}")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if vtype == "int":
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if vtype == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if vtype == "list":
        if isinstance(value, (list, tuple)):
            if any(isinstance(v, (dict, list)) for v in value):
                raise ValueError("expected a list of plain values")
            return [coerce("string", v) for v in value]
        if isinstance(value, dict):
            raise ValueError("expected a list, got a mapping")
        text = str(value).strip()
        if text.startswith("["):
            import yaml

            from skyctl import yamlsafe

            try:
                parsed = yamlsafe.load(text)
            except yaml.YAMLError:
                raise ValueError(f"not a list: {value!r}") from None
            return coerce("list", parsed)
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"unknown variable type {vtype!r}")  # pragma: no cover - the schema forbids it


def empty(vtype: str) -> Any:
    return {"string": "", "bool": False, "list": [], "int": 0}[vtype]


@dataclass(frozen=True)
class Declared:
    """A variable as composed from one or more profiles."""

    name: str
    type: str
    required: bool
    secret: bool
    default: Any
    description: str
    profiles: tuple[str, ...]  # the profiles that declare it


def load_var_file(path: str) -> dict[str, Any]:
    import yaml

    from skyctl import yamlsafe

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ContextError(f"cannot read variables file {path}: {e.strerror if isinstance(e, OSError) else e}") from None
    try:
        doc = yamlsafe.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        why = f": {e.problem}" if isinstance(e, yamlsafe.RefusedYaml) else ""
        raise ContextError(f"variables file {path} is not valid YAML{where}{why}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise ContextError(f"variables file {path} must be a mapping of NAME: value")
    return doc


def resolve(declared: Mapping[str, Declared], *, variables: Mapping[str, str] | None,
            var_files: list[str] | None, environ: Mapping[str, str],
            profile_names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Typed values for every declared variable, and warnings (unused file entries)."""
    warnings: list[str] = []
    given: dict[str, tuple[Any, str]] = {}  # name -> (value, where it came from)
    for name in declared:
        for env_name in (f"{ENV_PREFIX}{name}", f"{ENV_PREFIX}{name.upper()}"):
            if env_name in environ:
                given[name] = (environ[env_name], env_name)
                break
    for path in var_files or []:
        for name, value in load_var_file(path).items():
            if name not in declared:
                warnings.append(f"{path}: variable '{name}' is not used by profiles {', '.join(profile_names)}")
                continue
            given[name] = (value, f"{path}")
    for name, value in (variables or {}).items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ContextError(f"--var {name}: no such variable in profiles {', '.join(profile_names)} "
                               f"(declared: {known})")
        given[name] = (value, f"--var {name}")

    values: dict[str, Any] = {}
    for name, d in declared.items():
        owner = "', '".join(d.profiles)
        if name in given:
            raw, where = given[name]
            try:
                values[name] = coerce(d.type, raw)
            except ValueError as e:
                msg = str(e).replace(repr(raw), MASK) if d.secret else str(e)
                raise ContextError(f"variable '{name}' of profile '{owner}' is a {d.type}: {msg} "
                                   f"(from {where})") from None
        elif d.default is not None:
            values[name] = d.default
        elif d.required:
            raise ContextError(f"missing required variable '{name}' of profile '{owner}'",
                               hint=f"set it with --var {name}=VALUE, a --var-file, or {ENV_PREFIX}{name}")
        else:
            values[name] = empty(d.type)
    return values, warnings


def secret_values(declared: Mapping[str, Declared], values: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name, d in declared.items():
        if not d.secret:
            continue
        v = values.get(name)
        items = v if isinstance(v, list) else [v]
        for item in items:
            text = "" if item is None else str(item)
            if text and text not in out:
                out.append(text)
    return out


def masked_values(declared: Mapping[str, Declared], values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name, d in declared.items():
        if d.secret:
            v = values.get(name)
            out[name] = [MASK for _ in v] if isinstance(v, list) else MASK
    return out
