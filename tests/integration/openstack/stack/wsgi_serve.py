"""Serve one WSGI application on 127.0.0.1 with a threaded stdlib server.

Usage: wsgi_serve.py MODULE:FACTORY PORT [PROGNAME]

Keystone and Placement ship only WSGI factories in Debian's python3-* packages (the
service packages would pull in Apache and systemd units); this runs them without either.
"""

from __future__ import annotations

import importlib
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    target, port = sys.argv[1], int(sys.argv[2])
    module_name, factory_name = target.split(":")
    # oslo.config parses sys.argv inside the factory: give it only a program name.
    sys.argv = [sys.argv[3] if len(sys.argv) > 3 else module_name]
    app = getattr(importlib.import_module(module_name), factory_name)()
    server = make_server("127.0.0.1", port, app, server_class=ThreadedWSGIServer,
                         handler_class=QuietHandler)
    print(f"serving {target} on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
