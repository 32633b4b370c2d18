"""The HTTP side: `/metrics`, `/healthz`, `/ready` and a landing page, over WSGI.

`/metrics` serves the render cache's bytes (exporter/serve/render.py), negotiated as
prometheus-client negotiates (its own `choose_encoder` and `gzip_accepted`); a request with a
`name[]` filter goes to prometheus-client's own WSGI app, which renders just those families.
The server is the standard library's WSGI server with a thread per request, so a slow scraper
blocks nobody.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.config import ListenAddress
from exporter.serve.render import OPENMETRICS, TEXT, ExpositionCache

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _reply(
    start_response: StartResponse, status: str, body: str | bytes, content_type: str
) -> list[bytes]:
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def cached_metrics_app(cache: ExpositionCache, registry: CollectorRegistry) -> WSGIApp:
    """/metrics from the render cache; `registry` (everything) answers `name[]` filters."""
    filtered = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if "name[]" in parse_qs(environ.get("QUERY_STRING", "")):
            return filtered(environ, start_response)
        _, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        fmt = OPENMETRICS if content_type.startswith("application/openmetrics-text") else TEXT
        compressed = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        body, length = cache.body(fmt, gzip=compressed)
        headers = [("Content-Type", content_type), ("Content-Length", str(length))]
        if compressed:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body

    return app


Reloader = Callable[[], tuple[bool, str]]
"""Re-reads the config: (True, summary) or (False, the one-line error)."""


def make_app(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    landing: Callable[[], str | bytes],
    reload: Reloader | None = None,
    *,
    cache: ExpositionCache | None = None,
    targets: Callable[[], bytes] | None = None,
) -> WSGIApp:
    """The router. With `cache`, /metrics serves its bytes; without, `registry` renders each
    scrape (what small tools and tests use). `landing` is the `/` page (the status page),
    `targets` the JSON of /api/v1/targets."""
    metrics = make_wsgi_app(registry) if cache is None else cached_metrics_app(cache, registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/-/reload":
            # As Prometheus does it: POST (or PUT) only, 500 with the reason on failure.
            if method not in ("POST", "PUT"):
                return _reply(start_response, "405 Method Not Allowed", "POST only\n", "text/plain")
            if reload is None:
                return _reply(
                    start_response,
                    "403 Forbidden",
                    "Lifecycle API is not enabled (--web.enable-lifecycle)\n",
                    "text/plain",
                )
            ok, message = reload()
            if ok:
                return _reply(start_response, "200 OK", message + "\n", "text/plain")
            return _reply(
                start_response,
                "500 Internal Server Error",
                f"failed to reload config: {message}\n",
                "text/plain",
            )
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", "GET only\n", "text/plain")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            return _reply(start_response, "200 OK", "ok\n", "text/plain")
        if path == "/ready":
            if is_ready():
                return _reply(start_response, "200 OK", "ready\n", "text/plain")
            return _reply(
                start_response,
                "503 Service Unavailable",
                "not every target polled yet\n",
                "text/plain",
            )
        if path == "/":
            return _reply(start_response, "200 OK", landing(), "text/html; charset=utf-8")
        if path == "/api/v1/targets" and targets is not None:
            return _reply(start_response, "200 OK", targets(), "application/json")
        return _reply(start_response, "404 Not Found", "not found\n", "text/plain")

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up, or failed the TLS handshake, is no reason for a traceback.
        log.debug("request from %s failed", client_address, exc_info=True)


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # an idle or stalled client (TLS handshake included) does not hold a thread

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def start_http_server(
    address: ListenAddress, app: WSGIApp, tls: ssl.SSLContext | None = None
) -> WSGIServer:
    """Bind (raising OSError when the address cannot be used) and serve in a daemon thread."""
    server_class = _ThreadingWSGIServer6 if ":" in address.host else _ThreadingWSGIServer
    server = make_server(address.host, address.port, app, server_class, _QuietHandler)
    if tls is not None:
        # The handshake happens on the first read, in the request's own thread, so a slow or
        # broken client never holds up accept().
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    # A short poll interval lets shutdown() return quickly on SIGTERM.
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
    ).start()
    return server
