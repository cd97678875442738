"""The connection: pyone's XML-RPC client over a pooled, time-bounded HTTP session.

pyone opens a new TCP connection per call and its `timeout` does not bound requests, so its
transport is replaced by one on a `requests.Session` (keep-alive pool sized to the site's
concurrency, connect/read timeouts from `request_timeout`). Replies are taken raw
(`[ok, body, code]`) so that every error keeps its oned code (pyone folds 0x8000 LOCKED into a
plain exception) and big pools are parsed by `convert`, not by pyone's generated classes.
Imported on first use only: this is the only module that imports pyone.
"""

from __future__ import annotations

import time
import xmlrpc.client
from typing import Any

import pyone
import requests
from requests.adapters import HTTPAdapter

from skyctl.errors import Transient
from skyctl.logsafe import register_secret

from skyctl_opennebula.auth import public_endpoint
from skyctl_opennebula.errors import LOCKED, error_for_code, error_for_exception

LOCK_RETRIES = 4          # a locked VM usually frees within a second or two
LOCK_BACKOFF = 0.5


class SessionTransport(xmlrpc.client.Transport):
    """xmlrpc.client transport on a requests.Session: connection reuse and real timeouts."""

    def __init__(self, *, https: bool, verify: bool | str, connect_timeout: float, read_timeout: float,
                 pool_size: int) -> None:
        super().__init__()
        self.scheme = "https" if https else "http"
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        self.session.verify = verify
        self.verify = verify
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Content-Type": "text/xml", "Accept": "text/xml",
                                     "User-Agent": f"skyctl-opennebula pyone/{_pyone_version()}"})

    def request(self, host: str, handler: str, request_body: bytes, verbose: bool = False) -> Any:
        url = f"{self.scheme}://{host}/{handler.lstrip('/')}"
        # verify per request: requests lets $REQUESTS_CA_BUNDLE override a session's own
        # verify (a ca_bundle, or verify_tls: false), but not a request's
        resp = self.session.post(url, data=request_body, timeout=self.timeout, verify=self.verify)
        if resp.status_code != 200:
            raise xmlrpc.client.ProtocolError(url, resp.status_code, resp.reason or "", {})
        parser, unmarshaller = self.getparser()
        expat = getattr(parser, "_parser", None)
        if expat is not None:
            # A pool body is one big escaped string: without buffering expat hands it over in
            # ~400k pieces for 1000 VMs (most of a list's time).
            expat.buffer_text = True
            expat.buffer_size = max(len(resp.content), 8192)
        parser.feed(resp.content)
        parser.close()
        return unmarshaller.close()

    def close(self) -> None:
        self.session.close()


def _pyone_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyone")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "?"


def _xmlrpc_server(endpoint: str, **kwargs: Any) -> Any:
    try:
        from pyone.server_xrpc import OneServerXRPC
    except ImportError:  # pragma: no cover - pyone before 7.2 has only the XML-RPC client
        return pyone.OneServer(endpoint, **kwargs)
    return OneServerXRPC(endpoint, **kwargs)


class Client:
    def __init__(self, endpoint: str, session: str, *, site: str, verify: bool | str, timeout: float,
                 pool_size: int) -> None:
        register_secret(session)
        register_secret(session.partition(":")[2])
        self.site = site
        self.endpoint = public_endpoint(endpoint)     # for messages
        self._timeout = timeout
        # No `timeout=` to pyone: it would set the process-wide socket default. The XML-RPC
        # client itself: pyone's factory would pick gRPC for $ONEAPI_PROTOCOL=grpc.
        self._server = _xmlrpc_server(endpoint, session=session, https_verify=bool(verify))
        self._transport = SessionTransport(https=endpoint.startswith("https"), verify=verify,
                                           connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                                           pool_size=pool_size)
        self._server._ServerProxy__transport = self._transport  # pyone offers no way to pass one

    def call(self, method: str, *params: Any) -> Any:
        """Call `one.<method>`; return the body of a successful reply or raise a DriverError."""
        for attempt in range(LOCK_RETRIES):
            raw = self._request(method, params)
            if not isinstance(raw, (list, tuple)) or len(raw) < 2:
                raise Transient(f"one.{method}: unexpected reply shape from {self.endpoint}", site=self.site)
            if raw[0]:
                return raw[1]
            code = int(raw[2]) if len(raw) > 2 and isinstance(raw[2], int) else 0
            if code == LOCKED and attempt < LOCK_RETRIES - 1:
                time.sleep(LOCK_BACKOFF * (attempt + 1))
                continue
            raise error_for_code(code, str(raw[1]), site=self.site)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, params: tuple[Any, ...]) -> Any:
        server = self._server
        try:
            # pyone's casting and session prefix, without its reply binding
            return server._do_request("one." + method, server._cast_parms(params))
        except Exception as e:
            mapped = error_for_exception(e, f"one.{method}", endpoint=self.endpoint, timeout=self._timeout,
                                         site=self.site)
            if mapped is None:
                raise
            raise mapped from None

    def close(self) -> None:
        self._transport.close()
