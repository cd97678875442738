"""What a launch says on stderr: with -v each node's changes of state once (not every poll),
and the clouds' libraries' log noise (keystoneauth's discovery warning, paramiko's INFO lines)
folded to one whole line per site."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner

DISCOVERY = ("Failed to contact the endpoint at %s for discovery. Fallback to using that endpoint as "
             "the base url.")  # keystoneauth1/discover.py, logged at WARNING for each request that retries it


def test_verbose_prints_state_changes_not_polls(run: Runner, two_sites: Path) -> None:
    memdriver.cloud("home").boot_lists = 4  # four polls see the nodes booting
    res = run("-v", "launch", "vb", "--count", "2", "--wait")
    assert res.code == 0, res.err
    for name in ("vb-0", "vb-1"):
        assert res.err.count(f"{name}: pending") == 1, res.err
        assert res.err.count(f"{name}: running") == 1, res.err


@pytest.fixture
def noisy_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each capacity read logs as keystoneauth and paramiko do on a real site, four times over."""
    real = memdriver.MemoryDriver.capacity

    def capacity(self):  # type: ignore[no-untyped-def]
        for service in ("compute", "network", "image", "volume"):
            logging.getLogger("keystoneauth1.discover").warning(DISCOVERY, f"http://{self.site_name}.example:8774/{service}")
            logging.getLogger("paramiko.transport").info("Connected (version 2.0, client OpenSSH_9.2p1)")
        return real(self)

    monkeypatch.setattr(memdriver.MemoryDriver, "capacity", capacity)


@pytest.mark.parametrize("verbose", [(), ("-v",)])
def test_library_noise_is_one_whole_line_per_site(run: Runner, two_sites: Path, noisy_driver: None,
                                                  verbose: tuple[str, ...]) -> None:
    res = run(*verbose, "launch", "nz", "--count", "3")
    assert res.code == 0, res.err
    lines = [ln for ln in res.err.splitlines() if "Failed to contact" in ln]
    assert len(lines) == 2, res.err  # home and cc, once each
    assert {ln.split(":")[1].strip() for ln in lines} == {"keystoneauth1 (home)", "keystoneauth1 (cc)"}
    assert all(ln.endswith("Fallback to using that endpoint as the base url.") for ln in lines), lines
    assert "OpenSSH_9.2p1" not in res.err  # paramiko's INFO is not skyctl's progress, even with -v
