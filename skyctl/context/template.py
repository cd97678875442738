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

# Jinja's sandbox limits what a template may reach, not how much work it does. These bound
# the work of one profile render: loop steps across all its templates, the length a `*`,
# `**`, `%` or padding call may build, and the text all its templates produce together.
MAX_LOOP_STEPS = 1_000_000
MAX_BUILT = 1_000_000       # characters or items one operation may build
MAX_OUTPUT = 4_000_000      # characters of rendered text, all fields together

# Names the renderer provides itself; a profile cannot declare them.
BUILTIN_NAMES = frozenset({"node"})

UNTEMPLATED = frozenset({"variables", "raw"})
_MARKERS = ("{{", "{%", "{#")
_WHOLE_VAR = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_UNDEF_RE = re.compile(r"'([^']+)' is undefined")
_ATTR_RE = re.compile(r"has no attribute '([^']+)'")

_env_lock = threading.Lock()
_ENV = None


class _Budget(threading.local):
    """What the render running on this thread may still spend (one Renderer at a time)."""

    steps = MAX_LOOP_STEPS
    chars = MAX_OUTPUT


_BUDGET = _Budget()


class _TooMuch(Exception):
    """A template went over one of the render limits; the message says which."""


def _metered(iterable: Any) -> Any:
    """Every `for` loop iterates through this: each step is charged to the render's budget."""
    for item in iterable:
        _BUDGET.steps -= 1
        if _BUDGET.steps < 0:
            raise _TooMuch(f"loops ran more than {MAX_LOOP_STEPS:,} steps")
        yield item


def _check_built(size: int, what: str) -> None:
    if size > MAX_BUILT:
        raise _TooMuch(f"{what} would build {size:,} characters or items (at most {MAX_BUILT:,})")


_PAD_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(?:\*|\d{5,})|\{[^}]*:[^}]*(?:\d{5,})[^}]*\}")


def _bounded_environment_class():  # type: ignore[no-untyped-def]
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    class Bounded(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and not isinstance(n, bool):
                        _check_built(len(seq) * max(n, 0), "'*'")
            elif operator == "**" and isinstance(left, int) and isinstance(right, int):
                if abs(left) > 1 and right > 0:
                    _check_built(right * abs(left).bit_length() // 3, "'**'")  # about that many digits
            elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
                raise _TooMuch("a format width of 10,000 or more")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            name = getattr(__obj, "__name__", "")
            if isinstance(getattr(__obj, "__self__", None), str):
                text = __obj.__self__
                if name in _PAD_METHODS and args and isinstance(args[0], int):
                    _check_built(args[0], f"'{name}'")
                elif name == "expandtabs" and args and isinstance(args[0], int):
                    _check_built(len(text) + text.count("\t") * args[0], "'expandtabs'")
                elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                    _check_built(len(text) + (text.count(str(args[0])) + 1) * len(args[1]), "'replace'")
                elif name == "format" and _WIDE_FORMAT.search(text):
                    raise _TooMuch("a format width of 10,000 or more")
            return super().call(__context, __obj, *args, **kwargs)

        def _generate(self, source: Any, name: Any, filename: Any, defer_init: bool = False) -> Any:
            for loop in source.find_all(nodes.For):  # meter every loop, however it is nested
                loop.iter = nodes.Filter(loop.iter, "_skyctl_metered", [], [], None, None, lineno=loop.lineno)
            return super()._generate(source, name, filename, defer_init=defer_init)

    return Bounded


def _center(value: Any, width: int = 80) -> str:
    _check_built(int(width), "'center'")
    return str(value).center(int(width))


def _indent(value: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    from jinja2.filters import do_indent

    text = str(value)
    pad = len(width) if isinstance(width, str) else int(width)
    _check_built(len(text) + (text.count("\n") + 1) * pad, "'indent'")
    return do_indent(text, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    from jinja2.filters import do_format

    if _WIDE_FORMAT.search(str(value)):
        raise _TooMuch("a format width of 10,000 or more")
    return do_format(value, *args, **kwargs)


def _replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
    from jinja2.filters import do_replace

    text, new_text = str(value), str(new)
    _check_built(len(text) + (text.count(str(old)) + 1) * len(new_text), "'replace'")
    return do_replace(eval_ctx, value, old, new, count)


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
            from jinja2 import StrictUndefined, pass_eval_context

            env = _bounded_environment_class()(undefined=StrictUndefined, autoescape=False,
                                               keep_trailing_newline=True, finalize=_finalize)
            env.filters["_skyctl_metered"] = _metered
            env.filters["center"] = _center
            env.filters["format"] = _format
            env.filters["indent"] = _indent
            env.filters["replace"] = pass_eval_context(_replace)
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
        self._steps, self._chars = MAX_LOOP_STEPS, MAX_OUTPUT  # what this render may still spend

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
            return self._bounded(text)
        except _TooMuch as e:
            raise ContextError(f"{field}: template does too much work: {e}",
                               source=f"profile '{self.origin_of(field)}'",
                               hint="templates are for filling values in, not for computing") from None
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

    def _bounded(self, text: str) -> str:
        """Render one template on this renderer's budget, stopping as soon as it is spent."""
        _BUDGET.steps, _BUDGET.chars = self._steps, self._chars
        try:
            parts = []
            for chunk in _compiled(text).generate(self.values):
                _BUDGET.chars -= len(chunk)
                if _BUDGET.chars < 0:
                    raise _TooMuch(f"the rendered profile is longer than {MAX_OUTPUT:,} characters")
                parts.append(chunk)
            return "".join(parts)
        finally:
            self._steps, self._chars = _BUDGET.steps, _BUDGET.chars
