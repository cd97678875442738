"""Pure: a site image's status against its endorsement, what images.policy refuses, the
replicate-first candidate under `replicate: auto`, and the HEPiX list parser's refusals."""

from __future__ import annotations

import json

import pytest

from skyctl.errors import ImageListError
from skyctl.images.hepix import parse, same_dn
from skyctl.model import Capacity, Flavor, ImageRef, Limit, Tier
from skyctl.policy.images import Endorsed, refusal, site_sha512, status
from skyctl.policy.placement import Catalog, Request, SiteSnapshot, place
from skyctl.policy.rules import parse_rules

GOOD, BAD = "a" * 128, "b" * 128


def _glance(sha: str | None, algo: str = "sha512") -> ImageRef:
    return ImageRef("i1", "alma9", extra={"os_hash_algo": algo if sha else None, "os_hash_value": sha})


def test_status_reads_glance_sha512_or_skyctls_record() -> None:
    end = Endorsed(policy="verify", list="l", sha512=GOOD)
    assert status(_glance(GOOD), end) == "verified"
    assert status(_glance(BAD), end) == "mismatch"
    assert status(_glance(GOOD, algo="sha256"), end) == "unknown"      # another algorithm: not comparable
    assert status(ImageRef("7", "alma9", checksum="md5"), end) == "unknown"   # OpenNebula: no standard hash
    assert status(ImageRef("7", "alma9", extra={"sha512": GOOD}), end) == "verified"   # recorded at upload
    assert status(None, end) == "missing"
    assert site_sha512(_glance(GOOD.upper())) == GOOD


def test_refusals_by_policy() -> None:
    img = _glance(BAD)
    assert refusal(img, "alma9", Endorsed(policy="trust", list="l", sha512=GOOD)) is None
    assert refusal(img, "alma9", Endorsed(policy="verify", list="l", sha512=GOOD))[0] == "image_mismatch"
    assert refusal(_glance(None), "alma9", Endorsed(policy="verify", list="l", sha512=GOOD))[0] == "image_unverified"
    assert refusal(img, "alma9", Endorsed(policy="verify")) is None           # unbound: nothing to verify
    assert refusal(img, "alma9", Endorsed(policy="require-signed"))[0] == "image_unsigned"
    assert refusal(img, "alma9", Endorsed(policy="verify", list="l", problem="expired on x")) == (
        "image_unsigned", "image 'alma9': list l: expired on x")


def _snap(name: str, tier: Tier, images: tuple[ImageRef, ...], receives: bool = True) -> SiteSnapshot:
    cap = Capacity(Limit("instances", 0, 4), Limit("cores", 0, None), Limit("ram_mib", 0, None))
    return SiteSnapshot(name, "x", tier, 1.0, cap, (Flavor("f", "m1", 1, 2048),), images, receives_images=receives)


@pytest.mark.parametrize("receives", [True, False])
def test_replicate_auto_makes_a_target_without_the_image_a_candidate(receives: bool) -> None:
    sites = {"home": Tier.LOCAL, "far": Tier.REMOTE}
    rules = parse_rules([{"name": "out", "from": ["home"], "to": ["far"], "replicate": "auto"}],
                        sites={k: type("S", (), {"tier": v})() for k, v in sites.items()})
    catalog = Catalog(images={"alma9": {"home": "alma9"}},
                      endorsed={"alma9": Endorsed(policy="verify", list="egi", sha512=GOOD)})
    snaps = [_snap("home", Tier.LOCAL, (_glance(GOOD),)), _snap("far", Tier.REMOTE, (), receives)]
    plan = place(Request("web", 6, 1, 2048, "alma9"), snaps, rules, catalog)
    far = next(d for d in plan.decisions if d.site == "far")
    if receives:
        assert far.count == 2 and far.to_json()["replicate"] is True
        assert far.reasons[0].code == "replicate"
    else:
        assert far.count == 0 and far.reasons[0].code == "no_image"


def test_a_rule_refuses_an_unknown_replicate_value() -> None:
    from skyctl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"bursting\[0\].replicate: must be auto"):
        parse_rules([{"name": "out", "from": ["home"], "to": ["far"], "replicate": "always"}],
                    sites={"home": type("S", (), {"tier": Tier.LOCAL})(), "far": type("S", (), {"tier": Tier.REMOTE})()})


def _doc(**over: object) -> bytes:
    img = {"dc:identifier": "x", "hv:uri": "https://e/x", "hv:size": 3, "sl:checksum:sha512": GOOD}
    body = {"dc:identifier": "l", "dc:date:created": "2026-01-01T00:00:00Z", "dc:date:expires": "2026-02-01T00:00:00Z",
            "hv:endorser": {"hv:x509": {"hv:dn": "/C=NL/CN=e", "hv:ca": "/C=NL/CN=ca"}},
            "hv:images": [{"hv:image": img}]}
    body.update(over)  # type: ignore[arg-type]
    return json.dumps({"hv:imagelist": body}).encode()


@pytest.mark.parametrize(("doc", "message"), [
    (b"not json", "the signed content is not JSON"),
    (json.dumps({"x": 1}).encode(), "no 'hv:imagelist' object"),
    (_doc(**{"dc:date:expires": "soon"}), "dc:date:expires 'soon' is not an ISO 8601 date"),
    (_doc(**{"hv:images": [{"hv:image": {"dc:identifier": "x"}}]}),
     "hv:images[0] misses hv:uri, hv:size, sl:checksum:sha512"),
    (_doc(**{"hv:endorser": {}}), "hv:endorser has no hv:x509 hv:dn"),
])
def test_malformed_lists_are_one_line(doc: bytes, message: str) -> None:
    with pytest.raises(ImageListError) as info:
        parse(doc)
    assert info.value.line() == f"malformed image list: {message}"


def test_a_well_formed_list_and_dn_comparison() -> None:
    lst = parse(_doc())
    assert lst.images[0].sha512 == GOOD and lst.endorser.dn == "/C=NL/CN=e"
    assert lst.find(identifier="x") is lst.images[0] and lst.find(identifier="y") is None
    assert same_dn("/C=NL/CN=E ", "/c=nl/cn=e") and not same_dn("/C=NL/CN=e", "/C=NL/CN=f")
