"""jinja2 templating of profile fields: sandboxed, strict, compiled once per distinct string.

Every string in a profile (except `variables` and the untouched `raw` part) is a template.
A string that is exactly one `{{ name }}` of a list/int/bool variable becomes that typed value
(a list spliced into the surrounding list), so `packages: ["{{ extra_packages }}"]` works.
"""

from __future__ import annotations

import base64
import re
import shlex
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from skyctl.errors import ContextError

# Names the renderer provides itself; a profile cannot declare them.
BUILTIN_NAMES = frozenset({"node"})

UNTEMPLATED = frozenset({"variables", "raw"})
_MARKERS = ("{{", "{%", "{#")
_WHOLE_VAR = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_UNDEF_RE = re.compile(r"'([^']+)' is undefined")
_ATTR_RE = re.compile(r"has no attribute '([^']+)'")

_env_lock = threading.Lock()
_ENV = None


def _b64(value: Any) -> str:
    return base64.b64encode(str(value).encode()).decode()


def _finalize(value: Any) -> Any:
    # booleans print as config files and shells spell them, not as Python's True/False
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def environment():  # type: ignore[no-untyped-def]
    global _ENV
    with _env_lock:
        if _ENV is None:
            from jinja2 import StrictUndefined
            from jinja2.sandbox import SandboxedEnvironment

            env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                       keep_trailing_newline=True, finalize=_finalize)
            env.filters["b64encode"] = _b64
            env.filters["shquote"] = lambda v: shlex.quote(str(v))
            _ENV = env
        return _ENV


def is_template(text: str) -> bool:
    return any(m in text for m in _MARKERS)


@lru_cache(maxsize=4096)
def _compiled(text: str):  # type: ignore[no-untyped-def]
    return environment().from_string(text)


@lru_cache(maxsize=4096)
def names_used(text: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(environment().parse(text)))


def _syntax_error(e: Exception, field: str, profile: str) -> ContextError:
    line = getattr(e, "lineno", None)
    where = f" (template line {line})" if line else ""
    return ContextError(f"{field}: template error: {getattr(e, 'message', None) or e}{where}",
                        source=f"profile '{profile}'")


def walk_strings(data: Any, path: str = "") -> list[tuple[str, str]]:
    """(field path, string) for every templated string."""
    out: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if not path and k in UNTEMPLATED:
                continue
            out.extend(walk_strings(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(walk_strings(v, f"{path}[{i}]"))
    elif isinstance(data, str) and is_template(data):
        out.append((path, data))
    return out


def check_templates(data: Mapping[str, Any], *, profile: str) -> None:
    """Compile every template of a profile now, so a syntax error is reported at load time."""
    from jinja2 import TemplateSyntaxError

    for field, text in walk_strings(dict(data)):
        try:
            _compiled(text)
        except TemplateSyntaxError as e:
            raise _syntax_error(e, field, profile) from None


def undeclared(data: Mapping[str, Any], declared: set[str]) -> list[tuple[str, str]]:
    """(field, name) for each name a template uses that is neither declared nor built in."""
    out = []
    for field, text in walk_strings(dict(data)):
        for name in sorted(names_used(text) - declared - BUILTIN_NAMES):
            out.append((field, name))
    return out


def uses(data: Mapping[str, Any], name: str) -> bool:
    return any(name in names_used(text) for _, text in walk_strings(dict(data)))


class Renderer:
    """Renders the templated strings of a composed profile with one set of values."""

    def __init__(self, values: Mapping[str, Any], origin_of: Callable[[str], str]) -> None:
        self.values = values
        self.origin_of = origin_of

    def render(self, data: Any, path: str = "") -> Any:
        if isinstance(data, dict):
            return {k: (v if not path and k in UNTEMPLATED else self.render(v, f"{path}.{k}" if path else k))
                    for k, v in data.items()}
        if isinstance(data, list):
            out: list[Any] = []
            for i, v in enumerate(data):
                r = self.render(v, f"{path}[{i}]")
                if isinstance(v, str) and isinstance(r, list):
                    out.extend(r)
                else:
                    out.append(r)
            return out
        if isinstance(data, str) and is_template(data):
            return self._one(data, path)
        return data

    def _one(self, text: str, field: str) -> Any:
        from jinja2 import TemplateError, UndefinedError

        m = _WHOLE_VAR.match(text.strip())
        if m and m.group(1) in self.values:
            v = self.values[m.group(1)]
            if isinstance(v, (list, bool, int)):
                return v
        try:
            return _compiled(text).render(self.values)
        except UndefinedError as e:
            profile = self.origin_of(field)
            msg = str(e)
            name = _UNDEF_RE.search(msg) or _ATTR_RE.search(msg)
            what = name.group(1) if name else msg
            hint = None
            if what == "node" or "node" in names_used(text):
                hint = "node.name is only known per node: pass a hostname (render --hostname NAME)"
            raise ContextError(f"undefined variable '{what}' in {field}", source=f"profile '{profile}'",
                               hint=hint) from None
        except TemplateError as e:
            raise ContextError(f"{field}: {e}", source=f"profile '{self.origin_of(field)}'") from None
