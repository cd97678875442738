"""A sandbox OpenNebula site for tests: the world and its XML-RPC front (the twin of
tests/sandbox/openstack_site.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from skyctl.sandbox import spec as sandbox_spec
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.sandbox.world import SiteWorld


def make_world(boot_delay: float = 0.05, *, seed: int = 1, **site: object) -> SiteWorld:
    """The default federation's `cc` site, with `site` fields merged over it."""
    spec = sandbox_spec.resolve({"sites": {"cc": dict(site)}} if site else None)
    world = sandbox_spec.build_world("cc", spec["sites"]["cc"], spec, seed=seed)
    world.faults.boot_delay = boot_delay
    return world


@contextmanager
def serving(world: SiteWorld, password: str) -> Iterator[OpenNebulaFront]:
    front = OpenNebulaFront(world, password=password)
    front.start()
    try:
        yield front
    finally:
        front.stop()
