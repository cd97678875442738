"""Real Glance, through the OpenStack driver: an image skyctl uploads (create, then PUT
/v2/images/{id}/file streamed with a Content-Length) comes back active with the
`os_hash_value` Glance computed itself (sha512 by default, `hashing_algorithm` in
glance-api.conf), which is what `skyctl image list` and `images.policy: verify` compare; and
its bytes stream back unchanged."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skyctl.model import Capability
from skyctl.ops.replicate import HashingReader
from skyctl.policy.images import Endorsed, site_sha512, status
from skyctl_openstack.driver import OpenStackDriver

pytestmark = pytest.mark.integration

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)     # a few chunks and a ragged end


@pytest.fixture
def driver(real_cloud: Any) -> Iterator[OpenStackDriver]:
    d = real_cloud.driver(network="none")
    yield d
    d.close()


def test_an_uploaded_image_reports_glances_own_sha512(driver: OpenStackDriver) -> None:
    assert Capability.IMAGE_UPLOAD in driver.capabilities
    name = f"skyctl-it-{uuid.uuid4().hex[:8]}"
    chunks = iter([PAYLOAD[i:i + 1024 * 1024] for i in range(0, len(PAYLOAD), 1024 * 1024)])
    reader = HashingReader(chunks, len(PAYLOAD))
    img = driver.upload_image(name, reader, len(PAYLOAD), disk_format="raw")
    try:
        want = hashlib.sha512(PAYLOAD).hexdigest()
        assert reader.sha512 == want and reader.done == len(PAYLOAD)
        assert img.extra["status"] == "active" and img.extra["size"] == len(PAYLOAD)
        assert img.extra["os_hash_algo"] == "sha512"
        assert site_sha512(img) == want                      # Glance's own hash of what it stored
        assert img.checksum == hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()
        listed = next(i for i in driver.images() if i.id == img.id)
        assert status(listed, Endorsed(policy="verify", list="l", sha512=want)) == "verified"
        assert status(listed, Endorsed(policy="verify", list="l", sha512="0" * 128)) == "mismatch"
        assert b"".join(driver.download_image(img.id)) == PAYLOAD
    finally:
        driver.delete_image(img.id)
    assert all(i.id != img.id for i in driver.images())
