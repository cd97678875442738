"""The in-memory test driver passes the same contract as the real drivers."""

from __future__ import annotations

import pytest

from skyctl.site import SiteConfig
from tests import memdriver
from tests.contract.suite import ContractTarget, DriverContract


@pytest.fixture
def target():
    memdriver.reset()
    site = SiteConfig(name="mem", driver="memory", options=memdriver.MemoryOptions())

    def set_quota(n: int | None) -> None:
        memdriver.cloud("mem").quota_instances = n

    yield ContractTarget(name="memory", make_driver=lambda: memdriver.MemoryDriver(site), image_name="alma9",
                         set_instance_quota=set_quota)
    memdriver.reset()


class TestMemoryDriver(DriverContract):
    pass
