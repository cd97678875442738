"""pytest plugin for running tests/sandbox/test_openstack_api.py against real Nova.

`.ci/integration.sh` loads it (`-p tests.integration.openstack.known_disagreements`). Each
entry is an assertion of the sandbox's SDK-level tests that real Nova (Zed) contradicts,
with what Nova really answers. They stay strict xfails, so the step fails as soon as one is
fixed (then drop the entry) or a new one appears; they are not skipped. Only answers that
are the same on every run belong here: where the outcome depends on how fast Nova is, the test
waits for the state in which both agree instead (a strict xfail would fail the tier by chance).
"""

from __future__ import annotations

import pytest

# Empty now: the three that were listed (usage counts, the instance-quota 403, marker paging)
# all differed only while servers were still building, because real Nova's conductor writes the
# cell database a moment after the 202. Their outcome depended on machine speed, so the tests
# now wait for ACTIVE, where both agree (the build-time behaviour is handled by the driver and
# launch, and tested against real Nova in tests/integration).
KNOWN: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        reason = KNOWN.get(name)
        if reason and item.module is not None and item.module.__name__.endswith("test_openstack_api"):
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
