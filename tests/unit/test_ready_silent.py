"""Waits that notice (issue 15, item 6): a site that stops answering during a readiness wait
ends it early, naming the site and the nodes that exist, with exit code 3."""

from __future__ import annotations

import pytest

from skyctl.errors import EXIT_PARTIAL, SILENT_ROUNDS, NotFound, NotReady, SiteSilent, Transient
from skyctl.model import Node, NodeState
from skyctl.ops.ready import poll_ready
from skyctl.site import SiteConfig
from skyctl.ssh.session import SshOptions

SITES = {s: SiteConfig(name=s, driver="memory", ready_timeout=600) for s in ("home", "cc")}


def _nodes() -> list[Node]:  # no addresses yet: the wait asks the clouds, never SSH
    return [Node(f"web-{i}", "web", site, "memory", f"id-{i}", NodeState.PENDING, ())
            for i, site in enumerate(("home", "cc", "cc"))]


def test_a_site_that_stops_answering_ends_the_wait_early_listing_the_nodes() -> None:
    asked: list[str] = []

    def probe(n: Node) -> object:
        asked.append(n.site)
        if n.site == "cc":
            raise Transient("connection refused", site="cc")
        return n

    with pytest.raises(SiteSilent) as info:
        poll_ready(_nodes(), SITES, SshOptions(key=None), refresh=lambda ns: ns, probe=probe, poll=0.01)
    err = info.value
    assert err.exit_code == EXIT_PARTIAL == 3
    assert err.line().startswith("cc did not answer (connection refused)")
    assert "web-0 (home), web-1 (cc, not answering), web-2 (cc, not answering)" in err.line()
    assert [n.name for n in err.nodes] == ["web-0", "web-1", "web-2"]
    assert asked.count("cc") == SILENT_ROUNDS  # one question per site per round, not per node


def test_a_site_that_answers_again_or_refuses_is_not_silence() -> None:
    calls = {"cc": 0}

    def probe(n: Node) -> object:
        if n.site == "cc":
            calls["cc"] += 1
            if calls["cc"] % SILENT_ROUNDS == 0:
                return n  # answers every third round: never SILENT_ROUNDS in a row
            raise Transient("HTTP 503", site="cc")
        raise NotFound("no such server", site="home")  # an answer, not silence

    with pytest.raises(NotReady):
        poll_ready(_nodes(), SITES, SshOptions(key=None), refresh=lambda ns: ns, probe=probe, poll=0.01,
                   timeout_for=lambda s: 0.5)
