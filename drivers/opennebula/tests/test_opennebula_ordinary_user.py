"""What an ordinary OpenNebula user may and may not do, as oned decides it (issue 14 items 1,
5, 6): the host pool is hidden (an empty pool), their own quota cannot be raised, a login
token works as ONE_AUTH, and a VM stuck in PROLOG is recovered with delete only where the user
has that right; otherwise delete waits and reports it as still deleting."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pyone
import pytest

from skyctl.errors import Transient
from skyctl.polling import iterate_timeout
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.site import SiteConfig
from skyctl.testing.contract import ContractTarget, make_spec
from skyctl_opennebula.driver import OpenNebulaDriver, OpenNebulaOptions

from skyctl.model import RenderedContext

CTX = RenderedContext(one_context={"NETWORK": "YES", "SSH_PUBLIC_KEY": "ssh-ed25519 A k"})


def driver(front: OpenNebulaFront, one_auth: Path, ready_timeout: float = 10.0) -> OpenNebulaDriver:
    opts = OpenNebulaOptions(endpoint=front.endpoint, one_auth=str(one_auth))
    return OpenNebulaDriver(SiteConfig(name="cc", driver="opennebula", request_timeout=5.0,
                                       ready_timeout=ready_timeout, options=opts))


def in_prolog(d: OpenNebulaDriver, front: OpenNebulaFront, one_auth: Path, n: int = 1) -> list[str]:
    front.world.settings.update(prolog_seconds=600)
    target = ContractTarget(name="one", make_driver=lambda: d, image_name="AlmaLinux 9")
    ids = [d.create(make_spec(d, target, "p", f"p-{i}"), f"p-{i}", CTX).id for i in range(n)]
    for _ in iterate_timeout(10, "the VMs to be in PROLOG", interval=0.02):
        if all(d.get(i).extra["one_lcm_state"] == "PROLOG" for i in ids):
            return ids
    raise AssertionError("unreachable")


def count_calls(front: OpenNebulaFront, method: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    fn = front._methods[method]

    @functools.wraps(fn)
    def counted(*args: Any) -> Any:
        calls.append(args)
        return fn(*args)

    monkeypatch.setitem(front._methods, method, counted)
    return calls


def test_the_host_pool_is_empty_for_an_ordinary_user(front: OpenNebulaFront, one_auth: Path) -> None:
    session = one_auth.read_text().strip()
    assert pyone.OneServer(front.endpoint, session=session).hostpool.info().HOST == []
    cap = driver(front, one_auth).capacity()
    assert cap.host_free_cpus is None and cap.instances.limit == 16      # quota only: no host room known
    admin = OpenNebulaFront(front.world, username="oneadmin", password="admin-pw")
    admin.start()
    try:
        assert len(pyone.OneServer(admin.endpoint, session="oneadmin:admin-pw").hostpool.info().HOST) == 2
    finally:
        admin.stop()


def test_an_ordinary_user_may_not_raise_their_own_quota(front: OpenNebulaFront, one_auth: Path) -> None:
    one = pyone.OneServer(front.endpoint, session=one_auth.read_text().strip())
    with pytest.raises(pyone.OneAuthorizationException) as info:
        one.user.quota(2, "VM = [ VMS = 100 ]")
    assert str(info.value) == "[one.user.quota] User [2] : Not authorized to perform ADMIN USER [2]."
    assert front.world.quota.instances == 16


def test_a_login_token_from_user_login_works_as_one_auth(front: OpenNebulaFront, one_auth: Path,
                                                          tmp_path: Path) -> None:
    one = pyone.OneServer(front.endpoint, session=one_auth.read_text().strip())
    token = one.user.login("skyuser", "", 3600, -1)
    auth = tmp_path / "one_auth_token"
    auth.write_text(f"skyuser:{token}\n")
    auth.chmod(0o600)
    assert token not in one_auth.read_text()
    assert driver(front, auth).capacity().instances.limit == 16
    one.user.login("skyuser", token, 0, -1)       # valid 0: the token is dropped
    from skyctl.errors import AuthError

    with pytest.raises(AuthError, match="couldn't be authenticated"):
        driver(front, auth).capacity()


def test_delete_recovers_a_vm_stuck_in_prolog_where_the_user_may(front: OpenNebulaFront, one_auth: Path) -> None:
    front.world.settings["user_recover"] = True
    d = driver(front, one_auth, ready_timeout=0.5)
    in_prolog(d, front, one_auth, 2)
    d.delete([n.id for n in d.list({})])                  # no "still deleting": recovered at once
    assert front.world.live_vms() == []


def test_without_the_right_recover_is_asked_once_then_delete_waits(front: OpenNebulaFront, one_auth: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    recovers = count_calls(front, "one.vm.recover", monkeypatch)
    d = driver(front, one_auth, ready_timeout=0.5)
    ids = in_prolog(d, front, one_auth, 2)
    with pytest.raises(Transient, match="still deleting.*Could not terminate VM"):
        d.delete(ids)
    assert len(recovers) == 1                              # refused once: not asked again
    assert len(front.world.live_vms()) == 2
    for vm in front.world.live_vms():                      # the image copies finish
        vm.extra["one"]["phases"] = (0.0, 0.0, 0.0)
    d.delete(ids)
    assert front.world.live_vms() == [] and len(recovers) == 1


def test_images_by_name_owner_or_id_as_an_ordinary_user(opennebula_sandbox_site: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Allocate mode: oneadmin's image named as `name`, `{name, owner}` or its id; the DISK goes
    with IMAGE_UID (oned looks a bare IMAGE name up among the caller's own images only)."""
    import json

    import yaml

    from skyctl.cli.main import main

    site = opennebula_sandbox_site
    allocated = count_calls(site.front, "one.vm.allocate", monkeypatch)
    ubuntu = next(i for i in site.world.images.values() if i.name == "Ubuntu 24.04")
    sky = tmp_path / "sky.yaml"
    sky.write_text(yaml.safe_dump({
        "sites": {"cc": {"driver": "opennebula", "tier": "local", "endpoint": site.endpoint, "mode": "allocate",
                         "network": "sandbox-net", "one_auth": str(site.one_auth), "ssh": {"check_ready": False}}},
        "images": {"byname": {"cc": "Ubuntu 24.04"}, "byowner": {"cc": {"name": "Ubuntu 24.04", "owner": "oneadmin"}},
                   "byid": {"cc": int(ubuntu.id)}, "notmine": {"cc": {"name": "Ubuntu 24.04", "owner": "skyuser"}}},
        "sizes": {"small": {"cpus": 1, "memory": "2GiB"}}, "defaults": {"size": "small"}}))
    monkeypatch.setenv("SKYCTL_CONFIG", str(sky))
    for image in ("byname", "byowner", "byid"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["launch", f"i-{image}", "--image", image, "-o", "json"])
        out = capsys.readouterr()
        assert info.value.code in (0, None), out.err
        (node,) = json.loads(out.out)["nodes"]
        assert site.world.get_vm(node["id"]).image_id == ubuntu.id
    assert all("<IMAGE>Ubuntu 24.04</IMAGE><IMAGE_UID>0</IMAGE_UID>" in args[1] for args in allocated)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["launch", "i-notmine", "--image", "notmine", "-o", "json"])
    assert info.value.code == 4
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["plan", "i-notmine", "--image", "notmine", "-o", "json"])
    assert "site has no image Ubuntu 24.04 (owner skyuser)" in capsys.readouterr().out
