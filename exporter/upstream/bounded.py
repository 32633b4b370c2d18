"""One upstream answer, read within bounds: time, size and nesting.

`splashify.timeout` bounds a whole attempt (connecting, the headers, the whole body), not each
socket read as requests' own `timeout` does: an answer that sends a byte every second would
otherwise never time out. Three means together:

- the connect and read timeouts given to requests are clamped to what is left of the budget,
  so a silent socket fails by itself;
- an `AttemptGuard` watches the connections its attempt uses (through the connection classes
  of `GuardedAdapter`) and, when the budget is spent, one watchdog thread shared by every
  attempt shuts their sockets down, which ends a read blocked on a trickle at once;
- the body is read in chunks, with the deadline checked after each.

`read_body` inflates gzip and deflate itself, with zlib's `max_length`, so a body is decoded no
further than `limits.max_response_bytes`: a 400 kB gzip bomb costs that limit in memory, never
its 400 MB. `decode_json` turns anything that is not JSON, including nesting too deep for the
parser, into a typed error.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import socket
import threading
import time
import zlib
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from exporter.upstream.errors import BadResponse, ConnectionFailed, LimitExceeded, Timeout, shown

CHUNK_BYTES = 64 * 1024
"""Bytes read from the socket per step; the deadline and the size limit are checked per step."""

INFLATE_STEP_BYTES = 1 << 20
"""Decoded bytes made per call to zlib at most."""

ERROR_BODY_BYTES = 1 << 20
"""An error answer (4xx, 5xx) is read this far at most: its body only says why."""

ACCEPT_ENCODING = "gzip, deflate"
"""What we can inflate within the size limit (not brotli or zstd, even if installed)."""

_current = threading.local()


class _Watchdog:
    """One thread for every attempt's deadline: a heap of (deadline, guard), earliest first.

    Starting a timer thread per attempt would put a thread start (which waits for the new
    thread to run) between taking a request token and sending, on a busy machine enough to
    bunch requests past `requests_per_second`. A finished guard's entry is dropped when its
    deadline comes up.
    """

    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._heap: list[tuple[float, int, AttemptGuard]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, guard: AttemptGuard) -> None:
        with self._wakeup:
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is guard:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wakeup.wait(timeout)
                _, _, guard = heapq.heappop(self._heap)
            guard.fire()


_watchdog = _Watchdog()


class AttemptGuard:
    """The deadline of one attempt, and the sockets it must close when the deadline passes.

    Used as a context manager around sending the request and reading its body, in the thread
    that does both: the connections that thread opens or reuses meanwhile are registered.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.fired = False
        """True once the watchdog shut the attempt's sockets down."""
        self._lock = threading.Lock()
        self._done = False
        self._connections: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> AttemptGuard:
        _current.guard = self
        _watchdog.watch(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._done = True
            self._connections.clear()
            self._sockets.clear()
        _current.guard = None

    def remaining(self) -> float:
        """Seconds left, never below a millisecond (a timeout of 0 would mean "don't wait")."""
        return max(0.001, self.deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def watch(self, connection: HTTPConnection) -> None:
        """Close `connection`'s socket at the deadline: the one it has then, and the one it
        had when last seen (http.client lets go of it once a response that ends the
        connection has its headers, while the body is still read from it)."""
        with self._lock:
            if self._done:
                return
            if connection not in self._connections:
                self._connections.append(connection)
            sock = connection.sock
            if sock is not None and sock not in self._sockets:
                self._sockets.append(sock)

    def fire(self) -> None:
        """The deadline passed: shut down every socket of the attempt (if it is still on)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            sockets = [c.sock for c in self._connections if c.sock is not None]
            sockets += [s for s in self._sockets if s not in sockets]
        for sock in sockets:
            # The plain socket's shutdown, also for a TLS socket: unblocks a read in another
            # thread without touching the TLS state that thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(connection: HTTPConnection) -> None:
    guard = getattr(_current, "guard", None)
    if guard is not None:
        guard.watch(connection)


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        _watch(self)  # its `sock` while a TLS handshake runs
        return super()._new_conn()

    def connect(self) -> None:
        super().connect()
        _watch(self)  # the socket it will read from

    def request(self, *args: Any, **kwargs: Any) -> None:  # a reused connection starts here
        _watch(self)
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        _watch(self)
        return super()._new_conn()

    def connect(self) -> None:
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOLS = {"http": _GuardedHTTPConnectionPool, "https": _GuardedHTTPSConnectionPool}


class GuardedAdapter(HTTPAdapter):
    """requests' adapter, with connections an `AttemptGuard` can see (proxied ones too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def guarded_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter())
    return session


def send(
    session: requests.Session,
    url: str,
    params: dict[str, str],
    headers: dict[str, str],
    guard: AttemptGuard,
) -> requests.Response:
    """GET `url`, headers read, body not yet; redirects are never followed.

    Sent through the adapter rather than `Session.send`, which reads a redirect's whole body
    (to free the connection), unbounded, even when asked not to follow it.
    """
    prepared = session.prepare_request(
        requests.Request("GET", url, params=params, headers=headers)
    )
    settings = session.merge_environment_settings(prepared.url, {}, None, None, None)
    adapter = session.get_adapter(prepared.url or url)
    budget = guard.remaining()
    return adapter.send(
        prepared,
        stream=True,
        timeout=(budget, budget),
        verify=True if settings["verify"] is None else settings["verify"],
        cert=settings["cert"],
        proxies=settings["proxies"],
    )


def describe_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _too_large(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the answer is larger than {describe_size(limit)} decoded "
        f"(limits.max_response_bytes: {limit}); not read further"
    )


class _Inflater:
    """gzip or zlib-wrapped deflate (told apart by their headers), members one after another."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)

    def feed(self, data: bytes, out: bytearray, limit: int) -> None:
        while data:
            if self._zlib.eof:  # another gzip member follows: one body all the same
                self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)
            # At most a chunk at a time: one call's output is a bytes object of its own, and
            # a bomb's whole limit in one piece would be held twice while it is appended.
            out += self._zlib.decompress(data, min(INFLATE_STEP_BYTES, limit - len(out) + 1))
            if len(out) > limit:
                raise _too_large(limit)
            data = self._zlib.unconsumed_tail or (self._zlib.unused_data if self._zlib.eof else b"")

    @property
    def complete(self) -> bool:
        return self._zlib.eof


def read_body(response: requests.Response, guard: AttemptGuard, limit: int) -> bytearray:
    """The decoded body, at most `limit` bytes of it, before the guard's deadline.

    Raises `LimitExceeded`, `Timeout`, `ConnectionFailed` (the answer broke off) or
    `BadResponse` (an encoding we did not ask for, a corrupt gzip stream).
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflater: _Inflater | None = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater()
    elif encoding not in ("", "identity"):
        raise BadResponse(f"answer in a Content-Encoding we did not ask for: {shown(encoding)}")
    declared = response.headers.get("Content-Length", "").strip()
    short = declared.isascii() and declared.isdigit() and len(declared) < 20
    if inflater is None and short and int(declared) > limit:
        raise _too_large(limit)
    out = bytearray()
    try:
        for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
            if inflater is None:
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
            else:
                inflater.feed(chunk, out, limit)
            if guard.expired:
                raise attempt_timeout(guard)
    except (Urllib3Error, OSError) as exc:
        if guard.expired:
            raise attempt_timeout(guard) from None
        detail = shown(f"{type(exc).__name__}: {exc}")
        raise ConnectionFailed(f"the answer broke off: {detail}") from None
    except zlib.error:
        raise BadResponse("the compressed answer is corrupt") from None
    if inflater is not None and not inflater.complete:
        raise BadResponse("the compressed answer is cut short")
    return out  # not copied into bytes: at the limit, that would double the peak


def attempt_timeout(guard: AttemptGuard) -> Timeout:
    return Timeout(f"no complete answer within {guard.budget:g}s (splashify.timeout)")


def decode_json(data: bytearray) -> object:
    """The JSON value in `data`; `BadResponse` for anything else (not UTF-8, not JSON, nested
    too deeply for the parser).

    Consumes `data`: it is emptied once its text is decoded, so that a big answer is not held
    three times (bytes, text and objects) while it is parsed.
    """
    try:
        text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
        data.clear()
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        kind = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
        raise BadResponse(f"the answer is {kind}") from None
