"""Text that clouds choose (addresses, names, fault messages) reaches the terminal inert:
no escape sequences, no rich markup, no forged rows; JSON keeps it exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from skyctl.errors import Transient
from skyctl.testing import memory as memdriver
from skyctl.testing.cli import Runner

HOSTILE = "\x1b]0;owned\x07\x1b[2J[bold red]evil[/bold red]\r\nweb-9  running  forged\u202eexe.txt"


def _poison_addresses() -> None:
    for site in memdriver.CLOUDS.values():
        for node_id, (node, ctx) in list(site.nodes.items()):
            site.nodes[node_id] = (replace(node, addresses=(HOSTILE,), extra={**node.extra, "fault": HOSTILE}), ctx)


def _inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    assert "[bold red]evil[/bold red]" in text  # shown as written, not interpreted


def test_a_table_shows_cloud_text_escaped_and_on_its_own_row(run: Runner, two_sites) -> None:  # type: ignore[no-untyped-def]
    assert run("launch", "web", "--count", "2").code == 0
    _poison_addresses()
    ps = run("ps")
    assert ps.code == 0
    _inert(ps.out)
    rows = [line for line in ps.out.splitlines() if line.strip()]
    assert len(rows) == 3, ps.out  # header + two nodes: the CR/LF did not forge a row
    assert "\\x1b" in ps.out and "\\u202e" in ps.out  # visible, so the user sees something is odd
    show = run("show", "web-0")
    _inert(show.out)
    as_json = run("ps", "-o", "json").json()
    assert as_json[0]["addresses"] == [HOSTILE]  # JSON keeps the text, escaped by the serialiser


def test_a_warning_with_a_cloud_message_is_inert(run: Runner, two_sites,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self):  # type: ignore[no-untyped-def]
        raise Transient(HOSTILE, site=self.site_name)

    monkeypatch.setattr(memdriver.MemoryDriver, "list", lambda self, *a, **k: refuse(self))
    res = run("ps")
    _inert(res.err)
    assert "evil" in res.err
