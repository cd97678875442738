"""Token reuse across commands (issue 13 item 7): the Keystone token, its catalog and the
discovered versions are kept per cloud in skyctl's private state, reused until shortly before
expiry; a 401 re-authenticates once. Password, application-credential and OpenID Connect
access-token clouds all work against the sandbox's Keystone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from skyctl.errors import AuthError
from skyctl.logsafe import redact
from skyctl.sandbox.openstack import keystone as sandbox_keystone
from skyctl.site import SiteConfig
from skyctl.testing.sandbox import OpenStackSite
from skyctl_openstack.driver import OpenStackDriver, OpenStackOptions


def driver(site: OpenStackSite, cloud: str | None = None) -> OpenStackDriver:
    opts = OpenStackOptions(cloud=cloud or site.cloud, clouds_yaml=str(site.clouds_yaml))
    return OpenStackDriver(SiteConfig(name="home", driver="openstack", options=opts))


def command(site: OpenStackSite, cloud: str | None = None) -> int:
    """One `ps`-like command as a new process makes it: a new driver, a list, close. Returns the
    number of requests it sent to the site."""
    before = site.world.request_count
    d = driver(site, cloud)
    try:
        d.list({})
    finally:
        d.close()
    return site.world.request_count - before


def cache_files(home: Path) -> list[Path]:
    """The stored tokens (not the routes past openstacksdk, `fast-*`)."""
    return sorted(p for p in (home / "state" / "openstack-auth").glob("*.json") if not p.name.startswith("fast-"))


@pytest.mark.parametrize("cloud", ["home", "home-appcred", "home-oidc"])
def test_the_second_command_reuses_the_token_and_versions(site: OpenStackSite, skyctl_home: Path,
                                                          cloud: str) -> None:
    first = command(site, cloud)
    tokens = site.front.keystone.token_requests
    second = command(site, cloud)
    # first: (identity versions,) token (+ federated exchange), compute versions, the list
    assert first >= 3
    assert second == 1                                  # the list alone
    assert site.front.keystone.token_requests == tokens
    (path,) = cache_files(skyctl_home)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_the_cached_token_is_a_registered_secret(site: OpenStackSite, skyctl_home: Path) -> None:
    command(site)
    token = json.loads(json.loads(cache_files(skyctl_home)[0].read_text())["auth_state"])["auth_token"]
    assert token and token not in redact(f"token {token}")


def test_a_revoked_token_reauthenticates_once_and_is_replaced(site: OpenStackSite, skyctl_home: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    command(site)
    path = cache_files(skyctl_home)[0]
    old = json.loads(path.read_text())["auth_state"]
    site.front.keystone.revoke_all_tokens()
    tokens = site.front.keystone.token_requests
    with caplog.at_level(logging.DEBUG):
        assert command(site) >= 3                       # 401, a new token, the list again
    assert site.front.keystone.token_requests == tokens + 1
    assert json.loads(path.read_text())["auth_state"] != old
    assert command(site) == 1                           # and the new one is reused
    assert old not in caplog.text


def test_a_token_close_to_expiry_is_not_reused(site: OpenStackSite, skyctl_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_keystone, "TOKEN_TTL", 200.0)    # below the reuse margin
    command(site)
    tokens = site.front.keystone.token_requests
    command(site)
    assert site.front.keystone.token_requests == tokens + 1


def test_a_cache_file_readable_by_others_is_ignored(site: OpenStackSite, skyctl_home: Path) -> None:
    command(site)
    path = cache_files(skyctl_home)[0]
    path.chmod(0o644)
    tokens = site.front.keystone.token_requests
    command(site)
    assert site.front.keystone.token_requests == tokens + 1
    assert path.stat().st_mode & 0o777 == 0o600          # rewritten private


def test_changed_credentials_do_not_use_the_old_token(site: OpenStackSite, skyctl_home: Path) -> None:
    import yaml

    command(site)
    doc = yaml.safe_load(site.clouds_yaml.read_text())
    doc["clouds"]["home"]["auth"]["password"] = "wrong"
    site.clouds_yaml.write_text(yaml.safe_dump(doc))
    with pytest.raises(AuthError):
        command(site)


def test_a_wrong_application_credential_secret_is_keystones_401(site: OpenStackSite) -> None:
    import yaml

    doc = yaml.safe_load(site.clouds_yaml.read_text())
    doc["clouds"]["home-appcred"]["auth"]["application_credential_secret"] = "not-it"
    site.clouds_yaml.write_text(yaml.safe_dump(doc))
    with pytest.raises(AuthError):
        command(site, "home-appcred")


def test_an_unknown_oidc_access_token_is_an_auth_error(site: OpenStackSite) -> None:
    import yaml

    doc = yaml.safe_load(site.clouds_yaml.read_text())
    doc["clouds"]["home-oidc"]["auth"]["access_token"] = "expired-or-forged"
    site.clouds_yaml.write_text(yaml.safe_dump(doc))
    with pytest.raises(AuthError):
        command(site, "home-oidc")


def test_no_reuse_when_disabled(site: OpenStackSite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_OPENSTACK_TOKEN_CACHE", "0")
    command(site)
    tokens = site.front.keystone.token_requests
    command(site)
    assert site.front.keystone.token_requests == tokens + 1


SCRIPT = """
import json, sys
from skyctl.site import SiteConfig
from skyctl_openstack.driver import OpenStackDriver, OpenStackOptions
d = OpenStackDriver(SiteConfig(name="home", driver="openstack",
                               options=OpenStackOptions(cloud="home", clouds_yaml=sys.argv[1])))
n = len(d.list({}))
d.close()
print(json.dumps({"nodes": n, "sdk_imported": "openstack" in sys.modules}))
"""


def test_a_second_command_does_not_even_import_openstacksdk(site: OpenStackSite, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "ps.py"
    script.write_text(SCRIPT)

    def run() -> dict[str, object]:
        out = subprocess.run([sys.executable, str(script), str(site.clouds_yaml)], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])

    before = site.world.request_count
    assert run() == {"nodes": 0, "sdk_imported": True}
    middle = site.world.request_count
    assert run() == {"nodes": 0, "sdk_imported": False}        # keystoneauth alone, the stored route
    assert site.world.request_count - middle == 1 and middle - before >= 3


def test_a_service_first_used_later_takes_the_ordinary_way(site: OpenStackSite) -> None:
    command(site)                                # compute only
    d = driver(site)
    try:
        assert {i.name for i in d.images()} >= {"AlmaLinux-9-GenericCloud"}
        assert d.list({}) == []
    finally:
        d.close()
    before = site.world.request_count
    d = driver(site)
    try:
        d.images()                                # now known: one request
    finally:
        d.close()
    assert site.world.request_count - before == 1
