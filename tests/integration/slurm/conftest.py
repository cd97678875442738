"""The real Slurm tier's cluster: started once for the module, stopped whatever happens.

Nothing runs at import: collecting this folder in the default run (which deselects the
`slurm` marker) costs nothing and needs no Slurm.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.slurm.cluster import Cluster, require_slurm


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_slurm()
    # Short: munged's socket path must fit a sockaddr_un.
    root = Path(tempfile.mkdtemp(prefix="skyslurm-"))
    c = Cluster(root)
    try:
        c.start(home_instances=4)
        yield c
    finally:
        c.stop()
    assert not c.agent_errors[-3:], c.agent_errors[-3:]
