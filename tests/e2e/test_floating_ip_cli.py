"""A site that asks for floating IPs, end to end: `skyctl sandbox up --spec` with
`floating_ip: true` for `home`, `launch --wait` gives the node a floating IP, `exec` reaches the
node through it (the guest's SSH_CONNECTION names the address it was reached on), and `delete`
releases it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def sandbox(tmp_path: Path, sandbox_up: Any) -> Iterator[Any]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"boot_delay": 0.1,
                                    "sites": {"home": {"floating_ip": True}, "cc": None, "sara": None}}))
    with sandbox_up(tmp_path / "home", "--spec", str(spec)) as running:
        yield running


def test_launch_wait_exec_delete_through_a_floating_ip(sandbox: Any) -> None:
    sky = yaml.safe_load((sandbox.dir / "sky.yaml").read_text())
    assert sky["sites"]["home"]["ssh"]["floating_ip"] is True

    sandbox.run("launch", "fl", "--count", "1", "--site", "home", "--wait")
    nodes = json.loads(sandbox.run("ps", "-o", "json").stdout)
    assert len(nodes) == 1
    floating = nodes[0]["addresses"][0]
    assert floating.startswith("127.200.")

    results = json.loads(sandbox.run("exec", "fl", "-o", "json", "--", "echo $SSH_CONNECTION; hostname")
                         .stdout)
    assert [r["exit_code"] for r in results] == [0]
    connection, hostname = results[0]["stdout"].splitlines()
    assert connection.split()[2] == floating and hostname == "fl-0"

    sandbox.run("delete", "fl", "--yes")
    conn = sandbox.openstack("home")
    try:
        assert list(conn.network.ips()) == []        # released, not leaked
    finally:
        conn.close()
