"""The HTTP side: `/metrics`, `/healthz`, `/ready` and a landing page, over WSGI.

`/metrics` serves the render cache's bytes (serve/render.py), negotiated as
prometheus-client negotiates (its own `choose_encoder` and `gzip_accepted`); a gzip body goes
out as a file (`wsgi.file_wrapper`, which the exporter's server sends with sendfile()); a
request with a `name[]` filter gets just those families, joined from the same render.
The server is serve/httpserver.py; `runs_inline` tells it which requests are cheap enough
to answer on its event loop.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.config import ListenAddress
from exporter.serve.httpserver import HTTPServer
from exporter.serve.httpserver import start_http_server as serve
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
    """/metrics from the render cache, `name[]` filters included."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        names = parse_qs(query).get("name[]") if query else None
        _, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        fmt = OPENMETRICS if content_type.startswith("application/openmetrics-text") else TEXT
        compressed = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        head = environ.get("REQUEST_METHOD") == "HEAD"
        wrapper = environ.get("wsgi.file_wrapper")
        file = None
        if names:
            body, length = cache.filtered_body(names, fmt, gzip=compressed)
        elif compressed and wrapper is not None and not head:
            file = cache.gzip_file(fmt)
        if file is not None and wrapper is not None:
            body, length = wrapper(file.reader()), file.length
        elif not names:
            body, length = cache.body(fmt, gzip=compressed)
        headers = [("Content-Type", content_type), ("Content-Length", str(length))]
        if compressed:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [] if head else body

    return app


def _cheap(environ: dict[str, Any]) -> bool:
    """A request that a cached body answers in microseconds (see `runs_inline`)."""
    path = environ.get("PATH_INFO")
    if path == "/metrics":
        return not environ.get("QUERY_STRING") and gzip_accepted(
            environ.get("HTTP_ACCEPT_ENCODING", "")
        )
    # The status page and the targets JSON are rendered per request, at a cost that grows with
    # the number of targets: like a reload, they go to a worker thread.
    return path in ("/healthz", "/ready")


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

    def cheap(environ: dict[str, Any]) -> bool:
        if cache is None and environ.get("PATH_INFO") == "/metrics":
            return False  # rendered on the spot
        return _cheap(environ)

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

    # For serve/httpserver.py: requests that are answered on its event loop. Everything else
    # (a reload, a `name[]` filter, a body inflated for a scraper that takes no gzip, a scrape
    # rendered on the spot) runs on a worker thread.
    app.runs_inline = cheap  # type: ignore[attr-defined]
    return app


def start_http_server(
    address: ListenAddress, app: WSGIApp, tls: ssl.SSLContext | None = None
) -> HTTPServer:
    """Bind (raising OSError when the address cannot be used) and serve in a daemon thread."""
    return serve(address, app, tls)
