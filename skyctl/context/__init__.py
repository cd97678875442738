"""Contextualisation: profiles -> one neutral context -> cloud-init user-data | OpenNebula CONTEXT.

Pure: no network, no SDK, no key files (callers pass the public keys in). The launch command
calls `build_context` (once, or once per node when `needs_hostname(profiles)` says the profiles
use `{{ node.name }}`); drivers take the part of `BuiltContext.rendered` that their cloud reads.
Everything shown to people, logged or stored comes from `BuiltContext.masked`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyctl.context.cloudinit import (
    NOVA_USER_DATA_MAX_B64,
    check_nova_size,
    cloud_config_parts,
)
from skyctl.context.opennebula import context_sh, one_template
from skyctl.errors import ContextError
from skyctl.model import MASK, RenderedContext

__all__ = [
    "BuiltContext", "build_context", "check_for_cloud", "cloud_config_parts", "context_sh",
    "describe", "list_profiles", "needs_hostname", "one_template",
    "validate_file", "NOVA_USER_DATA_MAX_B64",
]



@dataclass(frozen=True)
class BuiltContext:
    rendered: RenderedContext          # what the clouds receive
    masked: RenderedContext            # the same with every secret as ****, for output/logs/state
    secrets: list[str]                 # register each with skyctl.logsafe.register_secret
    secret_names: tuple[str, ...] = () # the variables declared secret, whatever their type
    profiles: tuple[str, ...] = ()
    per_node: bool = False             # the profiles use node.name: build once per node
    warnings: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------- composition cache

_compose_cache: dict[tuple[Any, ...], Any] = {}
_compose_lock = threading.Lock()


def _composed(profiles: list[str]):  # type: ignore[no-untyped-def]
    from skyctl.context import compose, profile

    loaded = [profile.find(ref) for ref in profiles]
    # LoadedProfile objects are re-used while their file is unchanged, so identity is the key
    key = tuple(id(p) for p in loaded)
    with _compose_lock:
        hit = _compose_cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], loaded, strict=True)):
            return hit[1]
    result = compose.compose(loaded)
    with _compose_lock:
        if len(_compose_cache) > 64:
            _compose_cache.clear()
        _compose_cache[key] = (loaded, result)
    return result


def needs_hostname(profiles: list[str]) -> bool:
    """True when the profiles use {{ node.* }}: render once per node with hostname=."""
    from skyctl.context.template import uses

    return uses(_composed(profiles).data, "node")


# ---------------------------------------------------------------- rendering


def _render_one(c, values: Mapping[str, Any], *, hostname: str | None,  # type: ignore[no-untyped-def]
                delivered: list[str]) -> tuple[RenderedContext, str | None]:
    from skyctl.context import cloudinit, opennebula
    from skyctl.context.template import Renderer

    scope = dict(values)
    if hostname is not None:
        scope["node"] = {"name": hostname, "hostname": cloudinit.hostname_from_node_name(hostname)}
    r = Renderer(scope, c.origin_of).render(c.data)
    _check_rendered(r, c)

    host = r.get("hostname")
    if host:
        cloudinit.check_hostname(str(host), profile=c.origin_of("hostname"))
    elif hostname is not None:
        host = cloudinit.hostname_from_node_name(hostname)
    login_user = r.get("login_user") or None
    user_names = [u["name"] for u in r.get("users") or []]
    if login_user and login_user not in user_names:
        raise ContextError(f"login_user: '{login_user}' is not one of the profile's users "
                           f"({', '.join(user_names) or 'none'})", source=f"profile '{c.origin_of('login_user')}'")
    login_keys = _dedupe([*delivered, *(r.get("ssh_authorized_keys") or [])])
    all_login_keys = list(login_keys)
    for u in r.get("users") or []:
        if u["name"] == login_user:
            all_login_keys = _dedupe([*(u.get("ssh_authorized_keys") or []), *login_keys])

    cc = cloudinit.cloud_config(r, hostname=host, login_user=login_user, login_keys=login_keys)
    ud = cloudinit.user_data(cc, r.get("raw") or {})
    script = opennebula.start_script(r, login_user=login_user, login_keys=login_keys, profiles=c.names)
    ctx = opennebula.one_context(user_data=ud, ssh_keys=all_login_keys, hostname=host, login_user=login_user,
                                 start_script=script, ready=bool(r.get("ready")))
    return RenderedContext(user_data=ud, one_context=ctx, ssh_public_keys=tuple(all_login_keys),
                           login_user=login_user), script


_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def _check_rendered(r: dict[str, Any], c) -> None:  # type: ignore[no-untyped-def]
    """What templates produced must still make sense: user names, absolute paths, no duplicates."""
    seen: dict[str, str] = {}
    for i, u in enumerate(r.get("users") or []):
        field_, name = f"users[{i}].name", str(u.get("name", ""))
        if not _USER_RE.fullmatch(name):
            raise ContextError(f"{field_}: {name!r} is not a valid user name", source=f"profile '{c.origin_of(field_)}'")
        if name in seen:
            raise ContextError(f"{field_}: user '{name}' is also {seen[name]}; give both the same name text "
                               "so they merge", source=f"profile '{c.origin_of(field_)}'")
        seen[name] = field_
    paths: dict[str, str] = {}
    for i, f in enumerate(r.get("files") or []):
        field_, path = f"files[{i}].path", str(f.get("path", ""))
        if not path.startswith("/"):
            raise ContextError(f"{field_}: must be an absolute path: {path!r}", source=f"profile '{c.origin_of(field_)}'")
        if path in paths:
            raise ContextError(f"{field_}: '{path}' is also {paths[path]}", source=f"profile '{c.origin_of(field_)}'")
        paths[path] = field_


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        i = i.strip()
        if i and i not in out:
            out.append(i)
    return out


def _scrub(rc: RenderedContext, secrets: list[str]) -> RenderedContext:
    """Belt and braces: no secret survives in the masked copy, even through a default or a key."""
    # very short values would mask unrelated text (logsafe ignores them for the same reason)
    scrubbed = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def clean(text: str) -> str:
        for s in scrubbed:
            text = text.replace(s, MASK)
        return text

    return RenderedContext(user_data=clean(rc.user_data) if rc.user_data else rc.user_data,
                           one_context={k: clean(v) for k, v in rc.one_context.items()},
                           ssh_public_keys=rc.ssh_public_keys, login_user=rc.login_user)


def build_context(profiles: list[str], *, variables: dict[str, str] | None = None,
                  var_files: list[str] | None = None, environ: Mapping[str, str] | None = None,
                  ssh_public_keys: Sequence[str], hostname: str | None = None) -> BuiltContext:
    """Compose `profiles` (names or paths), resolve variables, render for every cloud.

    ssh_public_keys are the public key lines every node accepts for login (the caller finds
    them: skyctl.keys.default_ssh_key); a list, even empty, delivers exactly those. hostname
    is the node's name when rendering per node.
    """
    from skyctl.context import variables as V
    from skyctl.context.template import uses

    c = _composed(list(profiles))
    values, warnings = V.resolve(c.declared, variables=variables, var_files=var_files,
                                 environ=os.environ if environ is None else environ,
                                 profile_names=list(c.names))
    delivered = list(ssh_public_keys)
    rendered, _ = _render_one(c, values, hostname=hostname, delivered=delivered)
    secrets = V.secret_values(c.declared, values)
    if secrets:
        masked, _ = _render_one(c, V.masked_values(c.declared, values), hostname=hostname, delivered=delivered)
        masked = _scrub(masked, secrets)
        # the encoded forms carry the secrets too: keep them out of debug logs as a whole
        from skyctl.context.opennebula import b64

        encoded = [b64(rendered.user_data or "")]
        encoded += [v for k, v in rendered.one_context.items() if k in ("USER_DATA", "START_SCRIPT_BASE64")]
        secrets = secrets + [e for e in encoded if e and e not in secrets]
    else:
        masked = rendered
    return BuiltContext(rendered=rendered, masked=masked, secrets=secrets, profiles=c.names,
                        secret_names=tuple(name for name, d in c.declared.items() if d.secret),
                        per_node=uses(c.data, "node"), warnings=tuple(warnings))


def check_for_cloud(rendered: RenderedContext, cloud: str, *, profiles: tuple[str, ...] = ()) -> None:
    """Raise ContextError when `cloud` ("openstack"/"opennebula") cannot take this context."""
    if cloud == "openstack":
        check_nova_size(rendered.user_data, profiles=profiles)


# ---------------------------------------------------------------- listing, showing, validating


def list_profiles() -> list[dict[str, str]]:
    from skyctl.context import profile

    out = []
    for name, (origin, path) in profile.available().items():
        try:
            desc = profile.load_file(path, name=name, origin=origin).profile.description
        except ContextError as e:
            desc = f"(invalid: {e.line()})"
        out.append({"name": name, "source": origin, "description": desc.strip(), "path": str(path)})
    return out


def describe(ref: str) -> dict[str, Any]:
    """{"name", "description", "variables": {NAME: {type, required, secret, default, description}}}."""
    from skyctl.context import profile

    p = profile.find(ref)
    variables = {}
    for name, v in p.profile.variables.items():
        variables[name] = {"type": v.type, "required": v.required, "secret": v.secret,
                           "default": MASK if (v.secret and v.default is not None) else v.default,
                           "description": v.description}
    return {"name": p.name, "description": p.profile.description.strip(), "source": p.origin,
            "path": str(p.path), "variables": variables}


def sample_value(vtype: str) -> Any:
    return {"string": "example", "int": 1, "bool": True, "list": ["example"]}[vtype]


def validate_file(path: str, *, check_cloud_config: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Check a profile file on its own: schema, templates, declared variables, a trial render.

    Required variables get sample values and SSH keys a placeholder, so the trial render
    also checks the result is well-formed for both clouds. `check_cloud_config(doc)`, when
    given (the CLI runs `cloud-init schema` with it), returns a problem text or None for each
    cloud-config document of the trial user-data.
    """
    from pathlib import Path

    from skyctl.context import profile
    from skyctl.context.template import undeclared

    p = profile.load_file(Path(path), origin="path")
    missing = undeclared(p.data, set(p.profile.variables))
    if missing:
        field_, name = missing[0]
        raise ContextError(f"{field_}: uses variable '{name}' that the profile does not declare",
                           source=f"profile '{p.name}'")
    samples = {n: sample_value(v.type) for n, v in p.profile.variables.items()
               if v.required and v.default is None}
    built = build_context([str(p.path)], variables=None, environ={f"SKYCTL_VAR_{k}": _env_text(v)
                                                                for k, v in samples.items()},
                          ssh_public_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERPLACEHOLDERPLACEHOLDER0 x"],
                          hostname="node-1")
    check_for_cloud(built.rendered, "openstack", profiles=built.profiles)
    result: dict[str, Any] = {"name": p.name, "path": str(p.path), "valid": True,
                              "variables": len(p.profile.variables), "sampled": sorted(samples),
                              "caveats": list(p.profile.caveats)}
    if check_cloud_config is not None:
        for i, doc in enumerate(cloud_config_parts(built.rendered.user_data or "")):
            problem = check_cloud_config(doc)
            if problem:
                part = "skyctl's cloud-config" if i == 0 else f"raw cloud_config #{i}"
                raise ContextError(f"cloud-init schema ({part}): {problem}", source=f"profile '{p.name}'")
        result["cloud_init_schema"] = "passed"
    return result


def _env_text(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
