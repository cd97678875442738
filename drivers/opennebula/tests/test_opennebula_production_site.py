"""The driver on an OpenNebula site run as production sites run it (the sandbox's `cc`): an
ordinary user, oneadmin's networks and templates, no OneGate, group quotas, VMs that spend
time in PROLOG/BOOT and may fail there."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.errors import ConfigError, InvalidRequest, Transient
from skyctl.model import CAPACITY_FAULT, NodeState, RenderedContext, Resources
from skyctl.polling import iterate_timeout
from skyctl.sandbox.opennebula.methods import OpenNebulaFront
from skyctl.site import SiteConfig
from skyctl.testing.contract import ContractTarget, make_spec, wait_state
from skyctl_opennebula.driver import OpenNebulaDriver, OpenNebulaOptions
from skyctl_opennebula.errors import error_for_code

# What the built-in `base` profile renders for OpenNebula (ready: true asks for REPORT_READY/TOKEN).
BASE = RenderedContext(one_context={"NETWORK": "YES", "SET_HOSTNAME": "w-0", "SSH_PUBLIC_KEY": "ssh-ed25519 A k",
                                    "REPORT_READY": "YES", "TOKEN": "YES"})


def driver(front: OpenNebulaFront, one_auth: Path, **options: object) -> OpenNebulaDriver:
    opts = OpenNebulaOptions(endpoint=front.endpoint, one_auth=str(one_auth), **options)  # type: ignore[arg-type]
    return OpenNebulaDriver(SiteConfig(name="cc", driver="opennebula", request_timeout=5.0, ready_timeout=10.0,
                                       options=opts))


def create(d: OpenNebulaDriver, front: OpenNebulaFront, one_auth: Path, name: str, ctx: RenderedContext = BASE,
           cpus: int = 1):
    target = ContractTarget(name="one", make_driver=lambda: d, image_name="AlmaLinux 9")
    spec = make_spec(d, target, name.rsplit("-", 1)[0], name)
    if cpus != 1:
        from dataclasses import replace

        spec = replace(spec, flavor=replace(spec.flavor, cpus=cpus))
    return d.create(spec, name, ctx)


def test_the_base_context_launches_without_onegate(front: OpenNebulaFront, one_auth: Path) -> None:
    d = driver(front, one_auth)
    node = create(d, front, one_auth, "w-0")
    svm = front.world.get_vm(node.id)
    assert "TOKEN" not in svm.context and "REPORT_READY" not in svm.context
    assert wait_state(d, node.id, {NodeState.RUNNING}, 10).state is NodeState.RUNNING


def test_onegate_true_on_a_site_without_it_names_the_field(front: OpenNebulaFront, one_auth: Path) -> None:
    d = driver(front, one_auth, onegate=True)
    with pytest.raises(InvalidRequest) as info:
        create(d, front, one_auth, "w-0")
    assert "TOKEN set, but onegate endpoint was not defined in oned.conf." in str(info.value)
    assert "onegate: false" in info.value.line() and "sites.cc" in info.value.line()


@pytest.mark.parametrize("network", ["sandbox-net", {"name": "sandbox-net", "owner": "oneadmin"}, 0, "0"])
def test_oneadmins_network_by_name_owner_or_id(front: OpenNebulaFront, one_auth: Path, network: object) -> None:
    d = driver(front, one_auth, network=network)
    node = create(d, front, one_auth, "n-0")
    assert front.world.get_vm(node.id) is not None


def test_an_unknown_network_is_refused_before_sending(front: OpenNebulaFront, one_auth: Path) -> None:
    with pytest.raises(InvalidRequest, match="no virtual network named 'private'"):
        create(driver(front, one_auth, network="private"), front, one_auth, "n-0")


def test_the_site_templates_context_nic_and_cpu_ratio_are_kept(front: OpenNebulaFront, one_auth: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    d = driver(front, one_auth)
    with caplog.at_level("INFO", logger="skyctl.opennebula"):
        node = create(d, front, one_auth, "t-0", cpus=2)
    svm = front.world.get_vm(node.id)
    assert svm.context["INIT_SCRIPTS"] == "site-init.sh" and svm.context["DNS"] == "127.0.0.53"
    assert svm.context["SET_HOSTNAME"] == "w-0" and svm.ssh_keys == ["ssh-ed25519 A k"]
    assert "SET_HOSTNAME" in caplog.text and "skyctl's value is used" in caplog.text
    one = svm.extra["one"]
    assert (one["cpu"], one["vcpu"]) == ("1", "2")            # CPU=0.5 per VCPU, as the template
    node = create(driver(front, one_auth, cpu_ratio=0.25), front, one_auth, "t-1", cpus=2)
    assert front.world.get_vm(node.id).extra["one"]["cpu"] == "0.5"


def test_capacity_takes_the_tighter_group_quota(front: OpenNebulaFront, one_auth: Path) -> None:
    front.world.group_quota.instances = 3
    cap = driver(front, one_auth).capacity()
    assert (cap.instances.limit, cap.instances.scope) == (3, "group 1")
    assert (cap.cores.limit, cap.cores.scope) == (32, None)    # the user's 32 is tighter than the group's 48
    assert cap.fits_count(Resources(cpus=1, memory_mib=512)) == 3
    assert cap.as_dict()["instances"] == {"used": 0, "limit": 3, "scope": "group 1"}
    assert cap.instances.label == "instances (group 1)"          # as a plan names the binding quota


def test_delete_waits_out_prolog_and_leaves_nothing(front: OpenNebulaFront, one_auth: Path) -> None:
    import threading

    front.world.settings.update(prolog_seconds=60, boot_seconds=0.05)
    d = driver(front, one_auth)
    nodes = [create(d, front, one_auth, f"p-{i}") for i in range(3)]
    for _ in iterate_timeout(10, "the VMs to be in PROLOG", interval=0.02):
        if all(d.get(n.id).extra["one_lcm_state"] == "PROLOG" for n in nodes):
            break
    before = front.world.request_count
    deleting = threading.Thread(target=d.delete, args=([n.id for n in nodes],))
    deleting.start()
    # Counted on the site, not timed: two rounds of refused terminates, and the driver goes on.
    for _ in iterate_timeout(30, "the driver to try again after oned refused", interval=0.02):
        if front.world.request_count >= before + 2 * len(nodes):
            break
    assert deleting.is_alive() and len(front.world.live_vms()) == 3   # oned refuses: still trying
    for vm in front.world.live_vms():                                # the image copies finish
        vm.extra["one"]["phases"] = (0.0, 0.0, 0.0)
    deleting.join(10)
    assert not deleting.is_alive() and front.world.live_vms() == []


def test_delete_reports_a_vm_still_deleting(front: OpenNebulaFront, one_auth: Path) -> None:
    front.world.settings.update(prolog_seconds=60)
    opts = OpenNebulaOptions(endpoint=front.endpoint, one_auth=str(one_auth))
    d = OpenNebulaDriver(SiteConfig(name="cc", driver="opennebula", request_timeout=5.0, ready_timeout=0.6,
                                    options=opts))
    node = create(d, front, one_auth, "s-0")
    for _ in iterate_timeout(10, "the VM to be in PROLOG", interval=0.02):
        if d.get(node.id).extra["one_lcm_state"] == "PROLOG":
            break
    with pytest.raises(Transient, match="still deleting.*Could not terminate VM"):
        d.delete([node.id])


def test_boot_failure_is_a_capacity_fault_with_oneds_message(front: OpenNebulaFront, one_auth: Path) -> None:
    front.world.settings.update(boot_failure_rate=1.0)
    d = driver(front, one_auth)
    node = create(d, front, one_auth, "f-0")
    failed = wait_state(d, node.id, {NodeState.ERROR}, 10)
    assert failed.extra[CAPACITY_FAULT] is True
    assert failed.extra["fault"].startswith("BOOT_FAILURE: ") and "Error deploying" in failed.extra["fault"]
    d.delete([node.id])
    assert front.world.live_vms() == []


def test_endpoint_without_a_scheme_is_a_config_error(one_auth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs http:// or https://"):
        OpenNebulaOptions(endpoint="one.example.org:2634")
    monkeypatch.setenv("ONE_XMLRPC", "one.example.org:2634")
    d = OpenNebulaDriver(SiteConfig(name="cc", driver="opennebula", options=OpenNebulaOptions(one_auth=str(one_auth))))
    with pytest.raises(ConfigError, match="sites.cc.endpoint: .*needs http"):
        d.capacity()


def test_oneapi_protocol_grpc_still_speaks_xmlrpc(front: OpenNebulaFront, one_auth: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEAPI_PROTOCOL", "grpc")
    assert driver(front, one_auth).version()


def test_ca_bundle_must_exist(front: OpenNebulaFront, one_auth: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sites.cc.ca_bundle: no CA bundle file"):
        driver(front, one_auth, ca_bundle=str(tmp_path / "missing.pem")).version()


def test_a_template_parse_error_is_not_retried() -> None:
    err = error_for_code(0x2000, "[one.template.instantiate] Parse error: syntax error, unexpected VARIABLE",
                         site="cc")
    assert not err.retryable
    assert error_for_code(0x2000, "[one.vm.info] Internal error, the request could not be completed.",
                          site="cc").retryable


def test_context_render_for_a_site_shows_the_merged_context(opennebula_sandbox_site, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    from skyctl.cli.main import main

    site = opennebula_sandbox_site
    sky = tmp_path / "sky.yaml"
    sky.write_text(yaml.safe_dump({
        "sites": {"cc": {"driver": "opennebula", "endpoint": site.endpoint, "one_auth": str(site.one_auth)}},
        "images": {"alma9": {"cc": "AlmaLinux 9"}}, "sizes": {"small": {"cpus": 1, "memory": "2GiB"}},
        "defaults": {"image": "alma9", "size": "small"}}))
    monkeypatch.setenv("SKYCTL_CONFIG", str(sky))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["context", "render", "base", "--for", "opennebula", "--site", "cc", "-o", "json"])
    out = capsys.readouterr().out
    assert info.value.code in (0, None), out
    context = json.loads(out)["context"]
    assert context["INIT_SCRIPTS"] == "site-init.sh" and context["DNS"] == "127.0.0.53"   # the site's
    assert context["SSH_PUBLIC_KEY"].startswith("ssh-") and "TOKEN" not in context         # skyctl's, no OneGate


def test_a_launch_fails_over_from_boot_failures(opennebula_sandbox_site, memory_driver, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    from skyctl.cli.main import main

    site = opennebula_sandbox_site
    site.world.settings.update(boot_failure_rate=1.0)
    sky = tmp_path / "sky.yaml"
    sky.write_text(yaml.safe_dump({
        "sites": {"cc": {"driver": "opennebula", "tier": "local", "endpoint": site.endpoint,
                         "one_auth": str(site.one_auth), "ssh": {"check_ready": False}},
                  "far": {"driver": "memory", "tier": "remote", "cost": 1, "ssh": {"check_ready": False}}},
        "images": {"alma9": {"cc": "AlmaLinux 9", "far": "alma9"}},
        "sizes": {"small": {"cpus": 1, "memory": "2GiB"}},
        "defaults": {"image": "alma9", "size": "small", "contexts": ["base"]}}))
    monkeypatch.setenv("SKYCTL_CONFIG", str(sky))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["launch", "bf", "--count", "2", "--wait", "-o", "json"])
    cap = capsys.readouterr()
    assert info.value.code in (0, None), cap.err
    data = json.loads(cap.out)
    assert sorted(n["site"] for n in data["nodes"]) == ["far", "far"]
    assert "BOOT_FAILURE" in data["full_sites"]["cc"] and "Error deploying" in data["full_sites"]["cc"]
    assert site.world.live_vms() == []                    # the failed VMs were deleted


def test_one_auth_with_a_login_token(front: OpenNebulaFront, tmp_path: Path) -> None:
    front.login_tokens.add("a1b2c3d4e5f6login-token")
    auth = tmp_path / "one_auth_token"
    auth.write_text("skyuser:a1b2c3d4e5f6login-token\n")
    auth.chmod(0o600)
    assert driver(front, auth).capacity().instances.limit == 16


def test_a_site_with_its_own_ca_needs_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skyctl.testing.sandbox import start_opennebula_site

    # requests would let this override a session's own verify: the site's settings must win
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    site = start_opennebula_site(tmp_path, tls=True)
    try:
        assert site.endpoint.startswith("https://") and site.ca_bundle is not None
        with pytest.raises(InvalidRequest, match="TLS with .* failed") as info:
            driver(site.front, site.one_auth).version()
        assert "ca_bundle" in info.value.line()
        assert driver(site.front, site.one_auth, ca_bundle=str(site.ca_bundle)).capacity().instances.limit == 16
        assert driver(site.front, site.one_auth, verify_tls=False).version()
    finally:
        site.stop()
