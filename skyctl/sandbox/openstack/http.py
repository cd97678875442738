"""The HTTP plumbing the imitated OpenStack services share: the request and its caller, the
reply, error answers and their bodies, the router from a path's first segment to a service,
and the threaded keep-alive server that turns sockets into requests (outages and injected
overload included). Also the small formats every service's bodies use (timestamps, ids).

Each response goes out in one write (no Nagle stalls).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from skyctl.sandbox.serving import KeepAliveServer
from skyctl.sandbox.world import SiteWorld


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso_us(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def stable_id(*parts: str) -> str:
    """The same id for the same thing on every start (users, projects, networks...)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "skyctl-sandbox/" + "/".join(parts)).hex


class HttpError(Exception):
    """An error answer. `key` is the body's top-level key (Nova style) or None (Keystone)."""

    def __init__(self, status: int, message: str, key: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.key = key
        self.headers = headers or {}


_NOVA_KEYS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest",
              406: "notAcceptable", 413: "overLimit", 500: "computeFault"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def nova_error(status: int, message: str) -> HttpError:
    """An error with the body key Nova uses for its status."""
    return HttpError(status, message, _NOVA_KEYS.get(status, "computeFault"))


def short(value: Any) -> str:
    """A value as Nova's schema errors quote it (cut short)."""
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class Reply:
    status: int
    body: Any = None                 # dict/list -> JSON; bytes -> as is; None -> empty
    headers: dict[str, str] | None = None
    content_type: str = "application/json"
    file: str | None = None          # send this file's bytes, streamed from disk (image downloads)


@dataclass(frozen=True)
class Principal:
    """Who a Keystone token stands for; the services set it on the request once checked."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    base_url: str                    # where this front is served: links in bodies point here
    principal: Principal | None = None
    microversion: tuple[int, int] = (2, 1)   # Nova's, its minimum until nova.py reads the header
    # An image upload's body is not read up front: the route streams it from `stream`.
    stream: Any = None
    length: int | None = None
    chunked: bool = False

    def json(self) -> Any:
        # Only Nova reads bodies this way, hence its error key.
        if not self.body:
            raise nova_error(400, "Malformed request body")
        try:
            return json.loads(self.body)
        except ValueError:
            raise nova_error(400, "Malformed request body") from None

    def q(self, name: str) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else None

    def mv(self, major: int, minor: int) -> bool:
        return self.microversion >= (major, minor)


Route = Callable[[Request, list[str]], Reply]


class Router:
    """Which service answers a path, by its first segment; `root` answers `/`."""

    def __init__(self, root: Route) -> None:
        self._root = root
        self._services: dict[str, Route] = {}

    def add(self, prefix: str, route: Route) -> None:
        self._services[prefix] = route

    def handle(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return self._root(req, [])
        route = self._services.get(parts[0])
        if route is None:
            raise HttpError(404, "The resource could not be found.", "itemNotFound")
        return route(req, parts[1:])


def _error_reply(e: HttpError) -> Reply:
    if e.key is None:
        return Reply(e.status, {"error": {"code": e.status, "title": _TITLES.get(e.status, "Error"),
                                          "message": e.message}}, e.headers)
    return Reply(e.status, {e.key: {"code": e.status, "message": e.message}}, e.headers)


def _overload_reply(path: str) -> Reply:
    """What an overloaded deployment answers: Nova losing its database, the others' proxy."""
    if path.startswith("/compute"):
        return Reply(500, {"computeFault": {"code": 500, "message": "Unexpected API Error. Please report this at "
                                            "http://bugs.launchpad.net/nova/ and attach the Nova API log if "
                                            "possible.\n<class 'oslo_db.exceptions.DBConnectionError'>"}})
    return Reply(503, b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this "
                      b"request.\n</body></html>\n", content_type="text/html")


class ApiServer(KeepAliveServer, HTTPServer):
    """Serves one router for one world (whose faults it applies) on one port."""

    quiet_errors = (OSError,)   # any socket error: a client that hung up or an outage drill

    def __init__(self, address: tuple[str, int], router: Router, world: SiteWorld,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _Handler)
        if tls is not None:
            # HTTPS with the site's own CA; each connection's handshake runs on its own thread
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.router = router
        self.world = world
        self.base_url = f"{'https' if tls else 'http'}://{address[0]}:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-openstack/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60            # idle keep-alive connections are closed, as real API servers do
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no request log on stderr
        pass

    def _serve(self) -> None:
        world = self.server.world
        length = int(self.headers.get("Content-Length") or 0)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        # Glance image data (PUT .../file) is streamed to disk by the route, never held here.
        streamed = self.command == "PUT" and self.path.startswith("/image/") and \
            urlsplit(self.path).path.endswith("/file")
        body = self.rfile.read(length) if length > 0 and not streamed else b""
        if world.faults.down:
            # An outage: the connection drops without an answer.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if world.inject(f"{self.command} {urlsplit(self.path).path}"):
            self._send(_overload_reply(self.path))
            return
        split = urlsplit(self.path)
        req = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True), self.headers, body,
                      self.server.base_url)
        if streamed:
            req.stream, req.length, req.chunked = self.rfile, length, chunked
        try:
            reply = self.server.router.handle(req)
        except HttpError as e:
            reply = _error_reply(e)
        except Exception as e:  # a bug in the sandbox must look like a 500, not a hung client
            reply = Reply(500, {"computeFault": {"code": 500, "message": "Unexpected API Error. "
                                                 f"{type(e).__name__}: {e}"}})
        if streamed and req.stream is not None:
            self.close_connection = True   # the body was not (wholly) read: the stream is not reusable
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.file is not None:
            self._send_file(reply)
            return
        if reply.body is None:
            payload = b""
        elif isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body, separators=(",", ":")).encode()
        phrase = self.responses.get(reply.status, ("",))[0]
        head = [f"HTTP/1.1 {reply.status} {phrase}",
                f"Content-Type: {reply.content_type}" if payload or reply.status != 204 else "",
                f"Content-Length: {len(payload) if reply.status != 204 else 0}",
                f"X-Openstack-Request-Id: req-{uuid.uuid4()}",
                f"Date: {self.date_time_string()}"]
        for k, v in (reply.headers or {}).items():
            head.append(f"{k}: {v}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(h for h in head if h) + "\r\n\r\n").encode("latin-1")
        if reply.status != 204 and self.command != "HEAD":
            data += payload
        self.wfile.write(data)

    def _send_file(self, reply: Reply) -> None:
        size = os.path.getsize(reply.file or "")
        head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}",
                f"Content-Type: {reply.content_type}", f"Content-Length: {size}",
                f"X-Openstack-Request-Id: req-{uuid.uuid4()}", f"Date: {self.date_time_string()}"]
        head += [f"{k}: {v}" for k, v in (reply.headers or {}).items()]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if self.command == "HEAD":
            return
        with open(reply.file or "", "rb") as f:
            while True:
                part = f.read(1024 * 1024)
                if not part:
                    break
                self.wfile.write(part)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def neutron_page(req: Request, items: list[dict[str, Any]], collection: str,
                 not_found: Callable[[str], Reply], max_limit: int | None = None) -> Reply:
    """A Neutron list answer, paged as Neutron pages (`limit`, `marker` by id): a full page
    carries `<collection>_links` with a `next` link (and `previous` after a marker).
    `max_limit` is neutron.conf's pagination_max_limit: every list is paged to it, asked or not."""
    marker = req.q("marker")
    if marker is not None:
        ids = [str(i.get("id")) for i in items]
        if marker not in ids:
            return not_found(marker)   # Neutron looks the marker object up first
        items = items[ids.index(marker) + 1:]
    raw = req.q("limit")
    if raw is None and max_limit is None:
        return Reply(200, {collection: items})
    try:
        limit = int(raw) if raw is not None else 0
        if max_limit is not None and (limit <= 0 or limit > max_limit):
            limit = max_limit
    except ValueError:
        # neutron/api/api_common.py _get_limit_param, a BadRequest(resource='limit').
        return Reply(400, {"NeutronError": {"type": "BadRequest", "detail": "",
                                            "message": f"Bad limit request: Limit must be an integer 0 or "
                                                       f"greater and not '{raw}'"}})
    page = items[:limit] if limit > 0 else items
    body: dict[str, Any] = {collection: page}
    links = []
    base = f"{req.base_url}{req.path}"
    params = {k: v for k, v in req.query.items() if k not in ("marker", "page_reverse")}
    if limit > 0 and len(page) == limit and page:
        query = urlencode({**params, "limit": [str(limit)], "marker": [page[-1]["id"]]}, doseq=True)
        links.append({"rel": "next", "href": f"{base}?{query}"})
    if marker is not None and page:
        query = urlencode({**params, "limit": [str(limit)], "marker": [page[0]["id"]], "page_reverse": ["True"]},
                          doseq=True)
        links.append({"rel": "previous", "href": f"{base}?{query}"})
    if links:
        body[f"{collection}_links"] = links
    return Reply(200, body)
