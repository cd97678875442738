"""From what a user asks for to what a launch needs: the resolved `Request`, the group's
`GroupSpec` (kept in state), and the context each new node receives.

One place for both launch (flags from the CLI) and the operations that add nodes to a known
group later (scale, moves home), which rebuild the context from the stored `GroupSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skyctl.config import Federation
from skyctl.errors import UsageError
from skyctl.model import GroupSpec, RenderedContext, parse_memory_mib
from skyctl.ops.reporter import Reporter
from skyctl.policy.placement import Request

ContextFor = Callable[[str], RenderedContext]   # node name -> what that node receives

GROUP_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
MIB_PER_CPU = 2048   # --cpus without --memory


def resolve(fed: Federation, group: str, count: int, *, image: str | None = None, size: str | None = None,
            cpus: int | None = None, memory: str | None = None, site: str | None = None) -> Request:
    """Check the names against the federation file and fill in its defaults."""
    if not GROUP_RE.fullmatch(group):
        raise UsageError(f"group name {group!r} must be lowercase letters, digits and '-', "
                         "starting with a letter (at most 40)")
    if site is not None:
        fed.site(site)
    image = image or fed.defaults.image
    if not image:
        raise UsageError("--image is required (no defaults.image in the federation file)")
    if image not in fed.images and site is None:
        known = ", ".join(fed.images) or "none"
        raise UsageError(f"unknown image {image!r} (logical images: {known}); "
                         "a site's own image name or id needs --site")
    if size and (cpus or memory):
        raise UsageError("give either --size or --cpus/--memory, not both")
    if cpus or memory:
        if not cpus:
            raise UsageError("--memory needs --cpus")
        try:
            mem = parse_memory_mib(memory) if memory else MIB_PER_CPU * cpus
        except ValueError as e:
            raise UsageError(f"--memory: {e}") from None
        return Request(group, count, cpus, mem, image, None, site)
    size = size or fed.defaults.size
    if not size:
        raise UsageError("give --size or --cpus (no defaults.size in the federation file)")
    if size in fed.sizes:
        s = fed.sizes[size]
        return Request(group, count, s.cpus, s.memory_mib, image, size, site, disk_gib=s.disk or 0,
                       extra_specs=tuple(sorted(s.extra_specs.items())))
    if site is None:
        known = ", ".join(fed.sizes) or "none"
        raise UsageError(f"unknown size {size!r} (sizes: {known}); a site's own flavor needs --site")
    return Request(group, count, 0, 0, image, size, site)


def clouds_for(fed: Federation, request: Request) -> list[str]:
    """The drivers a launch may reach: its context must suit every one of them."""
    if request.site:
        return [fed.site(request.site).driver]
    return sorted({s.driver for s in fed.sites.values()})


def request_for(group: str, spec: GroupSpec, count: int, *, site: str | None = None,
                fed: Federation | None = None) -> Request:
    """A request for `count` more nodes of a known group (on `site`, else where it is pinned);
    the size's disk and extra specs from the federation file when its size is still there."""
    size = fed.sizes.get(spec.size or "") if fed is not None else None
    return Request(group, count, spec.cpus, spec.memory_mib, spec.image, spec.size, site or spec.site,
                   disk_gib=(size.disk or 0) if size else 0,
                   extra_specs=tuple(sorted(size.extra_specs.items())) if size else ())


@dataclass(frozen=True)
class GroupContext:
    """A group's context, validated once: `context_for(name)` is what node `name` receives."""

    context_for: ContextFor
    secret_variables: tuple[str, ...]     # names of the --var values that are secrets


def build_group_context(profiles: Sequence[str], variables: dict[str, str], var_files: Sequence[str] = (), *,
                        clouds: Sequence[str] = (), reporter: Reporter | None = None) -> GroupContext:
    """Validate the context up front (a missing variable or an oversized user-data fails
    before anything launches); render per node only when the profiles use the node's name.
    Every node accepts the key skyctl logs in with. Every secret is registered for
    redaction; warnings go to the reporter."""
    from skyctl.context import build_context, check_for_cloud, needs_hostname
    from skyctl.keys import default_ssh_key
    from skyctl.logsafe import register_secret

    profiles, files = list(profiles), list(var_files)
    keys = [default_ssh_key().public]
    # Profiles that use {{ node.name }} are checked with a stand-in name; each node gets its own.
    probe = "node-0" if needs_hostname(profiles) else None
    first = build_context(profiles, variables=variables, var_files=files, ssh_public_keys=keys, hostname=probe)
    for s in first.secrets:
        register_secret(s)
    for w in first.warnings:
        (reporter or Reporter()).warning(w)
    for cloud in sorted(set(clouds)):
        check_for_cloud(first.rendered, cloud, profiles=first.profiles)
    # by declaration, not by value: a list or int secret given as `--var n=a,b` is no single secret value
    secret_names = tuple(k for k in variables if k in first.secret_names)
    if not first.per_node:
        return GroupContext(lambda _name: first.rendered, secret_names)

    def context_for(name: str) -> RenderedContext:
        return build_context(profiles, variables=variables, var_files=files, hostname=name,
                             ssh_public_keys=keys).rendered

    return GroupContext(context_for, secret_names)


def group_spec_for(request: Request, profiles: Sequence[str], variables: dict[str, str],
                   secret_variables: Sequence[str]) -> GroupSpec:
    """What the state store keeps of a launch: secret values are never stored, only their names."""
    secret = set(secret_variables)
    return GroupSpec(image=request.image, cpus=request.cpus, memory_mib=request.memory_mib, size=request.size,
                     contexts=tuple(profiles), variables={k: v for k, v in variables.items() if k not in secret},
                     secret_variables=tuple(k for k in variables if k in secret), site=request.site)


def context_of_group(spec: GroupSpec, *, reporter: Reporter | None = None) -> ContextFor:
    """The context a known group was launched with. Secret values were never stored: they
    come again from SKYCTL_VAR_<NAME> (a missing one is an error naming it)."""
    from skyctl.context.variables import ENV_PREFIX
    from skyctl.errors import ContextError

    try:
        return build_group_context(spec.contexts or ("base",), dict(spec.variables), reporter=reporter).context_for
    except ContextError as e:
        # scale, moves home and the like take no --var: only the environment can give it now.
        missing = _MISSING_RE.search(e.message)
        if missing:
            name = missing.group(1)
            e.hint = (f"set {ENV_PREFIX}{name} in the environment: the group's context is rebuilt from what "
                      "its launch stored, and secret values are never stored")
        raise


_MISSING_RE = re.compile(r"^missing required variable '([^']+)'")
