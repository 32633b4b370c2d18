"""Which HTTP server can serve a cached /metrics body nearly as fast as nginx? A measurement.

Every candidate serves the same pre-built gzip body on `GET /metrics` (the body as bytes in
memory, headers as the exporter sends them), in its own process on loopback; nginx serves the
same bytes from a file with `gzip_static on`. For each body size, each server gets an untimed
warm-up, then `--scrapes` sequential scrapes on a fresh connection each (as bench/benchmark.py
times them: connect, send, read the whole body), then `--cpu-scrapes` more for the CPU figure
(utime + stime of the server's processes from /proc, idle rate subtracted), then a burst of
`--burst` simultaneous connections (each scrapes once; the time until the last one was
answered, and how many were not answered within 10 s).

    python -m bench.candidates                        # every candidate that is installed
    python -m bench.candidates --only nginx,uvicorn --sizes 194000

Candidates whose package is missing are skipped with a note. This measures servers, not the
exporter; the exporter's own figures come from bench/benchmark.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BACKLOG = 1024


# -- the servers (each runs in a child: `python -m bench.candidates serve NAME PORT BODY`) ---


def _wsgi_app(body: bytes) -> Callable:
    headers = [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
    ]

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response("200 OK", list(headers))
        return [body]

    return app


def _asgi_app(body: bytes) -> Callable:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    message = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send(message)

    return app


def serve_wsgiref(port: int, body: bytes) -> None:
    """What the exporter used before: wsgiref's server with a thread per request."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    make_server("127.0.0.1", port, _wsgi_app(body), Server, Quiet).serve_forever(0.1)


def serve_exporter(port: int, body: bytes) -> None:
    """The exporter's own server (exporter/serve/httpserver.py): the body as a memfd, sendfile()."""
    from exporter.config import ListenAddress
    from exporter.serve.httpserver import start_http_server
    from exporter.serve.render import BodyFile

    file = BodyFile.create([body])
    assert file is not None
    headers = [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
    ]

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response("200 OK", list(headers))
        return environ["wsgi.file_wrapper"](file.reader())

    app.runs_inline = lambda environ: True  # type: ignore[attr-defined]
    start_http_server(ListenAddress("127.0.0.1", port), app)
    threading.Event().wait()


def serve_waitress(port: int, body: bytes) -> None:
    import waitress

    waitress.serve(
        _wsgi_app(body), host="127.0.0.1", port=port, threads=4, backlog=BACKLOG, _quiet=True
    )


def serve_cheroot(port: int, body: bytes) -> None:
    from cheroot import wsgi

    server = wsgi.Server(
        ("127.0.0.1", port), _wsgi_app(body), numthreads=8, request_queue_size=BACKLOG
    )
    server.start()


def _uvicorn(port: int, body: bytes, loop: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        _asgi_app(body),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop=loop,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=BACKLOG,
    )
    uvicorn.Server(config).run()


def serve_uvicorn(port: int, body: bytes) -> None:
    _uvicorn(port, body, "asyncio")


def serve_uvicorn_uvloop(port: int, body: bytes) -> None:
    _uvicorn(port, body, "uvloop")


def serve_granian(port: int, body: bytes) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    headers = [
        ("content-type", CONTENT_TYPE),
        ("content-encoding", "gzip"),
        ("content-length", str(len(body))),
    ]

    async def app(scope, protocol):
        if scope.path != "/metrics":
            protocol.response_empty(404, [])
            return
        protocol.response_bytes(200, headers, body)

    server = Server(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.RSGI,
        backlog=BACKLOG,
        log_enabled=False,
        websockets=False,
    )
    asyncio.run(server.serve())


def _httptools_protocol(body: bytes) -> type[asyncio.Protocol]:
    """A minimal asyncio protocol on httptools (llhttp): the floor of an asyncio server."""
    import httptools

    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_message_complete(self) -> None:
            path = httptools.parse_url(self.url).path
            if path == b"/metrics":
                self.transport.writelines((response, body))
            else:
                self.transport.write(missing)
            self.url = b""
            if not self.parser.should_keep_alive():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

    return Protocol


def _serve_httptools(port: int, body: bytes, loop_factory: Callable) -> None:
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    protocol = _httptools_protocol(body)
    server = loop.run_until_complete(
        loop.create_server(protocol, "127.0.0.1", port, backlog=BACKLOG)
    )
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_until_complete(server.serve_forever())


def serve_httptools(port: int, body: bytes) -> None:
    _serve_httptools(port, body, asyncio.new_event_loop)


def serve_httptools_uvloop(port: int, body: bytes) -> None:
    import uvloop

    _serve_httptools(port, body, uvloop.new_event_loop)


def serve_sendfile_uvloop(port: int, body: bytes) -> None:
    """Raw non-blocking sockets on uvloop: httptools parses, os.sendfile sends from a memfd."""
    import httptools
    import uvloop

    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    memfd = os.memfd_create("body")
    os.write(memfd, body)
    loop = uvloop.new_event_loop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(BACKLOG)
    listener.setblocking(False)

    class Connection:
        def __init__(self, sock: socket.socket) -> None:
            self.sock, self.fd = sock, sock.fileno()
            self.parser = httptools.HttpRequestParser(self)
            self.offset = 0

        def on_message_complete(self) -> None:
            loop.remove_reader(self.fd)
            self.sock.send(head)
            self.pump()

        def pump(self) -> None:
            try:
                while self.offset < len(body):
                    self.offset += os.sendfile(self.fd, memfd, self.offset, len(body) - self.offset)
            except BlockingIOError:
                loop.add_writer(self.fd, self.resume)
                return
            self.sock.close()

        def resume(self) -> None:
            loop.remove_writer(self.fd)
            self.pump()

        def readable(self) -> None:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(self.fd)
                self.sock.close()
                return
            self.parser.feed_data(data)

    def accept() -> None:
        for _ in range(64):
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            connection = Connection(sock)
            loop.add_reader(connection.fd, connection.readable)

    loop.add_reader(listener.fileno(), accept)
    loop.run_forever()


@dataclass(frozen=True)
class Candidate:
    name: str
    needs: tuple[str, ...]
    what: str
    serve: Callable[[int, bytes], None] | None = None


CANDIDATES = (
    Candidate("nginx", (), "Debian's nginx, gzip_static on, sendfile on, 1 worker"),
    Candidate(
        "wsgiref", (), "the standard library's WSGI server, a thread per request", serve_wsgiref
    ),
    Candidate(
        "exporter",
        ("httptools",),
        "exporter/serve/httpserver.py: epoll loop, httptools, sendfile() from a memfd (WSGI)",
        serve_exporter,
    ),
    Candidate("waitress", ("waitress",), "waitress, pure Python, 4 threads", serve_waitress),
    Candidate("cheroot", ("cheroot",), "cheroot, pure Python, 8 threads", serve_cheroot),
    Candidate(
        "uvicorn",
        ("uvicorn", "httptools"),
        "uvicorn, httptools parser, asyncio loop (ASGI)",
        serve_uvicorn,
    ),
    Candidate(
        "uvicorn-uvloop",
        ("uvicorn", "httptools", "uvloop"),
        "uvicorn, httptools parser, uvloop (ASGI)",
        serve_uvicorn_uvloop,
    ),
    Candidate(
        "granian",
        ("granian",),
        "granian embedded server (Rust hyper core), RSGI response_bytes",
        serve_granian,
    ),
    Candidate(
        "httptools",
        ("httptools",),
        "a bare asyncio protocol on httptools, asyncio loop (no bounds: the floor)",
        serve_httptools,
    ),
    Candidate(
        "httptools-uvloop",
        ("httptools", "uvloop"),
        "a bare asyncio protocol on httptools, uvloop (no bounds: the floor)",
        serve_httptools_uvloop,
    ),
    Candidate(
        "sendfile-uvloop",
        ("httptools", "uvloop"),
        "raw sockets on uvloop, httptools, os.sendfile from a memfd (no bounds: the floor)",
        serve_sendfile_uvloop,
    ),
)
BY_NAME = {c.name: c for c in CANDIDATES}


# -- measuring ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its direct children."""
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    total = 0
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def scrape(port: int, path: str = "/metrics", timeout: float = 10) -> float:
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        response.read()
        took = time.perf_counter() - began
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return took


def burst(port: int, count: int, path: str = "/metrics", timeout: float = 10) -> tuple[float, int]:
    """`count` connections opened at once, each scraping once: (seconds to the last, failed)."""
    barrier = threading.Barrier(count)
    failed = [0]
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            scrape(port, path, timeout)
        except (OSError, RuntimeError, http.client.HTTPException):
            with lock:
                failed[0] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return time.perf_counter() - began, failed[0]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ }}
    default_type "{content_type}";
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        root {root};
        gzip_static on;
        location = /metrics {{ try_files /metrics.txt =404; }}
    }}
}}
"""


def start_nginx(port: int, body: bytes, prefix: Path) -> subprocess.Popen:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    root = prefix / "root"
    root.mkdir(parents=True)
    (root / "metrics.txt").write_bytes(b"")  # gzip_static serves the .gz; the plain is unused
    (root / "metrics.txt.gz").write_bytes(body)
    # The worker runs as nobody when nginx is started as root: every directory on the way in
    # must be searchable (a temporary directory is created 0700).
    for path in (prefix.parent, prefix, root, root / "metrics.txt", root / "metrics.txt.gz"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            prefix=prefix, port=port, root=root, backlog=BACKLOG, content_type=CONTENT_TYPE
        )
    )
    return subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError("not listening")


@dataclass
class Figures:
    name: str
    size: int
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    burst_s: float
    burst_failed: int


def measure(name: str, size: int, body_path: Path, options: argparse.Namespace) -> Figures:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="candidates-") as tmp:
        if name == "nginx":
            process = start_nginx(port, body_path.read_bytes(), Path(tmp) / "nginx")
        else:
            argv = [sys.executable, "-m", "bench.candidates", "serve", name, str(port)]
            process = subprocess.Popen(
                [*argv, str(body_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        try:
            wait_listening(port, process)
            for _ in range(20):
                scrape(port)
            times = [scrape(port) for _ in range(options.scrapes)]
            time.sleep(0.5)
            idle_began, idle_cpu = time.monotonic(), tree_cpu_seconds(process.pid)
            time.sleep(1.0)
            idle_rate = (tree_cpu_seconds(process.pid) - idle_cpu) / (time.monotonic() - idle_began)
            began, cpu = time.monotonic(), tree_cpu_seconds(process.pid)
            for _ in range(options.cpu_scrapes):
                scrape(port)
            busy = tree_cpu_seconds(process.pid) - cpu - idle_rate * (time.monotonic() - began)
            burst_s, burst_failed = burst(port, options.burst)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return Figures(
        name,
        size,
        percentile(times, 50) * 1000,
        percentile(times, 99) * 1000,
        max(0.0, busy) / options.cpu_scrapes * 1000,
        burst_s,
        burst_failed,
    )


def available(candidate: Candidate) -> str | None:
    """None when the candidate can run here, else why not."""
    if candidate.name == "nginx":
        return None if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else "no nginx"
    missing = [name for name in candidate.needs if importlib.util.find_spec(name) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        name, port, body = argv[1], int(argv[2]), Path(argv[3]).read_bytes()
        serve = BY_NAME[name].serve
        assert serve is not None
        with contextlib.suppress(KeyboardInterrupt):
            serve(port, body)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated candidate names")
    parser.add_argument(
        "--sizes",
        default="194000,755000",
        help="gzip body sizes in bytes (default: the exporter's at 10k and 100k series)",
    )
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--cpu-scrapes", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=500)
    options = parser.parse_args(argv)
    names = options.only.split(",") if options.only else [c.name for c in CANDIDATES]
    sizes = [int(s) for s in options.sizes.split(",")]
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="candidates-bodies-") as tmp:
        for size in sizes:
            # Random bytes: as incompressible as a gzip body, and the server never looks inside.
            body_path = Path(tmp) / f"body-{size}"
            body_path.write_bytes(random.Random(size).randbytes(size))
            for name in names:
                why = available(BY_NAME[name])
                if why:
                    print(f"skip {name}: {why}", file=sys.stderr)
                    continue
                figures = measure(name, size, body_path, options)
                print(
                    f"{name:18} {size:>8} B  p50 {figures.p50_ms:6.3f} ms  p99 "
                    f"{figures.p99_ms:6.3f} ms  CPU {figures.cpu_ms:6.3f} ms/scrape  "
                    f"{options.burst} at once: {figures.burst_s:5.2f} s, "
                    f"{figures.burst_failed} failed",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(figures)
    nginx = {r.size: r for r in rows if r.name == "nginx"}
    print(
        "| server | what | gzip body | p50 ms | p99 ms | CPU/scrape ms | p50 / nginx | "
        f"CPU / nginx | {options.burst} at once s (failed) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = nginx.get(r.size)
        p50_ratio = f"{r.p50_ms / base.p50_ms:.2f}" if base else "-"
        cpu_ratio = f"{r.cpu_ms / base.cpu_ms:.2f}" if base and base.cpu_ms > 0 else "-"
        print(
            f"| {r.name} | {BY_NAME[r.name].what} | {r.size / 1000:.0f} kB | {r.p50_ms:.3f} | "
            f"{r.p99_ms:.3f} | {r.cpu_ms:.3f} | {p50_ratio} | {cpu_ratio} | "
            f"{r.burst_s:.2f} ({r.burst_failed}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
