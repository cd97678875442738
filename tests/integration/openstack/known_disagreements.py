"""pytest plugin for running tests/sandbox/test_openstack_api.py against real Nova.

`.ci/integration.sh` loads it (`-p tests.integration.openstack.known_disagreements`). Each
entry is an assertion of the sandbox's SDK-level tests that real Nova (Zed) contradicts,
with what Nova really answers. They stay strict xfails, so the step fails as soon as one is
fixed (then drop the entry) or a new one appears; they are not skipped.
"""

from __future__ import annotations

import pytest

KNOWN: dict[str, str] = {
    "test_limits_count_usage": (
        "real Nova counts usage from instance records in the cell database, written by the conductor "
        "~0.2-0.5 s after POST /servers answers 202: GET /limits read right after the create still shows "
        "totalInstancesUsed/totalCoresUsed/totalRAMUsed unchanged (the sandbox counts at once)"),
    "test_instance_quota_exhaustion_is_nova_403": (
        "real Nova: a second create sent right after the first (still BUILD) passes the API quota check "
        "(202); the conductor's recheck then puts it in ERROR with fault {code: 413, message: 'Quota "
        "exceeded for instances: Requested 1, but already used 1 of 1 instances'}. The immediate 403 "
        "comes only once the first server is in the cell database (e.g. ACTIVE)"),
    "test_list_pages_with_limit_and_marker": (
        "real Nova: marker paging over servers that are still building merges build requests and cell "
        "instances, and can repeat a server (seen: 7 entries for 5 servers) or miss one; once ACTIVE the "
        "pages are complete but servers created in the same second are not in strict newest-first order "
        "(created_at has one-second resolution)"),
}


# Entries whose outcome depends on how fast Nova's conductor is on the machine (seen both ways
# here): not strict, so a fast run that happens to agree does not fail the step.
TIMING_DEPENDENT = {"test_instance_quota_exhaustion_is_nova_403"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        reason = KNOWN.get(name)
        if reason and item.module is not None and item.module.__name__.endswith("test_openstack_api"):
            item.add_marker(pytest.mark.xfail(strict=name not in TIMING_DEPENDENT, reason=reason))
