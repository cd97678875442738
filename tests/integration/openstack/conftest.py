"""The real OpenStack these tests talk to, and member/admin connections to it.

By default it is the stack that `up.sh` (next to this file) starts: clouds.yaml in
$SKYCTL_OPENSTACK_DIR (default ~/.cache/skyctl-openstack), member cloud `skyctl`, admin cloud
`skyctl-admin`, image `cirros`, flavor `m1.tiny`, shared network `skyctl-net`. Any other cloud
works the same way: OS_CLIENT_CONFIG_FILE names the clouds.yaml and the
SKYCTL_TEST_OPENSTACK_{CLOUD,ADMIN_CLOUD,IMAGE,FLAVOR,NETWORK} variables the rest (the same
variables point tests/component/test_openstack_api.py at a real cloud).

Nothing here runs at import time, so collecting this folder in the default run (which
deselects the `integration` marker) costs nothing and needs no cloud.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


# Read at import: the suite's autouse fixtures point HOME at a temporary folder later on.
STACK_DIR = Path(os.environ.get("SKYCTL_OPENSTACK_DIR") or Path.home() / ".cache" / "skyctl-openstack")


@dataclass
class RealCloud:
    clouds_yaml: Path
    cloud: str
    admin_cloud: str
    image: str
    flavor: str
    network: str
    conn: Any          # member connection (the project skyctl launches into)
    admin: Any         # admin connection (quotas)

    @property
    def project_id(self) -> str:
        return str(self.conn.current_project_id)

    @property
    def user_id(self) -> str:
        return str(self.conn.current_user_id)

    def driver(self, **options: Any) -> Any:
        """skyctl's OpenStack driver on this cloud, as a site named `nova` with `options`."""
        from skyctl.site import SiteConfig
        from skyctl_openstack.driver import OpenStackDriver

        opts = OpenStackDriver.options_model(cloud=self.cloud, clouds_yaml=str(self.clouds_yaml), **options)
        return OpenStackDriver(SiteConfig(name="nova", driver="openstack", options=opts))

    def delete_servers(self, server_ids: list[str]) -> None:
        """Delete these servers and wait until Nova no longer finds them."""
        from skyctl.polling import iterate_timeout

        for sid in server_ids:
            self.conn.compute.delete_server(sid, ignore_missing=True)
        for _ in iterate_timeout(60, "the servers to go away", interval=0.3):
            if not any(self.conn.compute.find_server(sid) for sid in server_ids):
                break

    def instances_used(self) -> int:
        return int(self.conn.compute.get_limits().absolute.instances_used)

    def set_instance_quota(self, n: int | None) -> None:
        """The project's instance quota (None: back to the default)."""
        if n is None:
            self.admin.delete_compute_quotas(self.project_id)
        else:
            self.admin.set_compute_quotas(self.project_id, instances=n)

    def set_user_instance_quota(self, n: int | None) -> None:
        """The member user's own instance quota inside the project. Nova checks it on create but
        `GET /limits` reports only the project's, so a launch planned from the limits runs into it
        mid-launch."""
        path = f"/os-quota-sets/{self.project_id}?user_id={self.user_id}"
        if n is None:
            resp = self.admin.compute.delete(path)
            assert resp.status_code in (200, 202, 204), resp.text
        else:
            resp = self.admin.compute.put(path, json={"quota_set": {"instances": n}})
            assert resp.status_code == 200, resp.text

    def servers(self, **filters: str) -> list[dict[str, Any]]:
        """Servers of the member project as Nova itself reports them (raw JSON), filtered on the
        server side (e.g. tags='skyctl,skyctl-group=g'). One page: these tests make a handful."""
        resp = self.conn.compute.get("/servers/detail", params=filters or None, microversion="2.52")
        assert resp.status_code == 200, resp.text
        return list(resp.json()["servers"])


def _connect(clouds_yaml: Path, cloud: str) -> Any:
    import openstack
    import openstack.config

    region = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)]).get_one(cloud=cloud)
    return openstack.connection.Connection(config=region)


# Server names the test suites make: contract (ct-), CLI (it-), SDK-level sandbox tests (t-).
TEST_PREFIXES = ("ct-", "it-", "t-")


def _delete_test_servers(real: RealCloud) -> None:
    def mine() -> list[dict[str, Any]]:
        return [s for s in real.servers() if s["name"].startswith(TEST_PREFIXES)]

    for s in mine():
        real.conn.compute.delete_server(s["id"], ignore_missing=True)
    deadline = time.monotonic() + 120
    while mine():
        assert time.monotonic() < deadline, "servers left by an earlier run are not going away"
        time.sleep(0.5)


# Key pairs: skyctl imports one per public key (skyctl-<hash>) and keeps it, as `openstack
# keypair create` would. Every CLI test here runs in a fresh home with a fresh key, so each run
# adds a few; the SDK-level tests make k-/t-gen- ones. Nova caps key pairs per user (100 by
# default) and up.sh keeps its database between runs, so without this sweep the tier fails once
# enough runs have gone by. Removing a skyctl-* pair costs a user nothing: skyctl imports it
# again the next time it needs it.
TEST_KEYPAIR_PREFIXES = ("skyctl-", "k-", "t-gen-")


def _delete_test_keypairs(real: RealCloud) -> None:
    for kp in list(real.conn.compute.keypairs()):
        if kp.name.startswith(TEST_KEYPAIR_PREFIXES):
            real.conn.compute.delete_keypair(kp.name, ignore_missing=True)


@pytest.fixture(scope="session")
def real_cloud() -> Iterator[RealCloud]:
    clouds_yaml = Path(os.environ.get("OS_CLIENT_CONFIG_FILE") or STACK_DIR / "clouds.yaml")
    if not clouds_yaml.is_file():
        pytest.fail(f"no clouds.yaml at {clouds_yaml}: start the stack with tests/integration/openstack/up.sh "
                    "(or set OS_CLIENT_CONFIG_FILE)", pytrace=False)
    cloud = os.environ.get("SKYCTL_TEST_OPENSTACK_CLOUD", "skyctl")
    admin_cloud = os.environ.get("SKYCTL_TEST_OPENSTACK_ADMIN_CLOUD", f"{cloud}-admin")
    conn = _connect(clouds_yaml, cloud)
    admin = _connect(clouds_yaml, admin_cloud)
    problem = None
    try:
        conn.authorize()
        admin.authorize()
    except Exception as e:  # noqa: BLE001 - any failure here means "the stack is not there"
        problem = type(e).__name__
    if problem:
        pytest.fail(f"cannot reach the OpenStack of {clouds_yaml} ({problem}): is up.sh running?", pytrace=False)
    real = RealCloud(clouds_yaml, cloud, admin_cloud,
                     os.environ.get("SKYCTL_TEST_OPENSTACK_IMAGE", "cirros"),
                     os.environ.get("SKYCTL_TEST_OPENSTACK_FLAVOR", "m1.tiny"),
                     os.environ.get("SKYCTL_TEST_OPENSTACK_NETWORK", "skyctl-net"), conn, admin)
    # A run that died half-way may have left servers, key pairs or a small quota behind: start clean.
    _delete_test_servers(real)
    _delete_test_keypairs(real)
    real.set_user_instance_quota(None)
    real.set_instance_quota(None)
    yield real
    _delete_test_keypairs(real)
    real.set_user_instance_quota(None)
    real.set_instance_quota(None)
    conn.close()
    admin.close()
