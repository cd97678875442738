"""Sites served over HTTPS with a private CA that `skyctl sandbox up` makes (issues 13 item 7,
14 item 6): clouds.yaml names it with `cacert:`, an OpenNebula site with `ca_bundle:`, and skyctl
works with nothing else set (no REQUESTS_CA_BUNDLE; a system one in the environment must not
win over the site's own)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml


def test_https_sites_with_the_sandbox_ca(tmp_path: Path, sandbox_up: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"boot_delay": 0.05, "sites": {"home": {"tls": True}, "cc": {"tls": True}}}))
    # requests would let this override a session's own verify: the site's CA must still win
    system = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.exists(system):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", system)
    with sandbox_up(tmp_path / "home", "--spec", str(spec)) as sb:
        home, cc, sara = sb.site("home"), sb.site("cc"), sb.site("sara")
        assert home["endpoint"].startswith("https://") and cc["endpoint"].startswith("https://")
        assert sara["endpoint"].startswith("http://")
        ca = Path(home["ca_bundle"])
        assert ca.is_file() and ca == Path(cc["ca_bundle"]) and ca.stat().st_mode & 0o777 == 0o600
        clouds = yaml.safe_load(Path(home["clouds_yaml"]).read_text())["clouds"]
        assert clouds["home"]["cacert"] == str(ca) and "cacert" not in clouds["sara"]
        fed = yaml.safe_load(Path(sb.status["config"]).read_text())["sites"]
        assert fed["cc"]["ca_bundle"] == str(ca) and "ca_bundle" not in fed["home"]

        for site in ("home", "cc"):
            sb.run("launch", f"t-{site}", "--count", "1", "--site", site, "-o", "json")
        nodes = json.loads(sb.run("ps", "-o", "json").stdout)
        assert sorted(n["site"] for n in nodes) == ["cc", "home"]
        sb.run("delete", "t-home", "t-cc", "--yes")
        assert json.loads(sb.run("ps", "-o", "json").stdout) == []
