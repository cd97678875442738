"""The in-memory test driver passes the same contract as the real drivers (through skyctl's
pytest plugin, as a third-party driver's tests would run it)."""

from __future__ import annotations

import pytest

from skyctl.site import SiteConfig
from skyctl.testing import memory
from skyctl.testing.contract import ContractTarget, DriverContract


@pytest.fixture
def target():
    memory.reset()
    site = SiteConfig(name="mem", driver="memory", options=memory.MemoryOptions())

    def set_quota(n: int | None) -> None:
        memory.cloud("mem").quota_instances = n

    yield ContractTarget(name="memory", make_driver=lambda: memory.MemoryDriver(site), image_name="alma9",
                         set_instance_quota=set_quota)
    memory.reset()


class TestMemoryDriver(DriverContract):
    pass
