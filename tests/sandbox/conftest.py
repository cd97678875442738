"""Fixtures for the sandbox's own tests: openstacksdk connections to a sandbox site's clouds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def connect() -> Iterator[Callable[[Path, str], Any]]:
    """connect(clouds_yaml, cloud): an openstacksdk connection for one entry of that clouds.yaml
    (the caller closes it)."""
    import openstack
    import openstack.config

    def _connect(clouds_yaml: Path, cloud: str) -> Any:
        config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
        return openstack.connection.Connection(config=config.get_one(cloud=cloud))

    yield _connect
