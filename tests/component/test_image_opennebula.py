"""OpenNebula image import on the sandbox: one.image.allocate with a PATH URL the site fetches
(LOCKED, then READY), oned's datastores and refusals, bodies checked against the official
schemas; and `skyctl image replicate` to an OpenNebula site (mode: allocate), whose hash skyctl
records since OpenNebula keeps none."""

from __future__ import annotations

import hashlib
import http.server
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.polling import iterate_timeout
from skyctl.testing import imagelists as il
from skyctl.testing.cli import Runner
from skyctl.testing.sandbox import OpenNebulaSite, start_opennebula_site

PAYLOAD = b"an endorsed image's bytes\n" * 64
SHA = hashlib.sha512(PAYLOAD).hexdigest()
ENTRY = "0be10000-0000-4000-8000-0000000a1a90"


class _Bytes(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bytes)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/alma9.qcow2"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cc(tmp_path: Path) -> Iterator[OpenNebulaSite]:
    site = start_opennebula_site(tmp_path)
    site.world.image_dir = str(tmp_path)
    yield site
    site.stop()


def _session(site: OpenNebulaSite) -> str:
    return site.one_auth.read_text().strip()


def _state(r: Any, session: str, image_id: int) -> str:
    body = r.image.info(session, image_id, False)[1]
    return body.split("<STATE>")[1].split("</STATE>")[0]


def test_allocate_from_a_url_is_locked_then_ready(cc: OpenNebulaSite, url: str,
                                                  one_schema_errors: Callable[[str, str], list[str]]) -> None:
    r = xmlrpc.client.ServerProxy(cc.endpoint).one
    session = _session(cc)
    pool = r.datastorepool.info(session)
    assert pool[0] and one_schema_errors(pool[1], "datastore_pool.xsd") == []
    cc.world.image_gate = threading.Event()            # the datastore driver has not copied it yet
    ok, image_id, *_ = r.image.allocate(session, f'NAME = "alma9-copy"\nPATH = "{url}"\nTYPE = "OS"', 1, False)
    assert ok
    assert _state(r, session, image_id) == "4"          # LOCKED
    assert one_schema_errors(r.image.info(session, image_id, False)[1], "image.xsd") == []
    cc.world.image_gate.set()
    for _ in iterate_timeout(30, "the image to be READY", interval=0.05):
        if _state(r, session, image_id) == "1":
            break
    assert one_schema_errors(r.imagepool.info(session, -2, -1, -1)[1], "image_pool.xsd") == []
    assert cc.world.images[str(image_id)].sha512 == SHA


def test_allocate_refusals_use_oned_words(cc: OpenNebulaSite, url: str) -> None:
    r = xmlrpc.client.ServerProxy(cc.endpoint).one
    session = _session(cc)
    assert r.image.allocate(session, f'NAME = "x"\nPATH = "{url}"', 0, False)[:3] == [
        False, "[one.image.allocate] Error allocating a new image. New images cannot be allocated in a system "
               "datastore.", 0x4000]
    assert r.image.allocate(session, f'NAME = "x"\nPATH = "{url}"', 99, False)[:3] == [
        False, "[one.image.allocate] Error getting datastore [99].", 0x0400]
    assert r.image.allocate(session, 'NAME = "x"', 1, False)[:3] == [
        False, "[one.image.allocate] Error allocating a new image. No PATH in template.", 0x4000]


def test_replicate_to_an_opennebula_site_records_the_hash(cc: OpenNebulaSite, url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          skyctl_cli: Runner) -> None:
    ca = il.make_ca()
    endorser = il.make_endorser(ca)
    ca.write(tmp_path / "ca.pem")
    doc = {"sites": {"cc": {"driver": "opennebula", "tier": "remote", "endpoint": cc.endpoint,
                            "one_auth": str(cc.one_auth), "mode": "allocate", "ssh": {"check_ready": False}}},
           "image_lists": {"egi-base": {"trust": "ca.pem", "subject": endorser.dn}},
           "images": {"policy": "verify", "alma9": {"list": "egi-base", "identifier": ENTRY}},
           "sizes": {"small": {"cpus": 1, "memory": "2GiB"}}, "defaults": {"image": "alma9", "size": "small"}}
    (tmp_path / "sky.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SKYCTL_CONFIG", str(tmp_path / "sky.yaml"))
    body = il.imagelist(endorser, [il.image_entry(ENTRY, SHA, uri=url, size=len(PAYLOAD))], ca=ca)
    (tmp_path / "list.smime").write_bytes(il.sign(body, endorser))
    assert skyctl_cli("image", "import", str(tmp_path / "list.smime")).code == 0

    plan = skyctl_cli("plan", "web", "-o", "json")
    assert plan.code == 4 and plan.json()["sites"][0]["reasons"][0]["code"] == "no_image"
    res = skyctl_cli("image", "replicate", "alma9", "--to", "cc", "-o", "json")
    assert res.code == 0, res.err
    info = res.json()
    assert info["source"] == url and info["sha512"] == SHA and info["status"] == "replicated"
    assert cc.world.images[info["id"]].status == "ready"
    listed = skyctl_cli("image", "list", "-o", "json").json()[0]["sites"]
    assert listed == [{"site": "cc", "image": info["name"], "id": info["id"], "sha512": SHA,
                       "status": "verified", "error": None}]
    plan = skyctl_cli("plan", "web", "-o", "json")
    assert plan.code == 0 and plan.json()["sites"][0]["image_id"] == info["id"]
