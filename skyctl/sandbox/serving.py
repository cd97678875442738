"""What both sandbox fronts need from their HTTP server: keep-alive connections served on
threads, served from a background thread, and stopped for real (kept-alive connections too)."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from typing import Any


class KeepAliveServer(socketserver.ThreadingMixIn):
    """Mixed in before the stdlib server class (`ThreadingHTTPServer`, `SimpleXMLRPCServer`)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    # Clients that hang up (timeouts, dropped pools, outage drills) are normal: no traceback.
    quiet_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], self.quiet_errors):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

    def serve_in_thread(self, name: str, poll_interval: float) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": poll_interval},
                                        name=name, daemon=True)
        self._thread.start()

    def stop_serving(self) -> None:
        """Stop accepting, close the socket and the kept-alive connections (their threads would
        otherwise go on serving them), so a stopped front answers nothing."""
        self.shutdown()  # type: ignore[attr-defined]
        self.server_close()  # type: ignore[attr-defined]
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
