"""`skyctl delete` while oned still refuses to terminate (VMs in PROLOG, issue 14 item 5): the
nodes are reported as still deleting with exit 3, never forgotten, and `skyctl reconcile`
finishes the deletion once oned allows it; nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyctl.cli.main import main
from skyctl.polling import iterate_timeout
from skyctl.sandbox.opennebula.views import L_PROLOG, vm_state


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_delete_in_prolog_exits_3_and_reconcile_finishes(opennebula_sandbox_site: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    site = opennebula_sandbox_site
    site.world.settings.update(prolog_seconds=600)       # the image copy takes "forever"
    sky = tmp_path / "sky.yaml"
    sky.write_text(yaml.safe_dump({
        "sites": {"cc": {"driver": "opennebula", "tier": "local", "endpoint": site.endpoint,
                         "one_auth": str(site.one_auth), "ready_timeout": 0.5, "ssh": {"check_ready": False}}},
        "images": {"alma9": {"cc": "AlmaLinux 9"}}, "sizes": {"small": {"cpus": 1, "memory": "2GiB"}},
        "defaults": {"image": "alma9", "size": "small"}}))
    monkeypatch.setenv("SKYCTL_CONFIG", str(sky))
    code, _, err = run(capsys, "launch", "pg", "--count", "2", "-o", "json")
    assert code == 0, err
    for _ in iterate_timeout(10, "the VMs to reach PROLOG", interval=0.05):
        if [vm_state(vm)[1] for vm in site.world.live_vms()] == [L_PROLOG, L_PROLOG]:
            break
    code, _, err = run(capsys, "delete", "pg", "--yes")
    assert code == 3, err
    assert "still deleting" in err and "wrong state" in err
    assert len(site.world.live_vms()) == 2
    assert len(json.loads(run(capsys, "ps", "pg", "-o", "json")[1])) == 2     # not forgotten

    code, out, err = run(capsys, "reconcile", "-o", "json")         # oned still refuses: still pending
    assert code == 3 and len(site.world.live_vms()) == 2, err

    for vm in site.world.live_vms():                                  # the copies finish
        vm.extra["one"]["phases"] = (0.0, 0.0, 0.0)
    code, out, err = run(capsys, "reconcile", "-o", "json")
    assert code == 0, err
    assert sorted(json.loads(out)["deleted"]) == ["pg-0", "pg-1"]
    assert site.world.live_vms() == []
    code, out, _ = run(capsys, "reconcile", "-o", "json")             # nothing left to finish
    assert code == 0 and json.loads(out)["deleted"] == [] and json.loads(out)["intents_closed"] == 0
