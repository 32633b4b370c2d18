"""The HTTP server under the exporter's WSGI app: event-driven, bounded, sendfile() for /metrics.

One thread runs an event loop over non-blocking sockets (epoll on Linux, else `selectors`), in the
way nginx serves files: requests are parsed by httptools (llhttp, Node.js's HTTP parser, in C),
and a WSGI body handed over through `wsgi.file_wrapper` goes out with `os.sendfile()`, so the
cached gzip body of /metrics is never copied through Python. Requests that the app says are
cheap (`app.runs_inline(environ)`: a cached /metrics body, /healthz, ...) are answered on the
loop thread; every other request (a reload, a bcrypt check, a body inflated for a scraper that
does not take gzip) runs on a small pool of worker threads, and its body is pulled from the
worker one piece at a time, only as fast as the client reads it.

Bounds, each with an answer a client can understand:

- listen backlog `BACKLOG` (1024), so a burst of scrapes is queued by the kernel, not dropped;
- request line plus headers at most `MAX_HEAD_BYTES` (64 KiB): beyond, 431 and the connection
  is closed (nothing more of it is read into memory); a request body (only `POST /-/reload`
  takes one, and ignores it) at most `MAX_BODY_BYTES`: beyond, 413;
- at most `MAX_CONNECTIONS` open connections: a connection past it is answered 503 with
  `Retry-After: 1` and closed (on a TLS port it is closed at once: an answer would need a
  handshake);
- a connection that has not completed its request (TLS handshake included) or sits idle between
  requests for `IDLE_TIMEOUT` (30 s), or a client that reads nothing of its answer for as long,
  is closed;
- with TLS, a client that speaks plain HTTP to the port gets a plain-text 400 (the first byte of
  a TLS connection is 0x16; anything else is answered as HTTP and closed);
- `shutdown()` closes the listening socket and every connection and returns within a second.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import errno
import logging
import os
import queue
import resource
import select
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from exporter.config import ListenAddress

log = logging.getLogger(__name__)

BACKLOG = 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_CONNECTIONS = 1024
IDLE_TIMEOUT = 30.0
WORKERS = 2
LINGER_SECONDS = 2.0
"""After an error answer, how long the rest of what the client sends is read and dropped, so
that closing does not reset the connection before the client has read the answer."""
RECV_BYTES = 64 * 1024
SEND_CHUNK = 256 * 1024
"""Bytes of a file body sent per sendfile() call (per read for TLS), and the amount of a body
pulled from a worker that may wait in a connection's buffer."""
SWEEP_SECONDS = 0.5
"""How often deadlines are checked while connections are open."""

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FileWrapper:
    """`wsgi.file_wrapper`: a file body that the server sends with sendfile() from its current
    position to its end. Iterating it reads the file (for any other server)."""

    def __init__(self, filelike: Any, block_size: int = SEND_CHUNK) -> None:
        self.filelike = filelike
        self.block_size = block_size
        self.region: tuple[int, int, int] | None = None

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.filelike.read(self.block_size)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _EpollPoller:
    """epoll, called directly: the loop's own overhead is a large part of a scrape's CPU."""

    FORGETS_CLOSED = True
    """epoll drops a descriptor when it is closed: no unregister() call needed."""

    def __init__(self) -> None:
        self.READ = select.EPOLLIN
        self.WRITE = select.EPOLLOUT
        trouble = select.EPOLLERR | select.EPOLLHUP
        self.READ_MASK = self.READ | trouble
        self.WRITE_MASK = self.WRITE | trouble
        self._epoll = select.epoll()
        self.register = self._epoll.register
        self.modify = self._epoll.modify
        self.unregister = self._epoll.unregister
        self.close = self._epoll.close

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout)


class _SelectorPoller:
    """The same over `selectors`, where there is no epoll."""

    FORGETS_CLOSED = False

    def __init__(self) -> None:
        self.READ = self.READ_MASK = selectors.EVENT_READ
        self.WRITE = self.WRITE_MASK = selectors.EVENT_WRITE
        self._selector = selectors.DefaultSelector()
        self.close = self._selector.close

    def register(self, fd: int, events: int) -> None:
        self._selector.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._selector.select(timeout)]


class _TooLarge(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _plain_answer(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


_OVERLOADED = _plain_answer(
    "503 Service Unavailable", "too many open connections\n", "Retry-After: 1\r\n"
)
_PLAIN_ON_TLS = _plain_answer(
    "400 Bad Request", "Client sent an HTTP request to an HTTPS server.\n"
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Request:
    __slots__ = (
        "body",
        "body_bytes",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.expect_continue = False


class _Connection:
    """One client connection, driven by the loop thread only."""

    __slots__ = (
        "began",
        "body_iter",
        "busy",
        "chunked",
        "closed",
        "closing_after",
        "current",
        "deadline",
        "events",
        "fd",
        "head_bytes",
        "head_open",
        "out",
        "out_bytes",
        "parser",
        "peer",
        "pulling",
        "ready",
        "result",
        "server",
        "sock",
        "state",
        "tls",
    )

    def __init__(self, server: HTTPServer, sock: socket.socket, peer: Any) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.tls = False
        self.state = "peek" if server.tls is not None else "read"
        self.deadline = time.monotonic() + server.idle_timeout
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.ready: collections.deque[_Request] = collections.deque()
        self.head_open = True
        self.head_bytes = 0
        self.began = False
        self.busy = False  # a response is being produced or sent
        self.out: collections.deque[Any] = collections.deque()  # bytes, memoryview or file region
        self.out_bytes = 0
        self.body_iter: Iterator[bytes] | None = None
        self.result: Any = None  # what the app returned, closed when the body is done
        self.chunked = False
        self.pulling = False  # a worker is producing the next piece of body_iter
        self.closing_after = False  # close once `out` is sent
        self.events = 0  # what the selector watches for (0: not registered)
        self.closed = False

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.began = True

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        assert request is not None
        request.headers.append((name, value))
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            request.expect_continue = True

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None
        self.head_open = False
        self.head_bytes = 0
        request.method = self.parser.get_method()
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        request = self.current
        assert request is not None
        request.body_bytes += len(body)
        if request.body_bytes > MAX_BODY_BYTES:
            raise _TooLarge("413 Content Too Large", "request body too large\n")
        request.body.append(body)

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.ready.append(self.current)
        self.current = None
        self.head_open = True
        self.head_bytes = 0

    # -- reading ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse `data`, never more than MAX_HEAD_BYTES of one request's head."""
        if self.head_open and self.head_bytes + len(data) <= self.server.max_head_bytes:
            # The common case: a whole request head in one read, well within the limit.
            self.began = False
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as error:
                cause = error.__context__
                if isinstance(cause, _TooLarge):
                    raise cause from None
                raise
            if self.head_open:
                self.head_bytes = len(data) if self.began else self.head_bytes + len(data)
            return
        view = memoryview(data)
        while view:
            if self.head_open:
                room = self.server.max_head_bytes - self.head_bytes
                if room <= 0:
                    raise _TooLarge(
                        "431 Request Header Fields Too Large",
                        f"request line and headers over {self.server.max_head_bytes} bytes\n",
                    )
                piece, view = view[:room], view[room:]
            else:
                piece, view = view, view[:0]
            self.began = False
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserCallbackError as error:
                cause = error.__context__
                if isinstance(cause, _TooLarge):
                    raise cause from None
                raise
            if self.head_open:
                # Counted generously: a head that began inside this piece is charged the whole
                # piece (only pipelined requests share a piece).
                self.head_bytes = len(piece) if self.began else self.head_bytes + len(piece)


class HTTPServer:
    """Serve `app` on `address`; see the module docstring. `start()` runs the loop thread."""

    def __init__(
        self,
        address: ListenAddress,
        app: WSGIApp,
        tls: ssl.SSLContext | None = None,
        *,
        backlog: int = BACKLOG,
        max_connections: int = MAX_CONNECTIONS,
        max_head_bytes: int = MAX_HEAD_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        workers: int = WORKERS,
    ) -> None:
        self.app = app
        self.tls = tls
        self.max_connections = max_connections
        self.max_head_bytes = max_head_bytes
        self.idle_timeout = idle_timeout
        self.backlog = backlog
        _raise_file_limit(max_connections * 2 + 64)
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((address.host, address.port))
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self._family = family
        self.server_address = self.socket.getsockname()[:2]
        self.server_port = int(self.server_address[1])
        self._inline = getattr(app, "runs_inline", None)
        self._poller = _EpollPoller() if hasattr(select, "epoll") else _SelectorPoller()
        self._targets: dict[int, Any] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._connections: dict[int, _Connection] = {}
        self._lingering = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"http-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        self._accept_paused_until = 0.0
        self._closed = False
        self._date = (0, "")
        self._environ_base: dict[str, Any] = {
            "SERVER_NAME": str(address.host or "0.0.0.0"),
            "SERVER_PORT": str(self.server_port),
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if tls is not None else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> HTTPServer:
        for worker in self._workers:
            worker.start()
        self._targets[self._wake_r.fileno()] = None
        self._targets[self.socket.fileno()] = self
        self._poller.register(self._wake_r.fileno(), self._poller.READ)
        self._poller.register(self.socket.fileno(), self._poller.READ)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving: close the listening socket and every connection (within a second)."""
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        for _ in self._workers:
            self._jobs.put(None)

    def server_close(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._close_everything()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self._calls.append(callback)
        self._wake()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: we are closing.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must not leave a port that accepts and never answers
            log.exception("the HTTP server's loop failed")
        finally:
            self._close_everything()

    def _loop(self) -> None:
        poll = self._poller.poll
        targets = self._targets
        next_sweep = 0.0
        while not self._stopping:
            timeout = SWEEP_SECONDS if self._connections or self._accept_paused_until else None
            for fd, mask in poll(timeout):
                target = targets.get(fd, False)
                if target is False:
                    continue
                if target is None:
                    self._drain_wake()
                elif target is self:
                    self._accept()
                elif not target.closed:
                    self._ready(target, mask)
            while self._calls:
                self._calls.popleft()()
            now = time.monotonic()
            if now >= next_sweep and (self._connections or self._accept_paused_until):
                next_sweep = now + SWEEP_SECONDS
                self._sweep(now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close_everything(self) -> None:
        if self._closed:
            return
        self._closed = True
        for connection in list(self._connections.values()):
            self._close(connection)
        for sock in (self.socket, self._wake_r, self._wake_w):
            sock.close()
        self._poller.close()

    def _sweep(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._poller.register(self.socket.fileno(), self._poller.READ)
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            if connection.state != "linger":
                log.debug("closing an idle or stalled connection from %s", connection.peer)
            self._close(connection)

    # -- accepting ---------------------------------------------------------------------------

    def _accept(self) -> None:
        # One per wake-up: the listening socket stays readable while more wait (level-triggered),
        # and the common case then costs no failed accept().
        for _ in range(1):
            try:
                sock, peer = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment instead of spinning.
                    log.warning("cannot accept a connection: %s", error.strerror)
                    self._poller.unregister(self.socket.fileno())
                    self._accept_paused_until = time.monotonic() + 0.5
                    return
                if error.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            sock.setblocking(False)
            connection = _Connection(self, sock, peer)
            over = len(self._connections) - self._lingering >= self.max_connections
            if over:
                if self.tls is not None or self._lingering >= self.max_connections:
                    sock.close()
                    continue
                self._register(connection, self._poller.READ)
                self._linger(connection, _OVERLOADED)
                continue
            if self.tls is None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._register(connection, self._poller.READ)

    def _register(self, connection: _Connection, events: int) -> None:
        self._connections[connection.fd] = connection
        self._want(connection, events)

    def _want(self, connection: _Connection, events: int) -> None:
        """Watch the connection for `events`; 0 while it waits for a worker (a client that
        sends more meanwhile must not make the loop spin)."""
        if connection.closed or events == connection.events:
            return
        if not connection.events:
            self._poller.register(connection.fd, events)
            self._targets[connection.fd] = connection
        elif not events:
            self._poller.unregister(connection.fd)
        else:
            self._poller.modify(connection.fd, events)
        connection.events = events

    def _close(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        if connection.state == "linger":
            self._lingering -= 1
        self._connections.pop(connection.fd, None)
        if self._targets.get(connection.fd) is connection:
            del self._targets[connection.fd]
        if connection.events and not self._poller.FORGETS_CLOSED:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(connection.fd)
        connection.events = 0
        with contextlib.suppress(OSError):
            connection.sock.close()
        result, connection.result = connection.result, None
        connection.body_iter = None
        connection.out.clear()
        if result is not None and not connection.pulling:
            self._jobs.put(lambda: self._close_iterator(result))

    def _close_iterator(self, iterator: Any) -> None:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.debug("closing a response body failed", exc_info=True)

    # -- events ------------------------------------------------------------------------------

    def _ready(self, connection: _Connection, mask: int) -> None:
        try:
            state = connection.state
            if state == "peek":
                self._peek(connection)
            elif state == "handshake":
                self._handshake(connection)
            elif state == "linger":
                self._discard(connection)
            else:
                if mask & self._poller.WRITE_MASK:
                    self._flush(connection)
                if mask & self._poller.READ_MASK and not connection.closed:
                    self._read(connection)
        except (ConnectionError, ssl.SSLError, OSError) as error:
            log.debug("connection from %s failed: %s", connection.peer, error)
            self._close(connection)

    def _peek(self, connection: _Connection) -> None:
        first = connection.sock.recv(1, socket.MSG_PEEK)
        if not first:
            self._close(connection)
        elif first == b"\x16":  # a TLS record: a handshake
            assert self.tls is not None
            connection.sock = self.tls.wrap_socket(
                connection.sock, server_side=True, do_handshake_on_connect=False
            )
            connection.tls = True
            connection.state = "handshake"
            self._handshake(connection)
        else:
            self._linger(connection, _PLAIN_ON_TLS)

    def _handshake(self, connection: _Connection) -> None:
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(connection, self._poller.READ)
            return
        except ssl.SSLWantWriteError:
            self._want(connection, self._poller.WRITE)
            return
        connection.state = "read"
        self._want(connection, self._poller.READ)
        if sock.pending():
            self._read(connection)

    def _discard(self, connection: _Connection) -> None:
        if connection.out:
            self._flush(connection)
            return
        try:
            data = connection.sock.recv(RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        if not data:
            self._close(connection)

    def _linger(self, connection: _Connection, answer: bytes) -> None:
        """Send `answer`, stop sending, drop what the client still sends for a while, close."""
        if connection.state != "linger":
            self._lingering += 1
        connection.state = "linger"
        connection.deadline = time.monotonic() + LINGER_SECONDS
        connection.ready.clear()
        connection.closing_after = True
        self._queue(connection, answer)
        self._flush(connection)

    def _read(self, connection: _Connection) -> None:
        while True:
            if connection.busy or connection.ready:
                return  # one request at a time; what is left waits in the kernel's buffer
            try:
                data = connection.sock.recv(RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                self._want(connection, self._poller.WRITE)
                return
            if not data:
                self._close(connection)
                return
            try:
                connection.feed(data)
            except _TooLarge as error:
                log.debug("%s from %s", error.status, connection.peer)
                self._linger(connection, _plain_answer(error.status, str(error)))
                return
            except httptools.HttpParserUpgrade:
                if not connection.ready:
                    self._linger(connection, _plain_answer("400 Bad Request", "bad request\n"))
                    return
                for queued in connection.ready:
                    queued.keep_alive = False
            except httptools.HttpParserError:
                self._linger(connection, _plain_answer("400 Bad Request", "bad request\n"))
                return
            request = connection.current
            if request is not None and request.expect_continue and not connection.head_open:
                request.expect_continue = False
                self._queue(connection, _CONTINUE)
                self._flush(connection)
            if connection.ready:
                self._next_request(connection)
                return
            if not isinstance(connection.sock, ssl.SSLSocket) or not connection.sock.pending():
                return

    # -- answering ---------------------------------------------------------------------------

    def _environ(self, connection: _Connection, request: _Request) -> dict[str, Any]:
        url = request.url
        if url.startswith(b"/"):
            path, _, query = url.partition(b"?")
            path = path.partition(b"#")[0]
        else:  # absolute form (http://host/path), or `*`
            parsed = httptools.parse_url(url)
            path, query = parsed.path or b"/", parsed.query or b""
        environ = self._environ_base.copy()
        environ["REQUEST_METHOD"] = request.method.decode("latin-1")
        environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
        peer = connection.peer
        environ["REMOTE_ADDR"] = peer[0] if isinstance(peer, tuple) else ""
        environ["wsgi.input"] = BytesIO(b"".join(request.body))
        environ["CONTENT_LENGTH"] = str(request.body_bytes) if request.body_bytes else ""
        keys = _HEADER_KEYS
        for name, value in request.headers:
            key = keys.get(name)
            if key is None:
                key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
                if len(keys) < 256:
                    keys[name] = key
            if key == "HTTP_CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value.decode("latin-1")
                continue
            if key == "HTTP_CONTENT_LENGTH":
                continue
            text = value.decode("latin-1")
            environ[key] = environ[key] + "," + text if key in environ else text
        if connection.tls:
            environ["HTTPS"] = "on"
        return environ

    def _next_request(self, connection: _Connection) -> None:
        if connection.closed or connection.busy or not connection.ready:
            return
        request = connection.ready.popleft()
        connection.busy = True
        connection.deadline = time.monotonic() + self.idle_timeout
        try:
            environ = self._environ(connection, request)
        except (ValueError, UnicodeError, httptools.HttpParserError):
            self._linger(connection, _plain_answer("400 Bad Request", "bad request\n"))
            return
        try:
            inline = self._inline is not None and bool(self._inline(environ))
        except Exception:
            log.exception("runs_inline failed")
            inline = False
        if inline:
            self._respond(connection, request, *self._call_app(environ))
            return
        self._want(connection, 0)
        server = self

        def job() -> None:
            outcome = server._call_app(environ)
            server.call_soon_threadsafe(lambda: server._respond(connection, request, *outcome))

        self._jobs.put(job)

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], Any, Any]:
        """Run the app: (status, headers, first pieces or a file, the rest as an iterator)."""
        answer: list[Any] = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            if exc_info is not None and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer[:] = [status, headers]
            return _no_write

        try:
            result = self.app(environ, start_response)
            if isinstance(result, FileWrapper):
                result.region = _file_region(result)
                if result.region is not None:
                    return answer[0], answer[1], result, None
            if isinstance(result, (list, tuple)):
                return answer[0], answer[1], list(result), None
            iterator = iter(result)
            first = next(iterator, None)
            pieces = [] if first is None else [first]
            if first is None:
                self._close_iterator(result)
                return answer[0], answer[1], pieces, None
            return answer[0], answer[1], pieces, (result, iterator)
        except Exception:
            log.exception("the request for %s failed", environ.get("PATH_INFO"))
            body = b"internal server error\n"
            return (
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
                [body],
                None,
            )

    def _date_header(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def _respond(
        self,
        connection: _Connection,
        request: _Request,
        status: str,
        headers: list[tuple[str, str]],
        body: Any,
        rest: Any,
    ) -> None:
        if connection.closed:
            if rest is not None:
                self._jobs.put(lambda: self._close_iterator(rest[0]))
            elif isinstance(body, FileWrapper):
                body.close()
            return
        head_only = request.method == b"HEAD"
        keep_alive = request.keep_alive and not self._stopping
        length = None
        lines = ["HTTP/1.1 ", status, "\r\n"]
        for name, value in headers:
            if length is None and name.lower() == "content-length":
                length = int(value)
            lines += [name, ": ", value, "\r\n"]
        region = body.region if isinstance(body, FileWrapper) else None
        given = length is not None
        if length is None:
            if region is not None:
                length = region[2]
            elif rest is None:
                length = sum(map(len, body))
        chunked = length is None and request.version == "1.1" and not head_only
        if length is not None:
            if not given:
                lines += ["Content-Length: ", str(length), "\r\n"]
        elif chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            keep_alive = False  # an HTTP/1.0 body of unknown length ends with the connection
        lines += ["Date: ", self._date_header(), "\r\n"]
        if not keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        connection.closing_after = not keep_alive
        if region is not None and not head_only and not connection.tls and not connection.out:
            self._send_file(connection, head, region, body)
            return
        self._queue(connection, head)
        if head_only:
            if rest is not None:
                self._jobs.put(lambda: self._close_iterator(rest[0]))
            elif region is not None:
                body.close()
        elif region is not None:
            connection.out.append((*region, body))
            connection.out_bytes += region[2]
        else:
            for piece in body:
                if piece:
                    self._queue(connection, _chunk(piece) if chunked else piece)
            if rest is not None:
                connection.result, connection.body_iter = rest
                connection.chunked = chunked
            elif chunked:
                self._queue(connection, b"0\r\n\r\n")
        self._flush(connection)

    def _send_file(
        self, connection: _Connection, head: bytes, region: tuple[int, int, int], body: Any
    ) -> None:
        """The common answer, a head and a file body on a plain connection, sent straight away;
        what the socket does not take at once goes through `_flush`."""
        fd, offset, count = region
        sock = connection.sock
        try:
            sent = sock.send(head, _MSG_MORE)
        except BlockingIOError:
            sent = 0
        if sent < len(head):
            self._queue(connection, head[sent:])
        else:
            try:
                sent = os.sendfile(connection.fd, fd, offset, count) if count else 0
            except BlockingIOError:
                sent = 0
            if sent >= count:
                body.close()
                self._complete(connection)
                return
            offset, count = offset + sent, count - sent
        connection.out.append((fd, offset, count, body))
        connection.out_bytes += count
        self._flush(connection)

    def _complete(self, connection: _Connection) -> None:
        """The answer is sent: close, or wait for the next request."""
        connection.busy = False
        connection.result = None
        if connection.closing_after:
            self._close(connection)
            return
        connection.deadline = time.monotonic() + self.idle_timeout
        if connection.events != self._poller.READ:
            self._want(connection, self._poller.READ)
        if connection.ready or connection.tls:
            # Later in this turn of the loop, not from here: pipelined requests must not recurse.
            self._calls.append(lambda: self._resume(connection))

    def _queue(self, connection: _Connection, data: bytes) -> None:
        connection.out.append(memoryview(data))
        connection.out_bytes += len(data)

    def _flush(self, connection: _Connection) -> None:
        """Send what is queued; then pull more body, take the next request, or close."""
        sock = connection.sock
        out = connection.out
        while out:
            item = out[0]
            try:
                if isinstance(item, memoryview):
                    # MSG_MORE: the head waits for the body's first bytes (one packet, not two).
                    more = _MSG_MORE if len(out) > 1 and not connection.tls else 0
                    sent = sock.send(item, more)
                    if sent < len(item):
                        out[0] = item[sent:]
                    else:
                        out.popleft()
                else:
                    fd, offset, count, _ = item
                    if connection.tls:
                        sent = sock.send(os.pread(fd, min(count, SEND_CHUNK), offset))
                    else:
                        sent = os.sendfile(connection.fd, fd, offset, count)
                    if sent <= 0:
                        raise ConnectionError("sendfile sent nothing")
                    if sent < count:
                        out[0] = (fd, offset + sent, count - sent, item[3])
                    else:
                        out.popleft()
                        item[3].close()
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._want(connection, self._poller.WRITE)
                return
            except ssl.SSLWantReadError:
                self._want(connection, self._poller.READ)
                return
            connection.out_bytes -= sent
            connection.deadline = time.monotonic() + (
                LINGER_SECONDS if connection.state == "linger" else self.idle_timeout
            )
        if connection.state == "linger":
            self._want(connection, self._poller.READ)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(connection)
            return
        if connection.body_iter is not None:
            self._want(connection, 0)
            if not connection.pulling:
                self._pull(connection)
            return
        if not connection.busy:
            self._want(connection, self._poller.READ)
            return
        self._complete(connection)

    def _resume(self, connection: _Connection) -> None:
        if connection.closed or connection.busy:
            return
        if connection.ready:
            self._next_request(connection)
        elif isinstance(connection.sock, ssl.SSLSocket) and connection.sock.pending():
            self._read(connection)  # decrypted bytes that the poller cannot see

    def _pull(self, connection: _Connection) -> None:
        """Have a worker produce the next pieces of a streamed body (up to SEND_CHUNK)."""
        iterator = connection.body_iter
        assert iterator is not None
        connection.pulling = True
        chunked, result = connection.chunked, connection.result

        def job() -> None:
            pieces: list[bytes] = []
            size = 0
            done = False
            try:
                while size < SEND_CHUNK:
                    piece = next(iterator, None)
                    if piece is None:
                        done = True
                        break
                    if piece:
                        pieces.append(piece)
                        size += len(piece)
            except Exception:
                log.exception("producing a response body failed")
                done = True
                pieces = []
                self.call_soon_threadsafe(lambda: self._close(connection))
            if done:
                self._close_iterator(result)
            self.call_soon_threadsafe(
                lambda: self._pulled(connection, pieces, done, chunked, result)
            )

        self._jobs.put(job)

    def _pulled(
        self, connection: _Connection, pieces: list[bytes], done: bool, chunked: bool, result: Any
    ) -> None:
        connection.pulling = False
        if connection.closed:
            if not done:
                self._jobs.put(lambda: self._close_iterator(result))
            return
        for piece in pieces:
            self._queue(connection, _chunk(piece) if chunked else piece)
        if done:
            connection.body_iter = None
            if chunked:
                self._queue(connection, b"0\r\n\r\n")
        self._flush(connection)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("an HTTP worker job failed")


_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_HEADER_KEYS: dict[bytes, str] = {}
"""Header name as sent -> its WSGI environ key (the first 256 names seen)."""


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the write() callable of start_response is not supported")


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def _file_region(wrapper: FileWrapper) -> tuple[int, int, int] | None:
    """(fd, offset, count) of a file body that sendfile() can send, else None."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        offset = filelike.tell()
        size = os.fstat(fd).st_size
    except (AttributeError, OSError, ValueError):
        return None
    return (fd, offset, max(0, size - offset))


def _raise_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards `wanted` (as far as the hard limit allows), so
    that the connection bound, not EMFILE, is what a crowd of clients meets."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        pass


def start_http_server(
    address: ListenAddress, app: WSGIApp, tls: ssl.SSLContext | None = None, **options: Any
) -> HTTPServer:
    """Bind (raising OSError when the address cannot be used) and serve in a daemon thread."""
    return HTTPServer(address, app, tls, **options).start()
