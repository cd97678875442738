"""Group-lock leases on OpenStack: a Neutron security group without rules whose description
changes only by compare-and-swap (`If-Match: revision_number=N`; 412 when someone wrote
first), through the driver against the sandbox's Neutron, and through the lease protocol."""

from __future__ import annotations

import pytest

from skyctl.errors import NotFound
from skyctl.ops.cloudlock import CloudLease, LeaseBusy
from skyctl.testing.sandbox import OpenStackSite as SandboxSite


def test_a_swap_at_a_stale_revision_is_refused_by_neutron(site: SandboxSite, make_driver) -> None:
    a, b = make_driver(site), make_driver(site)
    try:
        rec = a.lease_create("skyctl-lock-me-web", "")
        assert a.lease_records("skyctl-lock-me-web") == [rec]
        assert a.lease_records("skyctl-lock-me-we") == []  # the name is matched exactly
        won = b.lease_swap(rec, '{"state":"held","pid":1}')
        assert won is not None and won.revision > rec.revision and won.text == '{"state":"held","pid":1}'
        assert a.lease_swap(rec, '{"state":"held","pid":2}') is None  # 412: b wrote first
        assert a.lease_records("skyctl-lock-me-web")[0].text == '{"state":"held","pid":1}'
        a.lease_delete(won)
        a.lease_delete(won)  # already gone: fine
        with pytest.raises(NotFound):
            a.lease_swap(won, "")
    finally:
        a.close()
        b.close()


def test_a_second_machine_waits_for_the_lease_on_neutron(site: SandboxSite, make_driver) -> None:
    a, b = make_driver(site), make_driver(site)
    first = CloudLease(a, "skyctl-lock-me-db", site="home", ttl=30)
    try:
        first.take(5, "the lock of group db")
        with pytest.raises(LeaseBusy, match="lock kept on home"):
            CloudLease(b, "skyctl-lock-me-db", site="home", ttl=30).take(0.5, "the lock of group db")
        first.give_back()
        assert b.lease_records("skyctl-lock-me-db") == []  # given back: no security group left
        second = CloudLease(b, "skyctl-lock-me-db", site="home", ttl=30)
        second.take(5, "the lock of group db")
        second.give_back()
    finally:
        a.close()
        b.close()
