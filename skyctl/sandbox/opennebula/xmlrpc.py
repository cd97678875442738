"""The XML-RPC front as oned's xmlrpc-c/abyss server runs it: HTTP/1.1 keep-alive on loopback,
the session check, `[ok, body, code]` replies with oned's error codes, and xmlrpc-c's faults
for unknown methods and wrong signatures. Knows no `one.*` method itself."""

from __future__ import annotations

import hmac
import inspect
import socket
import ssl
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from skyctl.sandbox.serving import KeepAliveServer
from skyctl.sandbox.world import SiteWorld

# Error codes (OpenNebula XML-RPC API). The driver has its own copy on purpose: each side
# reads the reference, so tests must not agree with themselves.
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000


class OneError(Exception):
    """An error reply: `[false, message, code, resource_id, 0]`."""

    def __init__(self, code: int, message: str, resource_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource_id = resource_id


def failure(code: int, message: str, resource_id: int = -1) -> list[Any]:
    return [False, message, code, resource_id, 0]


_XMLRPC_TYPES = {"int": (int,), "bool": (bool, int), "str": (str,)}


def check_arguments(fn: Callable[..., Any], method: str, args: tuple[Any, ...]) -> None:
    """xmlrpc-c checks each method's signature: wrong count or type is a fault, not a reply."""
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(method, *args)
    except TypeError:
        raise xmlrpc.client.Fault(-501, "Parameter count mismatch") from None
    for name, value in list(bound.arguments.items())[1:]:
        allowed = _XMLRPC_TYPES.get(str(sig.parameters[name].annotation))
        if allowed and (not isinstance(value, allowed) or (allowed == (int,) and isinstance(value, bool))):
            raise xmlrpc.client.Fault(-501, f"Type mismatch in parameter {name}")


class _Server(KeepAliveServer, SimpleXMLRPCServer):
    def __init__(self, front: XmlRpcFront, addr: tuple[str, int]) -> None:
        self.front = front
        super().__init__(addr, requestHandler=_Handler, logRequests=False, allow_none=False,
                         encoding="utf-8", bind_and_activate=True)

    def _dispatch(self, method: str, params: tuple[Any, ...]) -> Any:
        return self.front.dispatch(method, params)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Called on the one accepting thread, so the count needs no lock.
        self.front.connections_accepted += 1
        super().process_request(request, client_address)


class _Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as oned's xmlrpc-c/abyss server
    rpc_paths = ("/RPC2", "/")
    timeout = 120                   # idle keep-alive connections end eventually
    encode_threshold = None         # oned's abyss server does not gzip replies
    server: _Server

    def _drop_if_down(self) -> bool:
        if self.server.front.world.faults.down:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        return False

    def handle_one_request(self) -> None:
        if self._drop_if_down():
            return
        super().handle_one_request()

    def do_POST(self) -> None:
        if self._drop_if_down():
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class XmlRpcFront:
    """Serves the methods `method_table()` names for one `SiteWorld`, as one user.

    Each method is called as `fn(method_name, *arguments_after_the_session)` and returns the
    reply body or raises `OneError`."""

    def __init__(self, world: SiteWorld, *, host: str, port: int, username: str, password: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.world = world
        self.tls = tls                  # serve HTTPS with this context (a site with its own CA)
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        # Login tokens (`oneuser token-create`): `user:token` logs in as `user:password` does.
        self.login_tokens: set[str] = set()
        self.connections_accepted = 0   # TCP connections taken; shows whether clients reuse them
        self._server: _Server | None = None
        self._methods = self.method_table()

    def method_table(self) -> dict[str, Callable[..., Any]]:
        raise NotImplementedError

    def _authenticated(self, session: str) -> bool:
        user, _, secret = session.partition(":")
        if not hmac.compare_digest(user.encode(), self.username.encode()):
            return False
        ok = hmac.compare_digest(secret.encode(), self._password.encode())
        for token in self.login_tokens:
            ok |= hmac.compare_digest(secret.encode(), token.encode())
        return ok

    # ------------------------------------------------------------ lifecycle of the server
    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/RPC2"

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server(self, (self.host, self.port))
        if self.tls is not None:
            # the handshake happens in each connection's thread, on its first read
            server.socket = self.tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = server.server_address[1]
        self._server = server
        server.serve_in_thread(f"one-front-{self.world.name}", poll_interval=0.05)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop_serving()

    # ------------------------------------------------------------ dispatch
    def dispatch(self, method: str, params: tuple[Any, ...]) -> list[Any]:
        fn = self._methods.get(method)
        if fn is None:
            # xmlrpc-c's answer for an unknown method
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        if not params or not isinstance(params[0], str):
            raise xmlrpc.client.Fault(-501, "Type mismatch")
        if self.world.inject():
            return failure(INTERNAL, f"[{method}] Internal error, the request could not be completed.")
        if not self._authenticated(params[0]):
            return failure(AUTHENTICATION, f"[{method}] User couldn't be authenticated, aborting call.")
        check_arguments(fn, method, params[1:])
        try:
            return [True, fn(method, *params[1:]), 0]
        except OneError as e:
            return failure(e.code, e.message, e.resource_id)
