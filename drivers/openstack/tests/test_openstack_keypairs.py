"""Key pairs: a launch's parallel creates import the user's key once, not once per thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from skyctl.model import RenderedContext
from skyctl.testing.contract import ContractTarget, make_spec
from skyctl.testing.sandbox import OPENSTACK_IMAGE as IMAGE
from skyctl.testing.sandbox import OpenStackSite as SandboxSite

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4or+mPFCfpQb8fn4sPzAJTxfP6f+VsWBuxUqHaKpsn me@laptop"


def _keypair_calls(site: SandboxSite) -> dict[str, int]:
    return {k: v for k, v in site.world.requests_by_path.items() if "/os-keypairs" in k}


def test_parallel_creates_with_a_new_key_import_it_once(site: SandboxSite, make_driver) -> None:  # type: ignore[no-untyped-def]
    driver = make_driver(site)
    target = ContractTarget(name="t", make_driver=lambda: driver, image_name=IMAGE, memory_mib=512)
    site.world.faults.latency_ms = 20  # every thread is in flight before the first import returns
    ctx = RenderedContext(ssh_public_keys=(KEY,))
    with ThreadPoolExecutor(8) as pool:
        nodes = list(pool.map(lambda i: driver.create(make_spec(driver, target, "k", f"k-{i}", i), f"k-{i}", ctx),
                              range(8)))
    assert len({site.world.get_vm(n.id).key_name for n in nodes}) == 1
    calls = _keypair_calls(site)
    # One lookup (404) and one import, whatever the number of create threads.
    assert sorted(calls.values()) == [1, 1], calls
    assert any(k.startswith("POST ") for k in calls), calls
