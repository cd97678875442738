"""The federation file: found, parsed, validated; every error names its field path.

Found by `--config`, then `$SKYCTL_CONFIG`, then `skyctl/sky.yaml` in the XDG config dir,
and, when that does not exist, the running sandbox's federation file.
Credentials never live here: OpenStack sites name a clouds.yaml entry, OpenNebula sites a
ONE_AUTH file. A key that looks like a secret is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from skyctl import yamlsafe
from skyctl.errors import ConfigError
from skyctl.model import OwnedName, parse_memory_mib
from skyctl.site import NAME_RE, SiteConfig, Strict
from skyctl.validation import FieldProblem, first_problem

# Images and sizes are often named after releases (ubuntu-24.04, m1.large).
CATALOG_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_SECRET_KEY_RE = re.compile(r"(password|secret|token|private_key|credential)", re.IGNORECASE)


class SizeConfig(Strict):
    cpus: int = Field(ge=1, le=1024)
    memory: str | int
    # GiB of root disk: a flavor's disk must have it, or the node boots from a volume this big.
    disk: int | None = Field(None, ge=1, le=65536)
    # OpenStack flavor extra specs the size asks for (e.g. {"resources:VGPU": "1"}): only
    # flavors that have them fit; flavors with special-hardware specs fit no other size.
    extra_specs: dict[str, str] = {}

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | int) -> str | int:
        parse_memory_mib(v)
        return v

    @property
    def memory_mib(self) -> int:
        return parse_memory_mib(self.memory)


IMAGE_POLICIES = ("trust", "verify", "require-signed")
# Keys of a logical image that bind it to an endorsed list entry (the rest name sites).
BINDING_KEYS = ("list", "identifier", "title", "version", "policy")


class ImageListConfig(Strict):
    """A trusted HEPiX image list: where it is published, whose signature it must carry."""

    url: str | None = None
    trust: str = Field(min_length=1)     # PEM: the endorser's certificate or its CA(s)
    subject: str = Field(min_length=1)   # the signer's DN, OpenSSL slash form (/C=../CN=..)


@dataclass(frozen=True)
class ImageBinding:
    """A logical image bound to one entry of an endorsed list, by identifier or title+version."""

    list: str | None = None
    identifier: str | None = None
    title: str | None = None
    version: str | None = None
    policy: str | None = None


class Defaults(Strict):
    image: str | None = None
    size: str | None = None
    contexts: list[str] = ["base"]
    owner: str | None = None


SLURM_GROUP_RE = r"^[a-z][a-z0-9-]{0,39}$"
SLURM_WORD_RE = r"^[A-Za-z0-9_.-]{1,64}$"


class SlurmNodeSet(Strict):
    """Slurm cloud nodes that one skyctl group provides: which names, in which partition,
    with which features, launched how."""

    nodes: str                                  # a Slurm hostlist, e.g. sky-[001-032]
    partition: str = Field(pattern=SLURM_WORD_RE)
    features: list[str] = []
    weight: int | None = Field(default=None, ge=0)   # Slurm fills lower weights first
    image: str | None = None
    size: str | None = None
    contexts: list[str] = ["base", "slurm-worker"]
    variables: dict[str, str | int | bool] = {}

    @field_validator("nodes")
    @classmethod
    def _hostlist(cls, v: str) -> str:
        names = expand_hostlist(v)
        for name in names:
            if not re.match(r"^[a-z][a-z0-9-]{0,62}$", name):
                raise ValueError(f"node name {name!r} must be lowercase letters, digits and '-'")
        return v

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str]) -> list[str]:
        for f in v:
            if not re.match(SLURM_WORD_RE, f):
                raise ValueError(f"feature {f!r} must be letters, digits, '_', '.', '-'")
        return v

    @property
    def names(self) -> list[str]:
        return expand_hostlist(self.nodes)


class SlurmConfig(Strict):
    """The `slurm:` section: skyctl as the ResumeProgram/SuspendProgram of one slurmctld."""

    groups: dict[str, SlurmNodeSet] = Field(min_length=1)
    programs_dir: str = "/etc/skyctl/slurm"   # resume, suspend, resume-fail: what slurmctld runs
    log: str | None = None                  # default: slurm.log in skyctl's state directory
    suspend_time: int = Field(default=300, ge=1)
    suspend_timeout: int = Field(default=120, ge=1)
    resume_timeout: int = Field(default=600, ge=1)

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: dict[str, SlurmNodeSet]) -> dict[str, SlurmNodeSet]:
        owner: dict[str, str] = {}
        for group, nodeset in v.items():
            if not re.match(SLURM_GROUP_RE, group):
                raise ValueError(f"{group!r} is not a valid group name (lowercase letters, digits, '-')")
            for name in nodeset.names:
                if name in owner:
                    raise ValueError(f"node {name!r} is in both {owner[name]!r} and {group!r}")
                owner[name] = group
        return v


def expand_hostlist(text: str) -> list[str]:
    """A Slurm hostlist (sky-b[001-032],gpu1) as names, by python-hostlist."""
    import hostlist

    try:
        return list(hostlist.expand_hostlist(text))
    except hostlist.BadHostlist as e:
        raise ValueError(f"bad hostlist {text!r}: {e}") from None


class _OwnedImage(Strict):
    """`{name, owner}`: an image or template named with its owner (OpenNebula's *_UNAME)."""

    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)


class _FederationModel(Strict):
    sites: dict[str, SiteConfig] = Field(min_length=1)
    images: dict[str, dict[str, str | int | _OwnedImage] | str] = {}
    image_lists: dict[str, ImageListConfig] = {}
    sizes: dict[str, SizeConfig] = {}
    bursting: list[dict[str, Any]] = []
    defaults: Defaults = Defaults()
    slurm: SlurmConfig | None = None

    @field_validator("sites")
    @classmethod
    def _site_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.fullmatch(NAME_RE, str(key)):
                raise ValueError(f"{key!r} is not a valid site name (lowercase letters, digits, '-')")
        return v

    @field_validator("images", "sizes")
    @classmethod
    def _catalog_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.fullmatch(CATALOG_NAME_RE, str(key)):
                raise ValueError(f"{key!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")
        return v

    @model_validator(mode="after")
    def _cross_refs(self) -> _FederationModel:
        for logical, per_site in self.images.items():
            if logical == "policy":
                if per_site not in IMAGE_POLICIES:
                    raise FieldProblem(f"must be one of {', '.join(IMAGE_POLICIES)}", path="images.policy")
                continue
            if isinstance(per_site, str):
                raise FieldProblem("must map sites to image names (and may bind a list entry)",
                                   path=f"images.{logical}")
            for site in per_site:
                if site in BINDING_KEYS:
                    continue
                if site not in self.sites:
                    raise FieldProblem(f"unknown site {site!r}", path=f"images.{logical}.{site}")
            _check_binding(logical, per_site, self.image_lists)
        for group, nodeset in (self.slurm.groups.items() if self.slurm else ()):
            image = nodeset.image or self.defaults.image
            if image not in self.images or image == "policy":
                raise FieldProblem(f"unknown image {image!r}", path=f"slurm.groups.{group}.image")
            size = nodeset.size or self.defaults.size
            if size not in self.sizes:
                raise FieldProblem(f"unknown size {size!r}", path=f"slurm.groups.{group}.size")
        return self


def _check_binding(logical: str, spec: Mapping[str, Any], lists: Mapping[str, Any]) -> None:
    path = f"images.{logical}"
    for key in BINDING_KEYS:
        if key in spec and not isinstance(spec[key], str):
            raise FieldProblem("must be a string", path=f"{path}.{key}")
    if "policy" in spec and spec["policy"] not in IMAGE_POLICIES:
        raise FieldProblem(f"must be one of {', '.join(IMAGE_POLICIES)}", path=f"{path}.policy")
    bound = [k for k in ("identifier", "title", "version") if k in spec]
    if "list" not in spec:
        if bound:
            raise FieldProblem("needs 'list' (the image list the entry is in)", path=f"{path}.{bound[0]}")
        return
    if spec["list"] not in lists:
        raise FieldProblem(f"unknown image list {spec['list']!r} (declare it under image_lists)",
                           path=f"{path}.list")
    if "identifier" not in spec and "title" not in spec:
        raise FieldProblem("a list entry is named by 'identifier', or by 'title' (and 'version')",
                           path=f"{path}.list")


@dataclass(frozen=True)
class Federation:
    """The validated federation. Sites keep file order (it is the user's order)."""

    sites: Mapping[str, SiteConfig]
    images: Mapping[str, Mapping[str, str | OwnedName]]
    sizes: Mapping[str, SizeConfig]
    rules: tuple[Any, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    source: Path | None = None
    energy: Mapping[str, Any] = field(default_factory=dict)  # site -> policy.energy.EnergyModel
    slurm: SlurmConfig | None = None
    image_lists: Mapping[str, ImageListConfig] = field(default_factory=dict)  # trust paths made absolute
    image_bindings: Mapping[str, ImageBinding] = field(default_factory=dict)
    image_policy: str = "trust"    # the federation's images.policy; a binding's own policy wins

    def site(self, name: str) -> SiteConfig:
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(self.sites)
            raise ConfigError(f"unknown site {name!r} (sites: {known})", path="--site") from None


def _find_secrets(node: Any, path: str, source: str | None = None) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and _SECRET_KEY_RE.search(k) and not k.endswith("_env") \
                    and k not in ("one_auth",):
                raise ConfigError(
                    "credentials do not belong in the federation file",
                    path=p, source=source,
                    hint="keep them in clouds.yaml / secure.yaml (OpenStack) or a ONE_AUTH file "
                    "(OpenNebula); an auth block may name an environment variable with *_env",
                )
            _find_secrets(v, p, source)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _find_secrets(v, f"{path}[{i}]", source)


def parse(data: Any, *, source: Path | None = None, validate_drivers: bool = True) -> Federation:
    """Validate already-parsed YAML. Raises ConfigError naming the field path."""
    src = str(source) if source else None
    if not isinstance(data, Mapping):
        raise ConfigError("the federation file must be a mapping with a 'sites' key", source=src)
    _find_secrets(data, "", src)
    try:
        model = _FederationModel.model_validate(data)
    except ValidationError as e:
        problem = first_problem(e)
        more = problem.more
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(problem.message + extra, path=problem.path or None, source=src) from None

    sites: dict[str, SiteConfig] = {}
    for name, site in model.sites.items():
        site = site.model_copy(update={"name": name})
        if validate_drivers:
            site = _validate_driver_options(site, src)
        sites[name] = site

    energy = _energy_models(sites, source, src)
    rules: tuple[Any, ...] = ()
    if model.bursting:
        from skyctl.policy.rules import parse_rules  # pure; raises ConfigError with paths

        rules = tuple(parse_rules(model.bursting, sites=sites, path="bursting", source=src))

    images: dict[str, dict[str, str | OwnedName]] = {}
    bindings: dict[str, ImageBinding] = {}
    for k, per in model.images.items():
        if isinstance(per, str):
            continue  # images.policy
        images[k] = {s: OwnedName(v.name, v.owner) if isinstance(v, _OwnedImage) else str(v)
                     for s, v in per.items() if s not in BINDING_KEYS}
        if any(key in per for key in BINDING_KEYS):
            bindings[k] = ImageBinding(**{key: str(per[key]) for key in BINDING_KEYS if key in per})
    base = source.parent if source else Path.cwd()
    image_lists = {name: lst.model_copy(update={"trust": str(base / Path(lst.trust).expanduser())})
                   for name, lst in model.image_lists.items()}
    policy = model.images.get("policy")
    if model.defaults.size and model.defaults.size not in model.sizes:
        raise ConfigError(f"unknown size {model.defaults.size!r}", path="defaults.size", source=src)
    return Federation(sites=sites, images=images, sizes=dict(model.sizes), rules=rules,
                      defaults=model.defaults, source=source, energy=energy,
                      slurm=model.slurm, image_lists=image_lists, image_bindings=bindings,
                      image_policy=policy if isinstance(policy, str) else "trust")


def _energy_models(sites: Mapping[str, SiteConfig], source: Path | None, src: str | None) -> dict[str, Any]:
    """Each site's energy, price and carbon model; CSV series are read here, beside the file."""
    from skyctl.policy.energy import FIELDS, parse_energy

    base = source.parent if source else Path.cwd()

    def read_text(name: str) -> str:
        return (base / Path(name).expanduser()).read_text(encoding="utf-8")

    out: dict[str, Any] = {}
    for name, site in sites.items():
        raw = {k: getattr(site, k) for k in FIELDS}
        model = parse_energy(raw, path=f"sites.{name}", read_text=read_text, source=src)
        if model is not None:
            out[name] = model
    return out


def _validate_driver_options(site: SiteConfig, src: str | None) -> SiteConfig:
    from skyctl.drivers import registry

    try:
        cls = registry.load(site.driver, site=site.name)
    except ConfigError as e:
        raise ConfigError(str(e).split(": ", 1)[-1], path=f"sites.{site.name}.driver", source=src) from None
    fields = site.driver_fields()
    if cls.options_model is None:
        if fields:
            raise ConfigError("unknown field", path=f"sites.{site.name}.{next(iter(fields))}", source=src)
        return site
    try:
        options = cls.options_model.model_validate(fields)
    except ValidationError as e:
        problem = first_problem(e)
        raise ConfigError(problem.message, path=f"sites.{site.name}.{problem.path}".rstrip("."),
                          source=src) from None
    return site.model_copy(update={"options": options})


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path:
    return config_source(explicit)[0]


def config_source(explicit: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The federation file to load and why that one (said with -v): --config, then
    SKYCTL_CONFIG, then the XDG default, then (no default file yet) a running sandbox's."""
    if explicit:
        return Path(explicit).expanduser(), "given with --config"
    env = os.environ.get("SKYCTL_CONFIG")
    if env:
        return Path(env).expanduser(), "from SKYCTL_CONFIG"
    from skyctl.paths import base, default_config_file

    default = default_config_file()
    if not default.exists():
        # No federation of the user's own yet: a running sandbox is the natural target.
        sandbox = base("state") / "sandbox"
        if (sandbox / "runtime.json").exists() and (sandbox / "sky.yaml").exists():
            return sandbox / "sky.yaml", f"the running sandbox's, as there is no {default}"
    return default, "the default location"


def load(explicit: str | os.PathLike[str] | None = None, *, validate_drivers: bool = True) -> Federation:
    path = find_config_file(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no federation file at {path}",
            hint="pass --config, set SKYCTL_CONFIG, or run 'skyctl sandbox up' for a local one",
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e.__class__.__name__}") from None
    try:
        data = yamlsafe.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{problem}", source=f"{path}{where}") from None
    return parse(data, source=path, validate_drivers=validate_drivers)
