"""What the sandbox federation looks like: the default, a user's spec file merged over it,
and the `SiteWorld`s built from the result.

A spec is plain YAML/JSON data. A user's file is deep-merged over `DEFAULT_SPEC`, so
`{sites: {home: {quota: {instances: 2}}}}` changes one number; a site set to null is removed.
Errors are `ConfigError`s naming the field path.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skyctl.errors import ConfigError

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
    "run_scripts": False,         # VMs run their context's own scripts (runcmd, START_SCRIPT...)
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
        "cc": {"driver": "opennebula", "tier": "remote", "cost": 1,
               "quota": {"instances": 16, "cores": 32}},
        "sara": {"driver": "openstack", "tier": "remote", "cost": 2,
                 "quota": {"instances": 32, "cores": 64}},
    },
}

_TOP_KEYS = {"boot_delay", "login_user", "run_scripts", "images", "sizes", "sites"}
_SITE_KEYS = {"driver", "tier", "cost", "quota", "latency_ms", "error_rate", "boot_delay",
              "host_cpus", "host_ram_mib", "flavors", "floating_ip"}
_QUOTA_KEYS = {"instances", "cores", "ram_mib", "floating_ips", "key_pairs"}


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


def _num(value: Any, path: str, *, lo: float = 0, hi: float | None = None, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"must be {kind} {rng}", path=path)
    return value


def _unknown(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for k in data:
        if k not in allowed:
            raise ConfigError(f"unknown field (known: {', '.join(sorted(allowed))})",
                              path=f"{path}.{k}" if path else str(k))


def resolve(user: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The full, validated spec: defaults <- user file <- command-line overrides."""
    if user is not None and not isinstance(user, Mapping):
        raise ConfigError("a sandbox spec must be a mapping (sites, images, sizes, boot_delay)")
    spec = merge(DEFAULT_SPEC, user or {})
    spec = merge(spec, {k: v for k, v in overrides.items() if v is not None})
    validate(spec)
    return spec


def validate(spec: Mapping[str, Any]) -> None:
    from skyctl.site import NAME_RE
    import re

    _unknown(spec, _TOP_KEYS, "")
    _num(spec.get("boot_delay", 0), "boot_delay", hi=3600)
    if not isinstance(spec.get("login_user"), str) or not spec["login_user"]:
        raise ConfigError("must be a user name", path="login_user")
    if not isinstance(spec.get("run_scripts", False), bool):
        raise ConfigError("must be true or false", path="run_scripts")
    sites = spec.get("sites")
    if not isinstance(sites, Mapping) or not sites:
        raise ConfigError("at least one site is needed", path="sites")
    for name, site in sites.items():
        p = f"sites.{name}"
        if not re.match(NAME_RE, str(name)):
            raise ConfigError("not a valid site name (lowercase letters, digits, '-')", path=p)
        if not isinstance(site, Mapping):
            raise ConfigError("must be a mapping", path=p)
        _unknown(site, _SITE_KEYS, p)
        if site.get("driver") not in DRIVERS:
            raise ConfigError(f"must be one of {', '.join(DRIVERS)}", path=f"{p}.driver")
        if site.get("tier", "remote") not in ("local", "remote"):
            raise ConfigError("must be local or remote", path=f"{p}.tier")
        _num(site.get("cost", 0), f"{p}.cost")
        _num(site.get("latency_ms", 0), f"{p}.latency_ms", hi=60_000)
        _num(site.get("error_rate", 0), f"{p}.error_rate", hi=1)
        if "boot_delay" in site:
            _num(site["boot_delay"], f"{p}.boot_delay", hi=3600)
        if "floating_ip" in site:
            if not isinstance(site["floating_ip"], bool):
                raise ConfigError("must be true or false", path=f"{p}.floating_ip")
            if site["floating_ip"] and site.get("driver") != "openstack":
                raise ConfigError("floating IPs exist on OpenStack sites only", path=f"{p}.floating_ip")
        for k in ("host_cpus", "host_ram_mib"):
            if site.get(k) is not None:
                _num(site[k], f"{p}.{k}", integer=True)
        quota = site.get("quota", {})
        if not isinstance(quota, Mapping):
            raise ConfigError("must be a mapping", path=f"{p}.quota")
        _unknown(quota, _QUOTA_KEYS, f"{p}.quota")
        for k, v in quota.items():
            _num(v, f"{p}.quota.{k}", lo=-1, integer=True)
        for i, f in enumerate(site.get("flavors") or []):
            fp = f"{p}.flavors[{i}]"
            if not isinstance(f, Mapping) or not isinstance(f.get("name"), str):
                raise ConfigError("a flavor needs name, vcpus, ram_mib", path=fp)
            _num(f.get("vcpus"), f"{fp}.vcpus", lo=1, integer=True)
            _num(f.get("ram_mib"), f"{fp}.ram_mib", lo=1, integer=True)
    images = spec.get("images")
    if not isinstance(images, Mapping) or not images:
        raise ConfigError("at least one image is needed", path="images")
    for logical, per_kind in images.items():
        if not isinstance(per_kind, Mapping):
            raise ConfigError("must map openstack/opennebula to an image name", path=f"images.{logical}")
        _unknown(per_kind, set(DRIVERS), f"images.{logical}")
    sizes = spec.get("sizes")
    if not isinstance(sizes, Mapping):
        raise ConfigError("must be a mapping", path="sizes")


def load_file(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
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
    quota = Quota(**{k: int(v) for k, v in q.items()})   # _QUOTA_KEYS are its fields; it holds the defaults
    # Stable ids: the same spec gives the same image/flavor ids on every start.
    images = []
    for i, (logical, image_name) in enumerate(image_names(spec, driver).items()):
        image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"skyctl-sandbox/{name}/image/{logical}")) \
            if driver == "openstack" else str(i)
        images.append(SImage(id=image_id, name=image_name, size=1024 * 1024 * (300 + 10 * i)))
    flavors = []
    if driver == "openstack":
        for i, f in enumerate(site.get("flavors") or DEFAULT_FLAVORS):
            flavors.append(SFlavor(id=str(f.get("id", i + 1)), name=f["name"], vcpus=int(f["vcpus"]),
                                   ram_mib=int(f["ram_mib"]), disk_gib=int(f.get("disk_gib", 10))))
    world = SiteWorld(name, driver, quota=quota, flavors=flavors, images=images,
                      host_cpus=site.get("host_cpus"), host_ram_mib=site.get("host_ram_mib"), seed=seed)
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
            entry.update(cloud=run["cloud"], clouds_yaml=str(run["clouds_yaml"]), network="auto")
        else:
            entry.update(endpoint=run["endpoint"], one_auth=str(run["one_auth"]))
        entry["ssh"] = {"user": spec["login_user"], "port": int(run["ssh_port"])}
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
    project_name and region_name."""
    return {"clouds": {
        name: {"auth": {"auth_url": c["auth_url"], "username": c["username"], "password": c["password"],
                        "project_name": c["project_name"], "user_domain_name": "Default",
                        "project_domain_name": "Default"},
               "region_name": c.get("region_name", "RegionOne"), "identity_api_version": 3}
        for name, c in clouds.items()}}
