"""The unit tier runs without sockets: every test here gets `no_sockets` (autouse), which makes
creating any socket raise, and fails the test even when the code under test swallowed that.
Tests that need a server or a connection, loopback included, belong in tests/component/.
Subprocesses (sh, cloud-init's schema check) are fine: the guard lives in this process only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


class SocketInUnitTest(RuntimeError):
    """Not an OSError, so code that handles network errors does not take it for one."""


@pytest.fixture(autouse=True)
def no_sockets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The sockets the test tried to open (a test of this guard may clear the list)."""
    tried: list[str] = []

    def refuse(self: socket.socket, *args: object, **kwargs: object) -> None:
        tried.append(f"socket.socket{args!r}")
        raise SocketInUnitTest(f"{request.node.nodeid} opened a socket; unit tests run without any "
                               "(tests that need one belong in tests/component/)")

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    yield tried
    if tried:
        pytest.fail(f"{request.node.nodeid} tried to open sockets: {', '.join(tried)} "
                    "(tests that need one belong in tests/component/)", pytrace=False)
