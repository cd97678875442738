"""The Driver contract and the driver registry.

A driver adapts one cloud API to skyctl's model. Rules (the contract suite, skyctl.testing.contract, checks them):
- `__init__` does no network I/O and imports no SDK; the SDK is imported on first use.
- Provider objects never leave the driver: it returns `skyctl.model` values, leftovers go in
  `extra`.
- Every failure is raised as one of the `skyctl.errors.DriverError` subclasses, carrying the
  site name.
- `create` makes exactly one node. Concurrency, retries, failover and the intent log live in
  `skyctl.ops`, once for every driver.
- `list` filters by skyctl's labels with as few requests as the cloud allows (one per page).
- `delete` of a node that is already gone is success.

Drivers are found through the entry-point group `skyctl.drivers` and loaded lazily, so
`skyctl --help` never imports a driver package, let alone its SDK.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from skyctl.errors import ConfigError, Unsupported
from skyctl.model import (Capability, Capacity, Flavor, ImageRef, Labels, LeaseRecord, Node, NodeSpec,
                          RenderedContext)

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from skyctl.site import SiteConfig

ENTRY_POINT_GROUP = "skyctl.drivers"


class Driver(abc.ABC):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # Pydantic model validating the site's driver-specific fields (`cloud:`, `endpoint:`...).
    # Defined in the driver's light module so config validation never imports the SDK.
    options_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    @property
    def site_name(self) -> str:
        return self.site.name

    # -- what the site offers
    @abc.abstractmethod
    def capacity(self) -> Capacity: ...

    @abc.abstractmethod
    def flavors(self) -> list[Flavor]: ...

    @abc.abstractmethod
    def images(self) -> list[ImageRef]: ...

    # -- nodes
    @abc.abstractmethod
    def create(self, spec: NodeSpec, name: str, context: RenderedContext) -> Node:
        """Create one node named `name` carrying `spec.labels`. Returns it (usually pending)."""

    @abc.abstractmethod
    def list(self, selector: Labels | None = None, *, managed_only: bool = True) -> list[Node]:
        """Nodes whose skyctl labels match every key in `selector`.

        managed_only=False also returns nodes skyctl did not create (`ps --all`); the
        selector then only filters the managed ones.
        """

    @abc.abstractmethod
    def get(self, node_id: str) -> Node:
        """One node by the cloud's own id; NotFound if it does not exist."""

    @abc.abstractmethod
    def delete(self, node_ids: Sequence[str]) -> None: ...

    # -- optional, guarded by capabilities (STOP_START, REBOOT, CONSOLE_LOG)
    # stop/start are idempotent: a node already where it is asked to go is success. A node
    # the cloud cannot move from its state (still building, rebooting) is the cloud's own
    # refusal (InvalidRequest with its words). A missing node is NotFound.
    def stop(self, node_ids: Sequence[str]) -> None:
        """Power nodes off, keeping their disks and addresses (Nova os-stop, ONE poweroff)."""
        raise Unsupported(f"{self.name} driver cannot stop nodes", site=self.site_name)

    def start(self, node_ids: Sequence[str]) -> None:
        """Power stopped nodes on again (Nova os-start, ONE resume)."""
        raise Unsupported(f"{self.name} driver cannot start nodes", site=self.site_name)

    def reboot(self, node_ids: Sequence[str], *, hard: bool = False) -> None:
        """Restart running nodes (the guest's own reboot; `hard`: power-cycle)."""
        raise Unsupported(f"{self.name} driver cannot reboot nodes", site=self.site_name)

    def console_log(self, node_id: str) -> str:
        """The node's serial console output, as the cloud keeps it."""
        raise Unsupported(f"{self.name} driver has no console log", site=self.site_name)

    # -- images (capabilities IMAGE_UPLOAD / IMAGE_DOWNLOAD / IMAGE_FROM_URL)
    def upload_image(self, name: str, data: Any, size: int, *, disk_format: str = "qcow2") -> ImageRef:
        """Create an image and send its bytes, iterating `data` (chunks; `len(data)` = size).
        Returns the image as the cloud now reports it (with its own hash, where it keeps one)."""
        raise Unsupported(f"{self.name} driver cannot upload images", site=self.site_name)

    def download_image(self, image_id: str) -> Iterator[bytes]:
        """The image's bytes, streamed in chunks."""
        raise Unsupported(f"{self.name} driver cannot download images", site=self.site_name)

    def import_image_url(self, name: str, url: str, *, disk_format: str = "qcow2", timeout: float = 1800) -> ImageRef:
        """Have the cloud fetch `url` into a new image; returns once the image is usable."""
        raise Unsupported(f"{self.name} driver cannot import images from a URL", site=self.site_name)

    def delete_image(self, image_id: str) -> None:
        raise Unsupported(f"{self.name} driver cannot delete images", site=self.site_name)

    def prepare_access(self, nodes: Sequence[Node]) -> list[Node]:
        """Make running nodes reachable before the SSH readiness check and return them with
        the address to connect to first (e.g. OpenStack attaches a floating IP when the site
        asks for one). Idempotent: safe to call again for the same nodes. Default: unchanged."""
        return list(nodes)

    # -- leases (Capability.LEASE): where group locks live so that other machines see them
    def lease_records(self, name: str) -> list[LeaseRecord]:
        """Every lease record called `name` that the caller can see (usually none or one)."""
        raise Unsupported(f"{self.name} driver keeps no leases", site=self.site_name)

    def lease_create(self, name: str, text: str) -> LeaseRecord:
        """A new record `name` holding `text` (the cloud does not refuse a second one)."""
        raise Unsupported(f"{self.name} driver keeps no leases", site=self.site_name)

    def lease_swap(self, record: LeaseRecord, text: str) -> LeaseRecord | None:
        """Replace the record's text only if it is still at `record.revision`, atomically on
        the cloud's side; None when it changed since (someone else wrote first). NotFound
        when it is gone."""
        raise Unsupported(f"{self.name} driver keeps no leases", site=self.site_name)

    def lease_delete(self, record: LeaseRecord) -> None:
        """Remove the record; one already gone is success."""
        raise Unsupported(f"{self.name} driver keeps no leases", site=self.site_name)

    def close(self) -> None:
        """Release connections. Safe to call more than once."""

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for `skyctl sites` (endpoint, cloud name...)."""
        return {}

    def identity(self) -> str | None:
        """Who this site knows the caller as (Keystone user id, OpenNebula user name), the
        same from any machine with the same credentials; None when the driver cannot say.
        skyctl labels nodes with it (their owner) and acts only on its own."""
        return None


class DriverRegistry:
    """Maps driver names to classes. Entry points are read once and loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, type[Driver]] = {}
        self._entry_points: dict[str, Any] | None = None

    def _eps(self) -> dict[str, Any]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return self._entry_points

    def register(self, name: str, cls: type[Driver]) -> None:
        """Register a driver class in-process (tests, plugins loaded by hand)."""
        with self._lock:
            self._loaded[name] = cls

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return sorted(set(self._eps()) | set(self._loaded))

    def load(self, name: str, *, site: str | None = None) -> type[Driver]:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            ep = self._eps().get(name)
            if ep is None:
                known = ", ".join(self.names()) or "none installed"
                path = f"sites.{site}.driver" if site else "driver"
                raise ConfigError(f"unknown driver {name!r} (installed: {known})", path=path)
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Driver)):
                raise ConfigError(f"entry point {name!r} is not a skyctl Driver", path="driver")
            self._loaded[name] = cls
            return cls


registry = DriverRegistry()
