"""An in-memory cloud and its driver, for tests of the core (ops, CLI) without any server.

It keeps the same rules as a real cloud where skyctl's logic depends on them: quotas are
enforced at create, listing filters by labels, deleting a missing node is fine, unknown ids
raise NotFound. It passes the driver contract suite (`skyctl.testing.contract`). The plugin's
`memory_driver` fixture registers it as the driver `memory`.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from skyctl.drivers import Driver
from skyctl.errors import AuthError, InvalidRequest, NotFound, QuotaExceeded, Transient
from skyctl.model import (CAPACITY_FAULT, Capability, Capacity, Flavor, ImageRef, Labels, LeaseRecord, Limit, Node,
                          NodeSpec, NodeState, RenderedContext)


class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    instances: int = 8
    cores: int = 16
    ram_mib: int = 32768
    images: list[str] = ["alma9", "ubuntu-24.04"]
    # Glance-like sha512 per image name; an image not named here hashes as sha512(name), so a
    # test can give one site a wrong copy of an image.
    image_sha512: dict[str, str] = {}
    auth_ok: bool = True
    down: bool = False
    user: str = "memory-user"  # who the cloud knows the caller as (its owner label)


FLAVORS = [Flavor("f1", "m1.small", 1, 2048), Flavor("f2", "m1.medium", 2, 4096), Flavor("f4", "m1.large", 4, 8192)]


@dataclass
class Cloud:
    nodes: dict[str, tuple[Node, RenderedContext]] = field(default_factory=dict)
    quota_instances: int | None = None  # overrides options when set (tests)
    # A limit that create enforces but capacity() does not show: room taken by someone else
    # between skyctl's snapshot and its creates (the mid-launch quota race).
    hidden_instance_limit: int | None = None
    # Hosts for this many nodes: a create beyond it is accepted, and the node then sits in
    # ERROR for lack of hosts (what Nova does asynchronously with "No valid host").
    host_slots: int | None = None
    # The next this-many creates answer like an overloaded API (before creating anything).
    fail_next_creates: int = 0
    # Nodes created from now on go to ERROR with this fault, which is no lack of capacity
    # (a broken image, a port that would not bind).
    build_fault: str | None = None
    # Nodes created from now on are PENDING (booting) for this many list() answers, then run.
    boot_lists: int = 0
    booting: dict[str, int] = field(default_factory=dict)  # node id -> list() answers still pending
    leases: dict[str, LeaseRecord] = field(default_factory=dict)  # lock records, by id
    # Ctrl-C at an exact point: the driver call `interrupt_on` ("list", "create", "delete",
    # "get", "capacity"), after `interrupt_after` such calls went through, raises
    # KeyboardInterrupt (what Python raises when SIGINT lands), once.
    interrupt_on: str | None = None
    interrupt_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


CLOUDS: dict[str, Cloud] = {}
EVENTS: list[tuple[str, str, str]] = []  # (op, site, node name), in the order the clouds saw them
_ids = itertools.count(1)


def cloud(site: str) -> Cloud:
    return CLOUDS.setdefault(site, Cloud())


def reset() -> None:
    CLOUDS.clear()
    EVENTS.clear()


class MemoryDriver(Driver):
    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.STOP_START, Capability.REBOOT,
                                                                Capability.CONSOLE_LOG,
                                                                Capability.SERVER_SIDE_LABEL_FILTER,
                                                                Capability.LEASE})
    options_model: ClassVar[type[BaseModel]] = MemoryOptions

    @property
    def options(self) -> MemoryOptions:
        return self.site.options or MemoryOptions()

    @property
    def cloud(self) -> Cloud:
        return cloud(self.site_name)

    def _point(self, op: str) -> None:
        c = self.cloud
        with c.lock:
            if c.interrupt_on != op:
                return
            if c.interrupt_after > 0:
                c.interrupt_after -= 1
                return
            c.interrupt_on = None
        raise KeyboardInterrupt

    def _check(self) -> None:
        if self.options.down:
            raise Transient("connection refused", site=self.site_name)
        if not self.options.auth_ok:
            raise AuthError("the cloud refused the credentials", site=self.site_name)

    def _usage(self) -> tuple[int, int, int]:
        live = [n for n, _ in self.cloud.nodes.values()]
        return len(live), sum(int(n.extra["cpus"]) for n in live), sum(int(n.extra["ram"]) for n in live)

    def _instance_limit(self) -> int:
        q = self.cloud.quota_instances
        return self.options.instances if q is None else q

    def identity(self) -> str | None:
        self._check()
        return self.options.user

    # -- leases: compare-and-swap under the cloud's lock, like Neutron's If-Match
    def lease_records(self, name: str) -> list[LeaseRecord]:
        self._check()
        with self.cloud.lock:
            return [r for r in self.cloud.leases.values() if r.name == name]

    def lease_create(self, name: str, text: str) -> LeaseRecord:
        self._check()
        rec = LeaseRecord(f"lease-{next(_ids)}", name, text, 1)
        with self.cloud.lock:
            self.cloud.leases[rec.id] = rec
        return rec

    def lease_swap(self, record: LeaseRecord, text: str) -> LeaseRecord | None:
        self._check()
        with self.cloud.lock:
            now = self.cloud.leases.get(record.id)
            if now is None:
                raise NotFound(f"lock record {record.id} does not exist", site=self.site_name)
            if now.revision != record.revision:
                return None
            new = LeaseRecord(now.id, now.name, text, now.revision + 1)
            self.cloud.leases[now.id] = new
            return new

    def lease_delete(self, record: LeaseRecord) -> None:
        self._check()
        with self.cloud.lock:
            self.cloud.leases.pop(record.id, None)

    def capacity(self) -> Capacity:
        self._point('capacity')
        self._check()
        n, c, r = self._usage()
        return Capacity(Limit("instances", n, self._instance_limit()), Limit("cores", c, self.options.cores),
                        Limit("ram_mib", r, self.options.ram_mib))

    def flavors(self) -> list[Flavor]:
        self._check()
        return list(FLAVORS)

    def images(self) -> list[ImageRef]:
        self._check()
        return [ImageRef(f"img-{name}", name, checksum=f"md5-{name}",
                         extra={"os_hash_algo": "sha512",
                                "os_hash_value": self.options.image_sha512.get(name)
                                or hashlib.sha512(name.encode()).hexdigest()})
                for name in self.options.images]

    def create(self, spec: NodeSpec, name: str, context: RenderedContext) -> Node:
        self._point('create')
        self._check()
        with self.cloud.lock:
            if self.cloud.fail_next_creates > 0:
                self.cloud.fail_next_creates -= 1
                raise Transient("HTTP 503: service unavailable", site=self.site_name)
            n, c, r = self._usage()
            hidden = self.cloud.hidden_instance_limit
            if hidden is not None and n + 1 > hidden:
                raise QuotaExceeded(
                    f"Quota exceeded for instances: Requested 1, but already used {n} of {hidden} instances",
                    site=self.site_name, resource="instances", requested=1, used=n, limit=hidden)
            for res, used, need, limit in (("instances", n, 1, self._instance_limit()),
                                           ("cores", c, spec.flavor.cpus, self.options.cores),
                                           ("ram", r, spec.flavor.memory_mib, self.options.ram_mib)):
                if used + need > limit:
                    raise QuotaExceeded(
                        f"Quota exceeded for {res}: Requested {need}, but already used {used} of {limit} {res}",
                        site=self.site_name, resource=res, requested=need, used=used, limit=limit)
            no_host = self.cloud.host_slots is not None and n + 1 > self.cloud.host_slots
            extra_fault = {CAPACITY_FAULT: True, "fault": "No valid host was found."} if no_host else \
                {"fault": self.cloud.build_fault} if self.cloud.build_fault else {}
            node = Node(name=name, group=spec.labels.get("group"), site=self.site_name, driver=self.name,
                        id=f"mem-{next(_ids)}", state=NodeState.ERROR if extra_fault else
                        NodeState.PENDING if self.cloud.boot_lists else NodeState.RUNNING,
                        addresses=("127.0.0.1",),
                        image=spec.image_name or spec.image.name, size=spec.size_name or spec.flavor.name,
                        created_at=datetime.now(UTC).isoformat(timespec="seconds"), labels=dict(spec.labels),
                        extra={"cpus": spec.flavor.cpus, "ram": spec.flavor.memory_mib, **extra_fault})
            self.cloud.nodes[node.id] = (node, context)
            if self.cloud.boot_lists and not extra_fault:
                self.cloud.booting[node.id] = self.cloud.boot_lists
            EVENTS.append(("create", self.site_name, name))
        return node

    def list(self, selector: Labels | None = None, *, managed_only: bool = True) -> list[Node]:
        self._point('list')
        self._check()
        sel = dict(selector or {})
        out = []
        with self.cloud.lock:
            for node_id, (node, ctx) in list(self.cloud.nodes.items()):
                if all(node.labels.get(k) == v for k, v in sel.items()):
                    out.append(node)
                    left = self.cloud.booting.get(node_id)
                    if left is not None:  # seen booting once more; runs after its last answer
                        if left <= 1:
                            del self.cloud.booting[node_id]
                            self.cloud.nodes[node_id] = (replace(node, state=NodeState.RUNNING), ctx)
                        else:
                            self.cloud.booting[node_id] = left - 1
        return out

    def get(self, node_id: str) -> Node:
        self._point('get')
        self._check()
        try:
            return self.cloud.nodes[node_id][0]
        except KeyError:
            raise NotFound(f"node {node_id} not found", site=self.site_name) from None

    def delete(self, node_ids: Sequence[str]) -> None:
        self._point('delete')
        self._check()
        with self.cloud.lock:
            for i in node_ids:
                gone = self.cloud.nodes.pop(i, None)
                if gone is not None:
                    EVENTS.append(("delete", self.site_name, gone[0].name))

    def _set_state(self, node_ids: Sequence[str], state: NodeState, verb: str,
                   allowed: tuple[NodeState, ...]) -> None:
        """Like a real cloud: a node already in `state` is success, one in another state than
        `allowed` is refused (InvalidRequest), a missing one is NotFound; every id is tried."""
        self._check()
        first: Exception | None = None
        with self.cloud.lock:
            for i in node_ids:
                if i not in self.cloud.nodes:
                    first = first or NotFound(f"node {i} not found", site=self.site_name)
                    continue
                node, ctx = self.cloud.nodes[i]
                if node.state == state and verb != "reboot":
                    continue
                if node.state not in allowed:
                    first = first or InvalidRequest(f"cannot {verb} node {i} while it is {node.state.value}",
                                                    site=self.site_name)
                    continue
                self.cloud.nodes[i] = (replace(node, state=state), ctx)
                EVENTS.append((verb, self.site_name, node.name))
        if first is not None:
            raise first

    def stop(self, node_ids: Sequence[str]) -> None:
        self._set_state(node_ids, NodeState.STOPPED, "stop", (NodeState.RUNNING, NodeState.ERROR))

    def start(self, node_ids: Sequence[str]) -> None:
        self._set_state(node_ids, NodeState.RUNNING, "start", (NodeState.STOPPED,))

    def reboot(self, node_ids: Sequence[str], *, hard: bool = False) -> None:
        allowed = (NodeState.RUNNING, NodeState.STOPPED, NodeState.ERROR) if hard else (NodeState.RUNNING,)
        self._set_state(node_ids, NodeState.RUNNING, "reboot", allowed)

    def console_log(self, node_id: str) -> str:
        node = self.get(node_id)
        return f"[    0.000000] Linux version 6.1 (memory)\n{node.name} login: \n"
