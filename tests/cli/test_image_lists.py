"""`skyctl image import | list` and `images.policy` in plans: HEPiX image lists signed by a CA
and endorser the test makes itself, verified with the system openssl."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.testing import imagelists as il
from skyctl.testing.cli import Runner, federation

ALMA_SHA = hashlib.sha512(b"alma9").hexdigest()   # what the memory driver reports for image alma9
ENTRY_ID = "c0ffee00-0000-4000-8000-00000000a1a9"


@pytest.fixture(scope="module")
def pki() -> dict[str, il.Identity]:
    ca, other = il.make_ca(), il.make_ca("Unrelated CA")
    return {"ca": ca, "endorser": il.make_endorser(ca), "intruder": il.make_endorser(ca, "Someone Else"),
            "other_ca": other, "impostor": il.make_endorser(other)}   # same subject, another CA


@pytest.fixture
def fed(sky_file: Callable[[dict[str, Any]], Path], tmp_path: Path, pki: dict[str, il.Identity]
        ) -> Callable[..., Path]:
    def write(policy: str | None = None, *, wrong_on: str | None = None, bind: bool = True,
              trust: str = "ca") -> Path:
        pki[trust].write(tmp_path / "trust.pem")
        sites = {"home": {"driver": "memory", "tier": "local", "instances": 2},
                 "cc": {"driver": "memory", "tier": "remote", "cost": 1, "instances": 8},
                 "sara": {"driver": "memory", "tier": "remote", "cost": 2, "instances": 8}}
        if wrong_on:
            sites[wrong_on]["image_sha512"] = {"alma9": hashlib.sha512(b"tampered").hexdigest()}
        data = federation(**sites)
        data["image_lists"] = {"egi-base": {"trust": "trust.pem", "subject": pki["endorser"].dn}}
        if bind:
            data["images"]["alma9"].update({"list": "egi-base", "identifier": ENTRY_ID})
        if policy:
            data["images"]["policy"] = policy
        return sky_file(data)
    return write


def _signed(pki: dict[str, il.Identity], tmp_path: Path, *, signer: str = "endorser",
            expires: datetime | None = None, detached: bool = True, name: str = "list.smime") -> Path:
    body = il.imagelist(pki["endorser"], [il.image_entry(ENTRY_ID, ALMA_SHA)], ca=pki["ca"], expires=expires)
    path = tmp_path / name
    path.write_bytes(il.sign(body, pki[signer], detached=detached))
    return path


def _nothing_stored(home: Path) -> bool:
    folder = home / "data" / "imagelists"
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("detached", [True, False], ids=["clear-signed", "opaque"])
def test_a_valid_list_imports_and_is_kept_private(run: Runner, fed: Callable[..., Path], pki: Any, tmp_path: Path,
                                                   skyctl_home: Path, detached: bool) -> None:
    fed()
    res = run("image", "import", str(_signed(pki, tmp_path, detached=detached)), "-o", "json")
    assert res.code == 0, res.err
    info = res.json()
    assert info["list"] == "egi-base" and info["images"] == 1
    assert info["endorser"] == "/C=NL/O=skyctl tests/CN=Test Endorser"
    folder = skyctl_home / "data" / "imagelists"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert sorted(p.name for p in folder.iterdir()) == ["egi-base.json", "egi-base.smime"]


def test_the_endorsers_own_certificate_can_be_the_trust(run: Runner, fed: Callable[..., Path], pki: Any,
                                                       tmp_path: Path) -> None:
    fed(trust="endorser")
    assert run("image", "import", str(_signed(pki, tmp_path))).code == 0


def test_a_one_byte_change_is_refused_and_nothing_imported(run: Runner, fed: Callable[..., Path], pki: Any,
                                                           tmp_path: Path, skyctl_home: Path) -> None:
    fed()
    path = _signed(pki, tmp_path)
    raw = path.read_bytes()
    at = raw.index(ALMA_SHA.encode())
    path.write_bytes(raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:])
    res = run("image", "import", str(path))
    assert res.code == 1
    assert res.err.strip().splitlines() == [
        f"error: image list egi-base ({path}): the signature does not match the content "
        "(the list was changed after it was signed)"]
    assert _nothing_stored(skyctl_home)


def test_a_wrong_signer_is_refused(run: Runner, fed: Callable[..., Path], pki: Any, tmp_path: Path,
                                   skyctl_home: Path) -> None:
    fed()
    res = run("image", "import", str(_signed(pki, tmp_path, signer="intruder")))
    assert res.code == 1
    assert len(res.err.strip().splitlines()) == 1
    assert "signed by /C=NL/O=skyctl tests/CN=Someone Else, not the expected endorser " \
           "/C=NL/O=skyctl tests/CN=Test Endorser" in res.err
    res = run("image", "import", str(_signed(pki, tmp_path, signer="impostor")))
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1
    assert res.err.strip().endswith("the signer's certificate is not trusted (unable to get local issuer certificate)")
    res = run("image", "import", str(_signed(pki, tmp_path, signer="other_ca")))
    assert res.code == 1 and res.err.strip().endswith("the signer's certificate is not trusted (self-signed certificate)")
    assert _nothing_stored(skyctl_home)


def test_an_expired_list_is_refused(run: Runner, fed: Callable[..., Path], pki: Any, tmp_path: Path,
                                    skyctl_home: Path) -> None:
    fed()
    res = run("image", "import", str(_signed(pki, tmp_path, expires=datetime(2020, 1, 2, tzinfo=UTC))))
    assert res.code == 1
    assert res.err.strip().endswith("the list expired on 2020-01-02T00:00:00+00:00")
    assert _nothing_stored(skyctl_home)


def test_an_unsigned_list_is_refused(run: Runner, fed: Callable[..., Path], pki: Any, tmp_path: Path,
                                     skyctl_home: Path) -> None:
    fed()
    path = tmp_path / "plain.json"
    path.write_bytes(il.imagelist(pki["endorser"], [il.image_entry(ENTRY_ID, ALMA_SHA)]))
    res = run("image", "import", str(path))
    assert res.code == 1 and "not an S/MIME signed list" in res.err
    assert _nothing_stored(skyctl_home)


def test_image_list_shows_each_sites_status(run: Runner, fed: Callable[..., Path], pki: Any,
                                            tmp_path: Path) -> None:
    fed(wrong_on="sara")
    before = run("image", "list", "-o", "json")
    assert before.code == 0, before.err
    (row,) = before.json()
    assert row["problem"] == "not imported (run 'skyctl image import')"
    assert {s["status"] for s in row["sites"]} == {"unknown"}

    assert run("image", "import", str(_signed(pki, tmp_path))).code == 0
    res = run("image", "list", "-o", "json")
    (row,) = res.json()
    assert row["list"] == "egi-base" and row["endorser"] == pki["endorser"].dn and row["sha512"] == ALMA_SHA
    assert {s["site"]: s["status"] for s in row["sites"]} == {"home": "verified", "cc": "verified",
                                                              "sara": "mismatch"}
    table = run("image", "list")
    assert "mismatch" in table.out and "verified" in table.out


def test_verify_policy_passes_over_a_site_whose_copy_differs(run: Runner, fed: Callable[..., Path], pki: Any,
                                                            tmp_path: Path) -> None:
    fed("verify", wrong_on="cc")
    assert run("image", "import", str(_signed(pki, tmp_path))).code == 0
    res = run("plan", "web", "-n", "6", "-o", "json")
    assert res.code == 0, res.err
    sites = {d["site"]: d for d in res.json()["sites"]}
    assert sites["cc"]["count"] == 0
    (reason,) = sites["cc"]["reasons"]
    assert reason["code"] == "image_mismatch"
    assert reason["text"].startswith("image 'alma9' sha512 ") and "(list egi-base)" in reason["text"]
    assert sites["home"]["count"] == 2 and sites["sara"]["count"] == 4


def test_verify_policy_refuses_a_bound_image_whose_list_is_not_imported(run: Runner, fed: Callable[..., Path]) -> None:
    fed("verify")
    res = run("plan", "web", "-n", "1", "-o", "json")
    assert res.code == 4
    reasons = {d["site"]: d["reasons"][0]["code"] for d in res.json()["sites"]}
    assert reasons == {"home": "image_unsigned", "cc": "image_unsigned", "sara": "image_unsigned"}


def test_trust_policy_is_todays_behaviour(run: Runner, fed: Callable[..., Path]) -> None:
    fed(wrong_on="cc")
    res = run("plan", "web", "-n", "6", "-o", "json")
    assert res.code == 0 and {d["site"]: d["count"] for d in res.json()["sites"]}["cc"] == 4


def test_require_signed_refuses_an_unbound_image(run: Runner, fed: Callable[..., Path]) -> None:
    fed("require-signed", bind=False)
    res = run("plan", "web", "-n", "1", "-o", "json")
    assert res.code == 4
    texts = {d["reasons"][0]["text"] for d in res.json()["sites"]}
    assert texts == {"image 'alma9' is bound to no endorsed image list (policy require-signed)"}


def test_an_expired_stored_list_no_longer_verifies(run: Runner, fed: Callable[..., Path], pki: Any,
                                                   tmp_path: Path, skyctl_home: Path) -> None:
    fed("verify")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert run("image", "import", str(_signed(pki, tmp_path, expires=soon))).code == 0
    meta = skyctl_home / "data" / "imagelists" / "egi-base.json"
    doc = json.loads(meta.read_text())
    body = json.loads(doc["content"])
    body["hv:imagelist"]["dc:date:expires"] = "2020-01-01T00:00:00Z"   # as if time had passed
    doc["content"] = json.dumps(body)
    meta.write_text(json.dumps(doc))
    res = run("plan", "web", "-n", "1", "-o", "json")
    assert res.code == 4
    assert "expired on 2020-01-01" in res.json()["sites"][0]["reasons"][0]["text"]


def test_config_errors_name_the_field(run: Runner, sky_file: Callable[[dict[str, Any]], Path]) -> None:
    data = federation(home={"driver": "memory", "tier": "local"})
    data["images"]["alma9"]["list"] = "nope"
    sky_file(data)
    res = run("image", "list")
    assert res.code == 2 and "images.alma9.list: unknown image list 'nope'" in res.err
    data["images"]["alma9"]["list"] = "x"
    data["image_lists"] = {"x": {"trust": "t.pem", "subject": "/CN=x"}}
    sky_file(data)
    res = run("image", "list")
    assert res.code == 2 and "a list entry is named by 'identifier'" in res.err
    data["images"] = {"policy": "sometimes", "alma9": {"home": "alma9"}}
    sky_file(data)
    res = run("image", "list")
    assert res.code == 2 and "images.policy: must be one of trust, verify, require-signed" in res.err


def test_import_without_configured_lists_is_a_usage_error(run: Runner, sky_file: Callable[[dict[str, Any]], Path],
                                                          tmp_path: Path) -> None:
    sky_file(federation(home={"driver": "memory", "tier": "local"}))
    res = run("image", "import", os.fspath(tmp_path / "x"))
    assert res.code == 2 and "no image lists are configured" in res.err


def test_replicate_needs_an_endorsed_checksum_and_a_driver_that_takes_images(
        run: Runner, fed: Callable[..., Path], pki: Any, tmp_path: Path) -> None:
    fed(bind=False)
    res = run("image", "replicate", "alma9", "--to", "cc")
    assert res.code == 1
    assert res.err.strip() == ("error: image 'alma9' cannot be replicated: it is bound to no image list; there is "
                               "nothing to check a copy against (bind it to a list entry (list:, identifier:) "
                               "and import the list)")
    fed(wrong_on="cc")
    assert run("image", "import", str(_signed(pki, tmp_path))).code == 0
    res = run("image", "replicate", "alma9", "--to", "cc")
    assert res.code == 2 and res.err.strip() == "error: the memory driver of cc cannot receive images"
    res = run("image", "replicate", "nope", "--to", "cc")
    assert res.code == 2 and "unknown image 'nope'" in res.err


def test_a_configured_lists_url_is_fetched_by_name(run: Runner, fed: Callable[..., Path], pki: Any,
                                                   tmp_path: Path) -> None:
    path = fed()
    signed = _signed(pki, tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["image_lists"]["egi-base"]["url"] = signed.as_uri()
    path.write_text(yaml.safe_dump(doc))
    res = run("image", "import", "egi-base", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["source"] == signed.as_uri()
    missing = run("image", "import", (tmp_path / "gone.smime").as_uri())
    assert missing.code == 1 and "cannot fetch" in missing.err
