"""Context profiles: the YAML format, its validation, and where profiles are found.

A profile is data. Loading validates it with pydantic (errors name the field path and the
profile) and compiles every template once; the parsed profile is cached by path and mtime so
a launch of many nodes reads each file once.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skyctl.context.template import BUILTIN_NAMES, check_templates
from skyctl.context.variables import coerce
from skyctl.errors import ContextError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Variable(_Strict):
    type: Literal["string", "int", "bool", "list"] = "string"
    required: bool = False
    default: Any = None
    secret: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _default_has_the_type(self) -> Variable:
        if self.default is not None:
            try:
                self.default = coerce(self.type, self.default)
            except ValueError as e:
                raise ValueError(f"default: {e}") from None
        elif self.type == "int" and not self.required:
            raise ValueError("an int variable needs a default or required: true")
        return self


class User(_Strict):
    name: str
    sudo: bool | str = False
    groups: list[str] = Field(default_factory=list)
    shell: str | None = None
    ssh_authorized_keys: list[str] = Field(default_factory=list)


class File(_Strict):
    path: str
    content: str = ""
    permissions: str = "0644"
    owner: str = "root:root"
    append: bool = False

    @field_validator("permissions", mode="before")
    @classmethod
    def _octal_string(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("quote the mode, e.g. '0644' (YAML reads an unquoted 0644 as the number 420)")
        return v

    @field_validator("permissions")
    @classmethod
    def _octal(cls, v: str) -> str:
        if "{" not in v and not re.fullmatch(r"0?[0-7]{3,4}", v):
            raise ValueError(f"not an octal file mode: {v!r} (use e.g. '0644')")
        return v

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") and not v.startswith("{"):
            raise ValueError(f"must be an absolute path: {v!r}")
        return v


class Ntp(_Strict):
    enabled: bool = True
    servers: list[str] = Field(default_factory=list)


class Raw(_Strict):
    """The user's own cloud-config or shell script, passed through untouched."""

    cloud_config: str | dict[str, Any] | None = None
    script: str | None = None


class Profile(_Strict):
    description: str = ""
    # Where the profile cannot work, one line each ("Debian 12: no htcondor package"): shown by
    # `context validate` and `context show`; never part of what a cloud receives.
    caveats: list[str] = Field(default_factory=list)
    variables: dict[str, Variable] = Field(default_factory=dict)
    login_user: str | None = None
    users: list[User] = Field(default_factory=list)
    ssh_authorized_keys: list[str] = Field(default_factory=list)
    packages: list[str] = Field(default_factory=list)
    files: list[File] = Field(default_factory=list)
    commands: list[str | list[str]] = Field(default_factory=list)
    hostname: str | None = None
    ntp: Ntp | None = None
    ready: bool = False
    raw: Raw | None = None

    @field_validator("variables")
    @classmethod
    def _names(cls, v: dict[str, Variable]) -> dict[str, Variable]:
        for name in v:
            if not VAR_NAME_RE.fullmatch(name):
                raise ValueError(f"variable name {name!r} must be letters, digits and _ (not starting with a digit)")
            if name in BUILTIN_NAMES:
                raise ValueError(f"variable name {name!r} is reserved (skyctl provides it)")
        return v

    @model_validator(mode="after")
    def _unique_keys(self) -> Profile:
        for what, keys in (("users", [u.name for u in self.users]), ("files", [f.path for f in self.files])):
            seen: set[str] = set()
            for k in keys:
                if k in seen:
                    raise ValueError(f"{what}: {k!r} is listed twice")
                seen.add(k)
        return self


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedProfile:
    name: str
    path: Path
    origin: str  # "builtin", "user" or "path"
    profile: Profile
    data: dict[str, Any]  # what the file set (model_dump(exclude_unset)), the input to composition


_TYPE_TAG = re.compile(r"^(str|bool|int|float|list|dict|none)$|[\[(]")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _TYPE_TAG.search(str(part)):
            continue  # pydantic's union-member tags ('str', 'list[str]') say nothing to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _errors_line(e: ValidationError) -> str:
    by_loc: dict[str, list[str]] = {}
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        msgs = by_loc.setdefault(_loc(tuple(err["loc"])), [])
        if msg not in msgs:
            msgs.append(msg)
    lines = []
    for loc, msgs in by_loc.items():
        if len(msgs) > 1 and all(m.startswith("Input should be ") for m in msgs):
            # one union field: "a valid string or a valid list"
            msgs = ["Input should be " + " or ".join(m.removeprefix("Input should be ") for m in msgs)]
        lines.append(f"{loc}: {'; '.join(msgs)}")
    more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
    return "; ".join(lines[:3]) + more


def parse_profile(text: str, *, name: str, source: str) -> tuple[Profile, dict[str, Any]]:
    import yaml

    from skyctl import yamlsafe

    try:
        doc = yamlsafe.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ContextError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}",
                           source=f"profile '{name}' ({source})") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ContextError("a profile must be a YAML mapping", source=f"profile '{name}' ({source})")
    try:
        prof = Profile.model_validate(doc)
    except ValidationError as e:
        raise ContextError(_errors_line(e), source=f"profile '{name}' ({source})") from None
    data = prof.model_dump(exclude_unset=True)
    data.pop("description", None)
    data.pop("caveats", None)

    check_templates(data, profile=name)
    return prof, data


_CACHE: dict[Path, tuple[float, int, LoadedProfile]] = {}
_LOCK = threading.Lock()


def load_file(path: Path, *, name: str | None = None, origin: str = "path") -> LoadedProfile:
    path = Path(path)
    name = name or path.stem
    try:
        st = path.stat()
    except OSError:
        raise ContextError(f"no such context profile file: {path}") from None
    key = path.resolve()
    with _LOCK:
        hit = _CACHE.get(key)
    if hit and hit[0] == st.st_mtime and hit[1] == st.st_size and hit[2].name == name:
        return hit[2]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ContextError(f"cannot read context profile {path}: {e}") from None
    prof, data = parse_profile(text, name=name, source=str(path))
    loaded = LoadedProfile(name, key, origin, prof, data)
    with _LOCK:
        _CACHE[key] = (st.st_mtime, st.st_size, loaded)
    return loaded


# ---------------------------------------------------------------- where profiles live


def builtin_dir() -> Path:
    """contexts/ shipped inside the wheel as skyctl/contexts; the repo's contexts/ in a checkout."""
    from importlib import resources

    try:
        shipped = resources.files("skyctl") / "contexts"
        if shipped.is_dir():
            return Path(str(shipped))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - zipped installs are not supported
        pass
    return Path(__file__).resolve().parents[2] / "contexts"


def user_dir() -> Path:
    from skyctl.paths import config_dir

    return config_dir() / "contexts"


def _yaml_in(folder: Path, name: str) -> Path | None:
    for ext in (".yaml", ".yml"):
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml")) or ref.startswith(".")


def find(ref: str) -> LoadedProfile:
    """A path, or NAME in the user's contexts dir, then among the built-ins."""
    if looks_like_path(ref):
        p = Path(ref).expanduser()
        if not p.is_file():
            raise ContextError(f"no such context profile file: {ref}")
        return load_file(p, origin="path")
    if not NAME_RE.fullmatch(ref):
        raise ContextError(f"not a context profile name: {ref!r}")
    p = _yaml_in(user_dir(), ref)
    if p is not None:
        return load_file(p, name=ref, origin="user")
    p = _yaml_in(builtin_dir(), ref)
    if p is not None:
        return load_file(p, name=ref, origin="builtin")
    known = ", ".join(sorted(available())) or "none"
    raise ContextError(f"unknown context profile '{ref}' (known: {known}; your own go in {user_dir()})")


def available() -> dict[str, tuple[str, Path]]:
    """name -> (origin, path); a user profile hides the built-in of the same name."""
    out: dict[str, tuple[str, Path]] = {}
    for origin, folder in (("builtin", builtin_dir()), ("user", user_dir())):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix in (".yaml", ".yml") and p.is_file() and NAME_RE.fullmatch(p.stem):
                    out[p.stem] = (origin, p)
    return dict(sorted(out.items()))
