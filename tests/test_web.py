from __future__ import annotations

import socket
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from exporter.config import ListenAddress
from exporter.serve.web import make_app, start_http_server


def call(app, path: str, method: str = "GET", **environ: str) -> tuple[str, dict, bytes]:
    env: dict = {"PATH_INFO": path, "REQUEST_METHOD": method, **environ}
    setup_testing_defaults(env)
    captured: dict = {}

    def start_response(status: str, headers: list, exc_info=None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(env, start_response))
    return captured["status"], captured["headers"], body


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("demo_value", "A value.", registry=registry).set(3)
    return registry


def test_routes(registry: CollectorRegistry) -> None:
    ready = [False]
    app = make_app(
        registry, lambda: ready[0], lambda: b"<p>status</p>", targets=lambda: b'{"status": 1}'
    )
    assert call(app, "/healthz")[0] == "200 OK"
    assert call(app, "/ready")[0] == "503 Service Unavailable"
    ready[0] = True
    assert call(app, "/ready")[0] == "200 OK"
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK" and b"demo_value 3.0" in body
    status, headers, body = call(app, "/")
    assert headers["Content-Type"].startswith("text/html")
    assert body == b"<p>status</p>"
    status, headers, body = call(app, "/api/v1/targets")
    assert headers["Content-Type"] == "application/json" and body == b'{"status": 1}'
    assert call(app, "/missing")[0] == "404 Not Found"
    assert call(app, "/metrics", method="POST")[0] == "405 Method Not Allowed"


def test_openmetrics_is_negotiated(registry: CollectorRegistry) -> None:
    app = make_app(registry, lambda: True, lambda: "")
    _, headers, body = call(
        app, "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_serves_on_ipv6_loopback(registry: CollectorRegistry) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = start_http_server(
            ListenAddress("::1", 0), make_app(registry, lambda: True, lambda: "")
        )
    except OSError:
        pytest.skip("IPv6 loopback not configured")
    try:
        port = server.server_address[1]
        assert requests.get(f"http://[::1]:{port}/healthz", timeout=5).text == "ok\n"
    finally:
        server.shutdown()
        server.server_close()


def test_cached_metrics_negotiate_like_prometheus_client(registry: CollectorRegistry) -> None:
    import gzip

    from exporter.pipeline.snapshot import SnapshotStore
    from exporter.serve.render import ExpositionCache

    live = CollectorRegistry()
    Gauge("demo_live", "Live.", registry=live).set(1)
    cache = ExpositionCache(SnapshotStore(()), registry, live, 3600)
    app = make_app(registry, lambda: True, lambda: "", cache=cache)

    status, headers, body = call(app, "/metrics")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers and int(headers["Content-Length"]) == len(body)
    assert b"demo_value 3.0\n" in body and b"demo_live 1.0\n" in body

    prometheus_accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    status, headers, body = call(
        app, "/metrics", HTTP_ACCEPT=prometheus_accept, HTTP_ACCEPT_ENCODING="gzip"
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(body)
    assert gzip.decompress(body).endswith(b"demo_live 1.0\n# EOF\n")

    status, headers, body = call(app, "/metrics", method="HEAD", HTTP_ACCEPT_ENCODING="gzip")
    assert status == "200 OK" and body == b"" and int(headers["Content-Length"]) > 0

    # name[] filters are answered by prometheus-client from the full registry.
    status, headers, body = call(app, "/metrics", QUERY_STRING="name[]=demo_value")
    assert body == b"# HELP demo_value A value.\n# TYPE demo_value gauge\ndemo_value 3.0\n"
