"""The driver pointed at an XML-RPC endpoint that answers with bodies recorded from real
OpenNebula servers: states, quota and errors come out right, and no credential leaks."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from skyctl.site import SiteConfig
from skyctl.errors import NotFound
from skyctl.model import NodeState
from skyctl_opennebula import driver as one_driver
from skyctl_opennebula.driver import OpenNebulaDriver, OpenNebulaOptions

RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
SECRET = "recorded-secret-pw"


def _vm_element(name: str) -> str:
    text = (RECORDED / name).read_text(encoding="utf-8")
    return re.search(r"<VM>.*</VM>", text, re.S).group(0)


# One pool of real VM bodies: a 4.x running VM, a 5.4 running VM, a powered-off VM.
POOL = ("<VM_POOL>" + _vm_element("quattor-one.vmpool.info__rpc_list_vmspool.xml")
        + _vm_element("addon-pyone-one.vmpool.info.xml") + _vm_element("grycap-vm_info_off.xml") + "</VM_POOL>")


class Recorded:
    """Answers like oned, from recorded bodies; ignores paging as a naive server would."""

    def __init__(self) -> None:
        self.sessions: list[str] = []

    def _dispatch(self, method: str, params: tuple) -> list:
        self.sessions.append(params[0])
        bodies = {
            "one.system.version": "5.4.6",
            "one.vmpool.info": POOL,
            "one.user.info": (RECORDED / "grycap-user.xml").read_text(),
            "one.hostpool.info": (RECORDED / "quattor-one.hostpool.info__rpc_list_hostspool.xml").read_text(),
            "one.templatepool.info":
                (RECORDED / "quattor-one.templatepool.info__rpc_list_templatespool.xml").read_text(),
        }
        if method == "one.vm.info":
            return [False, f"[one.vm.info] Error getting virtual machine [{params[1]}].", 0x400, params[1], 0]
        return [True, bodies[method], 0]


@pytest.fixture
def recorded_driver(tmp_path: Path) -> Iterator[tuple[OpenNebulaDriver, Recorded]]:
    handler = Recorded()
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=False)
    server.register_instance(handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    auth = tmp_path / "one_auth"
    auth.write_text(f"scientist:{SECRET}\n")
    opts = OpenNebulaOptions(endpoint=f"http://127.0.0.1:{server.server_address[1]}/RPC2", one_auth=str(auth))
    d = OpenNebulaDriver(SiteConfig(name="old", driver="opennebula", request_timeout=5, options=opts))
    yield d, handler
    d.close()
    server.shutdown()
    server.server_close()


def test_ps_all_shows_each_recorded_vm_with_its_state(recorded_driver, monkeypatch) -> None:
    d, handler = recorded_driver
    monkeypatch.setattr(one_driver, "PAGE_SIZE", 2)       # the server ignores paging: still ends
    nodes = {n.id: n for n in d.list(managed_only=False)}
    assert {k: v.state for k, v in nodes.items()} == {
        "60": NodeState.RUNNING, "5": NodeState.RUNNING, "10908": NodeState.STOPPED}
    assert nodes["10908"].addresses == ("158.42.1.1", "10.0.0.1")
    assert d.list() == []                                 # none of them is skyctl's
    assert all(s == f"scientist:{SECRET}" for s in handler.sessions)


def test_sites_shows_the_users_real_quota(recorded_driver) -> None:
    d, _ = recorded_driver
    cap = d.capacity()
    assert cap.as_dict()["cores"] == {"used": 5, "limit": 100}
    assert cap.as_dict()["ram_mib"] == {"used": 10240, "limit": 102400}
    assert cap.instances.limit is None and cap.instances.used == 3
    assert cap.host_free_cpus == 15
    assert d.describe()["version"] == "5.4.6"
    assert [(i.id, i.name) for i in d.images()] == [("4", "node630.cubone.os")]


def test_show_of_a_missing_vm_is_not_found_without_secrets(recorded_driver) -> None:
    d, _ = recorded_driver
    with pytest.raises(NotFound) as info:
        d.get("99")
    line = info.value.line()
    assert line == "old: [one.vm.info] Error getting virtual machine [99]."
    assert SECRET not in line and SECRET not in repr(d.__dict__)


def test_a_locked_vm_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skyctl.errors import Transient
    from skyctl_opennebula import transport

    monkeypatch.setattr(transport, "LOCK_BACKOFF", 0.0)
    calls: list[int] = []

    class Locked:
        def _dispatch(self, method: str, params: tuple) -> list:
            calls.append(params[2])
            if params[2] == 5 and len(calls) < 3:      # VM 5 unlocks on the third try
                return [False, "[one.vm.action] The resource is locked.", 0x8000, 5, 0]
            if params[2] == 6:                          # VM 6 stays locked
                return [False, "[one.vm.action] The resource is locked.", 0x8000, 6, 0]
            return [True, params[2], 0]

    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_instance(Locked())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    auth = tmp_path / "one_auth"
    auth.write_text("u:p-locked\n")
    opts = OpenNebulaOptions(endpoint=f"http://127.0.0.1:{server.server_address[1]}/RPC2", one_auth=str(auth))
    d = OpenNebulaDriver(SiteConfig(name="lk", driver="opennebula", request_timeout=5, options=opts))
    try:
        d.stop(["5"])
        assert calls == [5, 5, 5]
        with pytest.raises(Transient, match="locked"):
            d.stop(["6"])
        assert calls.count(6) == transport.LOCK_RETRIES
    finally:
        d.close()
        server.shutdown()
        server.server_close()
