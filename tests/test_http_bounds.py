"""The HTTP server's bounds, on real sockets on loopback (exporter/serve/httpserver.py).

Each bound is probed the way a hostile or broken client would meet it, and each test checks
the answer the client gets. No test judges a timing: waits are generous upper limits for things
that happen at once or after a configured (shortened) timeout.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import re
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.registry import Collector

from exporter.config import ListenAddress
from exporter.pipeline.snapshot import SnapshotStore
from exporter.serve.httpserver import BACKLOG, MAX_HEAD_BYTES, HTTPServer, start_http_server
from exporter.serve.render import ExpositionCache
from exporter.serve.web import make_app
from tests.conftest import config_dict, write_config

LOOPBACK = ListenAddress("127.0.0.1", 0)


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("demo_value", "A value.", registry=registry).set(3)
    return registry


@pytest.fixture
def serve(registry: CollectorRegistry) -> Iterator:
    """Start servers of the exporter's app (cached /metrics) with given options; all stopped."""
    started: list[HTTPServer] = []

    def start(app=None, tls: ssl.SSLContext | None = None, **options) -> HTTPServer:
        if app is None:
            live = CollectorRegistry()
            Gauge("demo_live", "Live.", registry=live).set(1)
            cache = ExpositionCache(SnapshotStore(()), registry, live, 3600)
            app = make_app(registry, lambda: True, lambda: "", cache=cache)
        server = start_http_server(LOOPBACK, app, tls, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_answer(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """One HTTP answer off a raw socket: status line, headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """True when the server closes the connection within `timeout` (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def get(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


# -- backlog -----------------------------------------------------------------------------------


def listen_backlog(port: int) -> int | None:
    """The listening socket's backlog as the kernel holds it (ss's Send-Q), None without ss."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    fields = out.split()
    return int(fields[2]) if len(fields) > 2 else None


def test_the_backlog_holds_a_burst_while_the_loop_is_busy(serve) -> None:
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/block":
            release.wait(30)  # runs on the loop thread: nothing is accepted meanwhile
        start_response("200 OK", [("Content-Length", "3")])
        return [b"ok\n"]

    app.runs_inline = lambda environ: True
    server = serve(app)
    port = server.server_port
    held = listen_backlog(port)
    if held is not None:
        assert held >= 512, f"listen backlog {held}"
    assert BACKLOG >= 512

    blocker = connect(port)
    blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # let the loop take it and block
    count = 600
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
            socks.append(sock)
        # With the loop blocked, only the kernel's queue holds them: all must get connected.
        pending = set(socks)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending)[:500], [], 0.5)
            for sock in writable:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                pending.discard(sock)
        assert not pending, f"{len(pending)} of {count} connections were not accepted"
        release.set()
        assert read_answer(blocker)[0] == "HTTP/1.1 200 OK"
        answered = 0
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for sock in socks:
            answered += read_answer(sock)[0] == "HTTP/1.1 200 OK"
        assert answered == count
    finally:
        release.set()
        blocker.close()
        for sock in socks:
            sock.close()


# -- request head limit --------------------------------------------------------------------


def request_with_head_of(size: int) -> bytes:
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    filler = size - len(start) - len(b"X-Pad: \r\n\r\n")
    return start + b"X-Pad: " + b"a" * filler + b"\r\n\r\n"


def test_a_head_over_64_kib_is_answered_431_and_closed(serve) -> None:
    port = serve().server_port
    with connect(port) as sock:
        sock.sendall(request_with_head_of(MAX_HEAD_BYTES))  # exactly at the limit: served
        assert read_answer(sock)[0] == "HTTP/1.1 200 OK"
    with connect(port) as sock:
        sock.sendall(request_with_head_of(MAX_HEAD_BYTES + 1))
        status, headers, body = read_answer(sock)
        assert status == "HTTP/1.1 431 Request Header Fields Too Large"
        assert headers["connection"] == "close" and b"65536" in body
        assert closed_by_server(sock)
    with connect(port) as sock:
        # Many headers, sent on and on: the server stops reading at the limit.
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        status = None
        try:
            for _ in range(99):
                sock.sendall(b"X-Junk: " + b"b" * 65_000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        # A reset before the answer could be read: the limit still held (see below).
        with contextlib.suppress(ConnectionError, OSError):
            status = read_answer(sock)[0]
        if status is not None:
            assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert get(port, "/healthz").status == 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_hostile_heads_leave_no_memory_behind(simulator, start_exporter, tmp_path) -> None:
    """40 connections of 99 headers of 65 KB each (6.4 MB apiece) once took the exporter from
    48 MB to 1.5 GB; each is now cut off after 64 KiB."""
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml",
                                                           config_dict(simulator))))
    exporter.wait_ready()
    port = exporter.port
    before = rss_kib(exporter.process.pid)

    def hostile() -> None:
        try:
            with connect(port) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    sock.sendall(b"X-Junk: " + b"c" * 65_000 + b"\r\n")
                sock.sendall(b"\r\n")
                read_answer(sock)
        except OSError:
            pass  # the server closed on us: what it should do

    threads = [threading.Thread(target=hostile) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    after = rss_kib(exporter.process.pid)
    print(f"\nRSS before and after 40 hostile heads: {before} -> {after} KiB")
    assert after - before < 100 * 1024, f"RSS {before} -> {after} KiB"
    assert exporter.get("/metrics").status_code == 200


# -- connection bound ------------------------------------------------------------------------


def test_connections_past_the_bound_are_answered_503(serve) -> None:
    port = serve(max_connections=4).server_port
    held = [connect(port) for _ in range(4)]
    try:
        for sock in held:  # each is accepted and served, then stays open (keep-alive)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock)[0] == "HTTP/1.1 200 OK"
        with connect(port) as extra:
            status, headers, body = read_answer(extra)
            assert status == "HTTP/1.1 503 Service Unavailable"
            assert headers["retry-after"] == "1" and body == b"too many open connections\n"
            assert closed_by_server(extra)
        held.pop().close()
        for _ in range(100):  # once the server has seen the close, there is room again
            with connect(port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if read_answer(sock)[0] == "HTTP/1.1 200 OK":
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("no room after a connection closed")
    finally:
        for sock in held:
            sock.close()


# -- timeouts ----------------------------------------------------------------------------------


def test_idle_and_stalled_clients_are_dropped(serve) -> None:
    port = serve(idle_timeout=1).server_port
    with connect(port) as silent:
        assert closed_by_server(silent)
    with connect(port) as slow:  # a head sent a byte at a time never gets to finish
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        dropped = False
        for _ in range(100):
            try:
                slow.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            time.sleep(0.1)
        assert dropped or closed_by_server(slow, 1)
    with connect(port) as kept:  # idle between two requests of a kept-alive connection
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(kept)[0] == "HTTP/1.1 200 OK"
        assert closed_by_server(kept)


# -- TLS ---------------------------------------------------------------------------------------


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_plain_http_on_the_tls_port_is_answered_400(serve, tmp_path) -> None:
    cert, key = make_certificate(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    port = serve(tls=context).server_port
    plain = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert plain.status_code == 400
    assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"
    scrape = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=10)
    assert scrape.status_code == 200 and b"demo_value 3.0" in scrape.content
    assert scrape.headers["Content-Encoding"] == "gzip"  # decoded by requests, sent over TLS


def test_required_client_certificates_are_checked_in_the_handshake(serve, tmp_path) -> None:
    cert, key = make_certificate(tmp_path, "server")
    client_cert, client_key = make_certificate(tmp_path, "client")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    port = serve(tls=context).server_port
    url = f"https://127.0.0.1:{port}/healthz"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=str(cert), timeout=10)
    answer = requests.get(url, verify=str(cert), cert=(str(client_cert), str(client_key)),
                          timeout=10)
    assert answer.status_code == 200 and answer.text == "ok\n"


# -- what is served ----------------------------------------------------------------------------


class Exploding(Collector):
    def collect(self):
        raise AssertionError("a name[] request collected the whole registry")


def test_name_filters_are_served_from_the_render(serve) -> None:
    registry = CollectorRegistry()
    Gauge("demo_value", "A value.", registry=registry).set(3)
    cache = ExpositionCache(SnapshotStore(()), registry, CollectorRegistry(), 3600)
    everything = CollectorRegistry()
    everything.register(Exploding())  # what the old name[] path rendered from
    port = serve(make_app(everything, lambda: True, lambda: "", cache=cache)).server_port
    answer = get(port, "/metrics?name[]=demo_value")
    assert answer.status == 200
    assert answer.body == b"# HELP demo_value A value.\n# TYPE demo_value gauge\ndemo_value 3.0\n"
    answer = get(port, "/metrics?name[]=whatsapp_conversations", **{"Accept-Encoding": "gzip"})
    assert gzip.decompress(answer.body).startswith(b"# HELP whatsapp_conversations ")
    assert b"demo_value" not in gzip.decompress(answer.body)


def test_methods_keep_alive_pipelining_and_plain_bodies(serve) -> None:
    port = serve().server_port
    gzipped = get(port, "/metrics", **{"Accept-Encoding": "gzip"})
    assert gzipped.getheader("Content-Encoding") == "gzip"
    plain = get(port, "/metrics")
    assert plain.getheader("Content-Encoding") is None
    assert plain.body == gzip.decompress(gzipped.body)
    with connect(port) as sock:
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        status, headers, _ = read_answer_head_only(sock)
        assert status == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 0
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert read_answer(sock)[0] == "HTTP/1.1 405 Method Not Allowed"
        # Three pipelined requests on one connection, answered in order.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
                     + b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"not found\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        statuses = re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", data)
        assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]
    with connect(port) as sock:
        sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
                     + b"z" * 70000)
        assert read_answer(sock)[0] == "HTTP/1.1 413 Content Too Large"
    with connect(port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_answer(sock)[0] == "HTTP/1.1 400 Bad Request"


def read_answer_head_only(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """The answer to a HEAD request: headers only, whatever Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"", "a HEAD answer carried a body"
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}, rest


def test_shutdown_closes_every_connection(serve) -> None:
    server = serve()
    port = server.server_port
    idle = [connect(port) for _ in range(5)]
    reader = connect(port)
    reader.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
    time.sleep(0.2)
    server.shutdown()
    server.server_close()
    for sock in [*idle, reader]:
        assert closed_by_server(sock)
        sock.close()
    with pytest.raises(OSError):
        connect(port, timeout=2).close()


def test_the_selectors_fallback_serves_too(serve, monkeypatch) -> None:
    """Where there is no epoll (not Linux), the loop runs over `selectors`."""
    from exporter.serve import httpserver

    monkeypatch.setattr(httpserver, "_EpollPoller", httpserver._SelectorPoller)
    server = serve(max_connections=2)
    assert isinstance(server._poller, httpserver._SelectorPoller)
    port = server.server_port
    assert get(port, "/healthz").body == b"ok\n"
    gzipped = get(port, "/metrics", **{"Accept-Encoding": "gzip"})
    assert b"demo_value 3.0" in gzip.decompress(gzipped.body)
    with connect(port) as sock:
        sock.sendall(request_with_head_of(MAX_HEAD_BYTES + 1))
        assert read_answer(sock)[0] == "HTTP/1.1 431 Request Header Fields Too Large"


def test_a_stalled_tls_handshake_and_a_client_that_stops_reading_are_dropped(
    serve, tmp_path
) -> None:
    cert, key = make_certificate(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    port = serve(tls=context, idle_timeout=1).server_port
    with connect(port) as stalled:
        stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and no more
        assert closed_by_server(stalled)

    big = tmp_path / "big"
    with big.open("wb") as file:
        file.truncate(256 * 1024 * 1024)  # sparse: more than any socket buffer holds

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(big.stat().st_size))])
        return environ["wsgi.file_wrapper"](big.open("rb"))

    app.runs_inline = lambda environ: True
    port = serve(app, idle_timeout=1).server_port
    with connect(port) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(3)  # read nothing for longer than the timeout
        received = 0
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 256 * 1024 * 1024, "the whole body was sent to a client that stalled"
