"""Endorsed images on sandbox OpenStack sites, through the real driver (openstacksdk): the hash
Glance reports, a site holding a tampered copy passed over, `image replicate` streaming a
verified copy from another site through Glance upload, and a copy whose bytes are wrong refused.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing import imagelists as il
from skyctl.testing.cli import Runner
from skyctl.testing.sandbox import OPENSTACK_IMAGE, OpenStackSite, start_openstack_site

ENTRY = "5e1f0000-0000-4000-8000-0000000a1a90"
GOOD = OPENSTACK_IMAGE.encode()          # the sandbox's seeded image bytes are its name
GOOD_SHA = hashlib.sha512(GOOD).hexdigest()


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[dict[str, OpenStackSite]]:
    (tmp_path / "home").mkdir()
    (tmp_path / "sara").mkdir()
    home = start_openstack_site(tmp_path / "home", "home")
    sara = start_openstack_site(tmp_path / "sara", "sara", site_overrides={"tampered_images": ["alma9"]})
    try:
        yield {"home": home, "sara": sara}
    finally:
        home.stop()
        sara.stop()


@pytest.fixture
def sky(sites: dict[str, OpenStackSite], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        skyctl_cli: Runner) -> Runner:
    ca = il.make_ca()
    endorser = il.make_endorser(ca)
    ca.write(tmp_path / "ca.pem")
    doc = {
        "sites": {name: {"driver": "openstack", "tier": "local" if name == "home" else "remote", "cost": 1,
                         "cloud": s.cloud, "clouds_yaml": str(s.clouds_yaml), "ssh": {"check_ready": False}}
                  for name, s in sites.items()},
        "image_lists": {"egi-base": {"trust": "ca.pem", "subject": endorser.dn}},
        "images": {"policy": "verify",
                   "alma9": {"home": OPENSTACK_IMAGE, "sara": OPENSTACK_IMAGE, "list": "egi-base",
                             "identifier": ENTRY}},
        "sizes": {"small": {"cpus": 1, "memory": "2GiB"}},
        "defaults": {"image": "alma9", "size": "small"},
    }
    (tmp_path / "sky.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SKYCTL_CONFIG", str(tmp_path / "sky.yaml"))
    body = il.imagelist(endorser, [il.image_entry(ENTRY, GOOD_SHA, size=len(GOOD))], ca=ca)
    (tmp_path / "list.smime").write_bytes(il.sign(body, endorser))
    res = skyctl_cli("image", "import", str(tmp_path / "list.smime"))
    assert res.code == 0, res.err
    return skyctl_cli


def _statuses(run: Runner) -> dict[str, str]:
    res = run("image", "list", "-o", "json")
    assert res.code == 0, res.err
    return {s["site"]: s["status"] for s in res.json()[0]["sites"]}


def test_glance_hash_is_read_and_a_tampered_copy_is_passed_over(sky: Runner) -> None:
    assert _statuses(sky) == {"home": "verified", "sara": "mismatch"}
    rows = sky("image", "list", "-o", "json").json()[0]["sites"]
    assert {s["site"]: s["sha512"] for s in rows}["home"] == GOOD_SHA
    plan = sky("plan", "web", "-n", "1", "--site", "sara", "-o", "json")
    assert plan.code == 4
    (sara,) = plan.json()["sites"]
    assert sara["reasons"][0]["code"] == "image_mismatch"


def test_replicate_streams_a_verified_copy_and_maps_it(sky: Runner, sites: dict[str, OpenStackSite]) -> None:
    before = set(sites["sara"].world.images)
    res = sky("image", "replicate", "alma9", "--to", "sara", "-o", "json")
    assert res.code == 0, res.err
    info = res.json()
    assert info["status"] == "replicated" and info["source"] == "site home" and info["bytes"] == len(GOOD)
    new = sites["sara"].world.images[info["id"]]
    assert set(sites["sara"].world.images) - before == {info["id"]}
    assert new.status == "active" and new.sha512 == GOOD_SHA and Path(new.path or "").read_bytes() == GOOD
    assert _statuses(sky) == {"home": "verified", "sara": "verified"}
    plan = sky("plan", "web", "-n", "1", "--site", "sara", "-o", "json")
    assert plan.code == 0, plan.err
    assert plan.json()["sites"][0]["image_id"] == info["id"]
    again = sky("image", "replicate", "alma9", "--to", "sara", "-o", "json")
    assert again.code == 0 and again.json()["status"] == "present"


class _Bytes(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], str]]:
    servers = []

    def start(payload: bytes) -> str:
        handler = type("H", (_Bytes,), {"payload": payload})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/alma9.qcow2"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_bytes_that_do_not_hash_to_the_endorsed_sha_are_refused_and_deleted(
        sky: Runner, sites: dict[str, OpenStackSite], serve: Callable[[bytes], str]) -> None:
    before = set(sites["sara"].world.images)
    url = serve(GOOD + b"!")
    res = sky("image", "replicate", "alma9", "--to", "sara", "--from", url)
    assert res.code == 1
    assert res.err.strip().splitlines() == [
        f"error: {url}: the bytes hash to sha512 {hashlib.sha512(GOOD + b'!').hexdigest()[:16]}..., not the "
        f"endorsed {GOOD_SHA[:16]}... (list egi-base); the copy on sara was deleted"]
    assert set(sites["sara"].world.images) == before
    assert _statuses(sky)["sara"] == "mismatch"


def test_replicate_from_a_url(sky: Runner, sites: dict[str, OpenStackSite], serve: Callable[[bytes], str]) -> None:
    res = sky("image", "replicate", "alma9", "--to", "sara", "--from", serve(GOOD), "-o", "json")
    assert res.code == 0, res.err
    assert sites["sara"].world.images[res.json()["id"]].sha512 == GOOD_SHA


def test_glance_upload_twice_is_a_conflict(sites: dict[str, OpenStackSite], connect: Any) -> None:
    conn = connect(sites["home"].clouds_yaml, "home")
    try:
        created = conn.image.post("/images", json={"name": "x", "disk_format": "raw", "container_format": "bare"})
        assert created.status_code == 201 and created.json()["status"] == "queued"
        image_id = created.json()["id"]
        assert conn.image.get(f"/images/{image_id}/file").status_code == 204
        put = conn.image.put(f"/images/{image_id}/file", data=b"abc",
                             headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 204
        shown = conn.image.get(f"/images/{image_id}").json()
        assert shown["os_hash_algo"] == "sha512" and shown["os_hash_value"] == hashlib.sha512(b"abc").hexdigest()
        assert shown["checksum"] == hashlib.md5(b"abc").hexdigest() and shown["size"] == 3
        again = conn.image.put(f"/images/{image_id}/file", data=b"abc",
                               headers={"Content-Type": "application/octet-stream"}, raise_exc=False)
        assert again.status_code == 409 and b"transition from active to saving is not allowed" in again.content
        got = conn.image.get(f"/images/{image_id}/file")
        assert got.content == b"abc" and got.headers["Content-MD5"] == hashlib.md5(b"abc").hexdigest()
    finally:
        conn.close()


def test_a_burst_replicates_first_and_nodes_boot_from_the_verified_copy(
        sky: Runner, sites: dict[str, OpenStackSite], tmp_path: Path) -> None:
    doc = yaml.safe_load((tmp_path / "sky.yaml").read_text())
    del doc["images"]["alma9"]["sara"]                  # sara has no copy at all
    doc["bursting"] = [{"name": "out", "from": ["home"], "to": ["sara"], "replicate": "auto"}]
    (tmp_path / "sky.yaml").write_text(yaml.safe_dump(doc))
    sites["home"].set_instance_quota(1)

    plan = sky("plan", "web", "-n", "3", "-o", "json")
    assert plan.code == 0, plan.err
    by_site = {d["site"]: d for d in plan.json()["sites"]}
    assert by_site["home"]["count"] == 1 and by_site["sara"]["count"] == 2
    assert by_site["sara"]["replicate"] is True
    assert by_site["sara"]["reasons"][0]["code"] == "replicate"
    assert by_site["sara"]["reasons"][0]["text"].startswith(
        "image 'alma9' will be replicated here first from list egi-base (image 'alma9' is not mapped to this site)")
    assert not any(i.created for i in sites["sara"].world.images.values())   # plan copies nothing

    res = sky("launch", "web", "-n", "3", "-o", "json")
    assert res.code == 0, res.err
    (copy,) = [i for i in sites["sara"].world.images.values() if i.created]
    assert copy.sha512 == GOOD_SHA and copy.status == "active"
    booted = [vm.image_id for vm in sites["sara"].world.vms.values()]
    assert booted == [copy.id, copy.id]
    assert _statuses(sky)["sara"] == "verified"
