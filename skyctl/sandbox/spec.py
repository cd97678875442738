"""What the sandbox federation looks like: the default, a user's spec file merged over it,
and the `SiteWorld`s built from the result.

A spec is plain YAML/JSON data. A user's file is deep-merged over `DEFAULT_SPEC`, so
`{sites: {home: {quota: {instances: 2}}}}` changes one number; a site set to null is removed.
The result is checked by pydantic models (`SandboxSpec`) but stays plain data; errors are
`ConfigError`s naming the field path.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator,
)

from skyctl.errors import ConfigError
from skyctl.site import NAME_RE, Strict

DRIVERS = ("openstack", "opennebula")

# Nova/devstack's stock flavors; the sizes below fit m1.small/medium/large exactly.
DEFAULT_FLAVORS: list[dict[str, Any]] = [
    {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram_mib": 512, "disk_gib": 1},
    {"id": "2", "name": "m1.small", "vcpus": 1, "ram_mib": 2048, "disk_gib": 20},
    {"id": "3", "name": "m1.medium", "vcpus": 2, "ram_mib": 4096, "disk_gib": 40},
    {"id": "4", "name": "m1.large", "vcpus": 4, "ram_mib": 8192, "disk_gib": 80},
]

DEFAULT_SPEC: dict[str, Any] = {
    "boot_delay": 0.2,            # seconds from create to ACTIVE/RUNNING, every site
    "login_user": "cloud-user",   # the SSH user written to the federation file
    # Absent: every VM is a built-in SSH guest on this host (no context script runs anywhere).
    # "qemu": every VM boots the guest image under QEMU and runs real cloud-init.
    "guests": None,
    # Logical image -> the name it has on each kind of site (OpenStack image name,
    # OpenNebula template name; the OpenNebula site's image carries the same name).
    "images": {
        "alma9": {"openstack": "AlmaLinux-9-GenericCloud", "opennebula": "AlmaLinux 9"},
        "ubuntu-24.04": {"openstack": "ubuntu-24.04-server-cloudimg", "opennebula": "Ubuntu 24.04"},
    },
    "sizes": {
        "small": {"cpus": 1, "memory": "2GiB"},
        "medium": {"cpus": 2, "memory": "4GiB"},
        "large": {"cpus": 4, "memory": "8GiB"},
    },
    "sites": {
        "home": {"driver": "openstack", "tier": "local", "cost": 0,
                 "quota": {"instances": 8, "cores": 16}},
        # As a production OpenNebula runs: an ordinary user in group `users`, oneadmin's
        # templates/images/networks, a group quota, no OneGate endpoint.
        "cc": {"driver": "opennebula", "tier": "remote", "cost": 1,
               "quota": {"instances": 16, "cores": 32}, "group_quota": {"instances": 24, "cores": 48}},
        # A tenant-network site: its own network next to a shared one; diskless flavors (boot
        # from a volume only) next to the ones with disk, as Sovereign Cloud Stack sites have.
        "sara": {"driver": "openstack", "tier": "remote", "cost": 2, "tenant_network": True,
                 "quota": {"instances": 32, "cores": 64},
                 "flavors": [*DEFAULT_FLAVORS, {"id": "10", "name": "SCS-1V-2", "vcpus": 1, "ram_mib": 2048,
                                                "disk_gib": 0},
                             {"id": "11", "name": "SCS-2V-4", "vcpus": 2, "ram_mib": 4096, "disk_gib": 0}]},
    },
}


def merge(base: Any, override: Any) -> Any:
    """Deep-merge `override` over `base`; a None value in a mapping removes that key."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for k, v in override.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(override)


# ---------------------------------------------------------------- validation (pydantic)
#
# Each field checks its raw input itself (a before-validator), so a problem reads as the same
# short sentence whatever pydantic would say; fields are declared in the order problems are
# reported, and only the first is raised. `Field(None)` on a type without None: the key may be
# absent but not null. `_checked_when_absent()`: an absent key is checked as a null one.


def _number(lo: float = 0, hi: float | None = None, *, integer: bool = False,
            null_ok: bool = False) -> BeforeValidator:
    kind = "an integer" if integer else "a number"
    rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
    return _check(lambda v: not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
                  and not v < lo and not (hi is not None and v > hi), f"must be {kind} {rng}", null_ok=null_ok)


def _check(test: Callable[[Any], bool], message: str, *, null_ok: bool = False) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not (null_ok and value is None) and not test(value):
            raise ValueError(message)
        return value

    return BeforeValidator(check)


def _checked_when_absent() -> Any:
    return Field(None, validate_default=True)


def _site_name(value: Any) -> str:
    if not re.fullmatch(NAME_RE, str(value)):
        raise ValueError("not a valid site name (lowercase letters, digits, '-')")
    return str(value)


def _flavor_list(value: Any) -> Any:
    if not value:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list of flavors (name, vcpus, ram_mib)")
    return value


Seconds = Annotated[float, _number(hi=3600)]
QuotaLimit = Annotated[int, _number(lo=-1, integer=True)]   # -1: unlimited
Count = Annotated[int, _number(lo=1, integer=True)]
Flag = Annotated[bool, _check(lambda v: isinstance(v, bool), "must be true or false")]
SiteName = Annotated[str, BeforeValidator(_site_name)]


class _FieldError(ValueError):
    """A problem with one key of a mapping: the error's path gets the key appended."""

    def __init__(self, key: Any, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Section(Strict):
    """A mapping of known keys; an unknown one is named with the list of the known ones."""

    _not_a_mapping: ClassVar[str] = "must be a mapping"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(cls._not_a_mapping)
        for key in data:
            if key not in cls.model_fields:
                raise _FieldError(key, f"unknown field (known: {', '.join(sorted(cls.model_fields))})")
        return data


class QuotaSpec(_Section):
    """A site's quota; an absent limit keeps world.Quota's default."""

    instances: QuotaLimit = Field(None)
    cores: QuotaLimit = Field(None)
    ram_mib: QuotaLimit = Field(None)
    floating_ips: QuotaLimit = Field(None)
    key_pairs: QuotaLimit = Field(None)
    volumes: QuotaLimit = Field(None)       # Cinder (OpenStack)
    gigabytes: QuotaLimit = Field(None)
    ports: QuotaLimit = Field(None)         # Neutron (OpenStack)


class FlavorSpec(BaseModel):
    """An OpenStack flavor; other keys (id, disk_gib) pass unchecked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    vcpus: Count = _checked_when_absent()
    ram_mib: Count = _checked_when_absent()

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError("a flavor needs name, vcpus, ram_mib")
        return data


class SiteSpec(_Section):
    driver: Annotated[str, _check(lambda v: v in DRIVERS, f"must be one of {', '.join(DRIVERS)}")] = \
        _checked_when_absent()
    tier: Annotated[str, _check(lambda v: v in ("local", "remote"), "must be local or remote")] = "remote"
    cost: Annotated[float, _number()] = 0
    latency_ms: Annotated[float, _number(hi=60_000)] = 0
    error_rate: Annotated[float, _number(hi=1)] = 0
    boot_delay: Seconds = Field(None)   # absent: the spec's own boot_delay
    floating_ip: Flag = False
    # Serve HTTPS with a certificate from the private CA `sandbox up` makes (<sandbox>/sandbox-ca.pem):
    # clouds.yaml gets `cacert:`, an OpenNebula site `ca_bundle:`.
    tls: Flag = False
    # OpenStack: the project's own network next to a shared one (else one shared provider network).
    tenant_network: Flag = False
    # OpenStack: a block storage service (Cinder v3) in the catalog; boot volumes need it.
    block_storage: Flag = True
    host_cpus: Annotated[int | None, _number(integer=True, null_ok=True)] = None   # None: unlimited
    host_ram_mib: Annotated[int | None, _number(integer=True, null_ok=True)] = None
    quota: QuotaSpec = QuotaSpec()
    # OpenNebula only: the group's quota, oned.conf's ONEGATE_ENDPOINT (none: TOKEN=YES is
    # refused), how long PROLOG and BOOT last (absent: shares of boot_delay), and the share of
    # VMs that end in PROLOG_FAILURE / BOOT_FAILURE.
    group_quota: QuotaSpec = QuotaSpec()
    onegate_endpoint: Annotated[str | None, _check(lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
                                                   "must be an http(s) URL", null_ok=True)] = None
    prolog_seconds: Annotated[float | None, _number(hi=3600, null_ok=True)] = None
    boot_seconds: Annotated[float | None, _number(hi=3600, null_ok=True)] = None
    prolog_failure_rate: Annotated[float, _number(hi=1)] = 0
    boot_failure_rate: Annotated[float, _number(hi=1)] = 0
    # oned.conf lists `recover` among VM_MANAGE_OPERATIONS (stock: VM_ADMIN_OPERATIONS, which an
    # ordinary user lacks on their own VMs)
    user_recover: Flag = False
    flavors: Annotated[list[FlavorSpec], BeforeValidator(_flavor_list)] = []
    # Logical images whose copy on this site differs from everyone else's (a corrupted or
    # substituted image): it reports another hash, and its bytes are different.
    tampered_images: Annotated[list[str], _check(lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                                                 "must be a list of logical image names")] = []

    @field_validator("floating_ip")
    @classmethod
    def _openstack_only(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("driver") != "openstack":
            raise ValueError("floating IPs exist on OpenStack sites only")
        return value

    @field_validator("onegate_endpoint", "prolog_seconds", "boot_seconds", "prolog_failure_rate",
                     "boot_failure_rate", "user_recover")
    @classmethod
    def _opennebula_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value and info.data.get("driver") != "opennebula":
            raise ValueError("exists on OpenNebula sites only")
        return value

    @field_validator("tenant_network")
    @classmethod
    def _tenant_network_on_openstack(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("driver") != "openstack":
            raise ValueError("tenant networks exist on OpenStack sites only")
        return value


class ImageNamesSpec(_Section):
    """A logical image's name per kind of site (a missing one defaults to the logical name)."""

    _not_a_mapping: ClassVar[str] = "must map openstack/opennebula to an image name"

    openstack: Any = None
    opennebula: Any = None


class SandboxSpec(_Section):
    """The whole spec, after merging: `validate` checks it, callers keep the plain data."""

    boot_delay: Seconds = 0
    login_user: Annotated[str, _check(lambda v: isinstance(v, str) and bool(v), "must be a user name")] = \
        _checked_when_absent()
    guests: Annotated[str | None, _check(lambda v: v == "qemu", "must be qemu (absent: the built-in SSH guests)",
                                         null_ok=True)] = None
    # Real guests only: their memory, the accelerator (auto: KVM when a probe shows it works),
    # and the built image's folder (`sandbox up` fills it in).
    guest_memory_mib: Annotated[int, _number(lo=256, hi=8192, integer=True)] = 512
    guest_accel: Annotated[str, _check(lambda v: v in ("auto", "kvm", "tcg"), "must be auto, kvm or tcg")] = "auto"
    guest_image: Annotated[str | None, _check(lambda v: isinstance(v, str), "must be a folder", null_ok=True)] = None
    sites: Annotated[dict[SiteName, SiteSpec], _check(lambda v: isinstance(v, Mapping) and bool(v),
                                                      "at least one site is needed")] = _checked_when_absent()
    images: Annotated[dict[Any, ImageNamesSpec], _check(lambda v: isinstance(v, Mapping) and bool(v),
                                                        "at least one image is needed")] = _checked_when_absent()
    sizes: Annotated[dict[Any, Any], _check(lambda v: isinstance(v, Mapping), "must be a mapping")] = \
        _checked_when_absent()


def _error_path(loc: tuple[Any, ...], data: Any) -> str:
    """`sites.home.flavors[0].vcpus`: the input walked along pydantic's location."""
    path, node = "", data
    for part in loc:
        if part == "[key]":   # the key itself is wrong: its path is the key's
            break
        if isinstance(node, list):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return path


def _config_error(err: ValidationError, data: Any) -> ConfigError:
    first = err.errors(include_url=False)[0]
    path = _error_path(first["loc"], data)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        path = f"{path}.{cause.key}" if path else str(cause.key)
    message = str(cause) if isinstance(cause, ValueError) else first["msg"]
    return ConfigError(message, path=path or None)


def resolve(user: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The full, validated spec: defaults <- user file <- command-line overrides."""
    if user is not None and not isinstance(user, Mapping):
        raise ConfigError("a sandbox spec must be a mapping (sites, images, sizes, boot_delay)")
    spec = merge(DEFAULT_SPEC, user or {})
    spec = merge(spec, {k: v for k, v in overrides.items() if v is not None})
    validate(spec)
    return spec


def validate(spec: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the field path of the first problem; the spec stays plain data."""
    try:
        SandboxSpec.model_validate(spec)
    except ValidationError as e:
        raise _config_error(e, spec) from None


def load_file(path: str | Path) -> dict[str, Any]:
    import yaml

    from skyctl import yamlsafe

    p = Path(path).expanduser()
    try:
        data = yamlsafe.load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no sandbox spec file at {p}", path="--spec") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', None) or e}", source=str(p)) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError("a sandbox spec must be a mapping", source=str(p))
    return dict(data)


def site_boot_delay(spec: Mapping[str, Any], site: Mapping[str, Any]) -> float:
    return float(site.get("boot_delay", spec.get("boot_delay", 0.2)))


def image_names(spec: Mapping[str, Any], driver: str) -> dict[str, str]:
    """Logical image -> the name it has on a site of this driver."""
    return {logical: str(per.get(driver) or logical) for logical, per in spec["images"].items()}


def build_world(name: str, site: Mapping[str, Any], spec: Mapping[str, Any], *, seed: int | None = None):  # type: ignore[no-untyped-def]
    """The `SiteWorld` for one site of a resolved spec."""
    from skyctl.sandbox.world import Quota, SFlavor, SImage, SiteWorld

    driver = site["driver"]
    q = site.get("quota", {})
    quota = Quota(**{k: int(v) for k, v in q.items()})   # QuotaSpec's fields are its fields; it holds the defaults
    # Stable ids: the same spec gives the same image/flavor ids on every start.
    images = []
    for i, (logical, image_name) in enumerate(image_names(spec, driver).items()):
        image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"skyctl-sandbox/{name}/image/{logical}")) \
            if driver == "openstack" else str(i)
        seeded = SImage(id=image_id, name=image_name, tampered=logical in (site.get("tampered_images") or ()))
        images.append(replace(seeded, size=len(seeded.content)))   # Glance's size is the bytes it serves
    flavors = []
    if driver == "openstack":
        for i, f in enumerate(site.get("flavors") or DEFAULT_FLAVORS):
            flavors.append(SFlavor(id=str(f.get("id", i + 1)), name=f["name"], vcpus=int(f["vcpus"]),
                                   ram_mib=int(f["ram_mib"]), disk_gib=int(f.get("disk_gib", 10))))
    world = SiteWorld(name, driver, quota=quota, flavors=flavors, images=images,
                      host_cpus=site.get("host_cpus"), host_ram_mib=site.get("host_ram_mib"), seed=seed)
    gq = site.get("group_quota", {}) if driver == "opennebula" else {}
    world.group_quota = Quota(**{"floating_ips": -1, "key_pairs": -1, **{k: int(v) for k, v in gq.items()}})
    world.settings = {k: site[k] for k in ("onegate_endpoint", "prolog_seconds", "boot_seconds",
                                           "prolog_failure_rate", "boot_failure_rate", "user_recover")
                      if site.get(k) is not None}
    world.tenant_network = bool(site.get("tenant_network", False))
    world.block_storage = driver == "openstack" and bool(site.get("block_storage", True))
    world.faults.boot_delay = site_boot_delay(spec, site)
    world.faults.latency_ms = float(site.get("latency_ms", 0))
    world.faults.error_rate = float(site.get("error_rate", 0))
    return world


# ---------------------------------------------------------------- the files `up` writes (pure)


def federation_document(spec: Mapping[str, Any], sites: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The federation file for a running sandbox, in the drivers' own option names.

    `sites[name]` holds what the running process knows: `ssh_port`, and `cloud`/`clouds_yaml`
    (OpenStack) or `endpoint`/`one_auth` (OpenNebula).
    """
    out_sites: dict[str, Any] = {}
    for name, site in spec["sites"].items():
        run = sites[name]
        entry: dict[str, Any] = {"driver": site["driver"], "tier": site.get("tier", "remote"),
                                 "cost": site.get("cost", 0)}
        if site["driver"] == "openstack":
            # No network: the driver's documented choice picks it (sara sees two).
            entry.update(cloud=run["cloud"], clouds_yaml=str(run["clouds_yaml"]))
        else:
            entry.update(endpoint=run["endpoint"], one_auth=str(run["one_auth"]))
        if run.get("ca_bundle") and site["driver"] != "openstack":
            entry["ca_bundle"] = str(run["ca_bundle"])   # OpenStack's is `cacert:` in clouds.yaml
        entry["ssh"] = {"user": spec["login_user"], "port": int(run["ssh_port"])}
        if spec.get("guests") == "qemu":
            entry["ready_timeout"] = 1800.0   # software-emulated boots on a loaded host, packages from a mirror
            entry["ssh"]["connect_timeout"] = 180.0   # an emulated sshd's key exchange on a busy host
        if site.get("floating_ip"):
            entry["ssh"]["floating_ip"] = True   # reach the nodes on their floating IPs
        out_sites[name] = entry
    images = {logical: {name: image_names(spec, site["driver"])[logical] for name, site in spec["sites"].items()}
              for logical in spec["images"]}
    sizes = {k: dict(v) for k, v in spec["sizes"].items()}
    doc: dict[str, Any] = {"sites": out_sites, "images": images, "sizes": sizes}
    defaults: dict[str, Any] = {}
    if images:
        defaults["image"] = "alma9" if "alma9" in images else next(iter(images))
    if sizes:
        defaults["size"] = "small" if "small" in sizes else next(iter(sizes))
    if defaults:
        doc["defaults"] = defaults
    local = [n for n, s in spec["sites"].items() if s.get("tier", "remote") == "local"]
    remote = [n for n, s in spec["sites"].items() if s.get("tier", "remote") != "local"]
    if local and remote:
        doc["bursting"] = [{"name": f"overflow-{local[0]}", "from": local, "to": remote, "order": "cost",
                            "home": {"cooldown": "30s", "max_moves": 4}}]
    return doc


def clouds_document(clouds: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """clouds.yaml for the OpenStack sites: `clouds[name]` has auth_url, username, password,
    project_name and region_name, and `cacert` for a site served over HTTPS."""
    out: dict[str, Any] = {}
    for name, c in clouds.items():
        out[name] = {"auth": {"auth_url": c["auth_url"], "username": c["username"], "password": c["password"],
                              "project_name": c["project_name"], "user_domain_name": "Default",
                              "project_domain_name": "Default"},
                     "region_name": c.get("region_name", "RegionOne"), "identity_api_version": 3}
        if c.get("cacert"):
            out[name]["cacert"] = c["cacert"]
    return {"clouds": out}
