"""A simulated Splashify API: a real HTTP server on loopback that answers like the upstream.

The order of checks follows the real path of a request: Splashify routes it, checks the API key
and that the WABA belongs to the caller, forwards it to Meta (where injected faults happen, as a
502 or a rate limit would), and Meta validates `fields=` and answers.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator import faults
from exporter.simulator.fields import FieldsError, parse_request
from exporter.simulator.pricing import field_answers
from exporter.simulator.traffic import DEMO_ACCOUNTS, Campaign, Point, SimAccount, answer_points
from exporter.simulator.usage import UsageMeter
from exporter.upstream.query import FIELD, AnalyticsQuery, FieldQuery, align_down
from exporter.vocabulary import HISTORY_SECONDS

logger = logging.getLogger("exporter.simulator")

_WABA_ROUTE = re.compile(r"/api/(v\d+\.\d+)/([^/]+)")
_CUSTOMER_ROUTE = re.compile(r"/api/v1/partner/customers/([^/]+)/whatsapp/analytics/conversations")

FUTURE_TOLERANCE_SECONDS = 5.0
"""Slack for clock skew before an `end` counts as in the future."""

_SPLASHIFY_MESSAGES = {
    401: "Invalid or missing API key",
    403: "This WhatsApp Business Account does not belong to your account",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Request to WhatsApp failed",
    503: "Service temporarily unavailable",
}

# Graph messages by error code, as Meta words them.
_GRAPH_MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    190: "Error validating access token: Session has expired",
    200: "(#200) Requires whatsapp_business_management permission to manage the object",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80007: "(#80007) Rate limit hit for this WhatsApp Business account",
    130429: "(#130429) Rate limit hit",
}

FaultKind = Literal[
    "status", "rate_limited", "graph_error", "malformed_json", "missing_key", "flat", "slow",
    "down",
    # Hostile answers (exporter/simulator/faults.py), and a drip-fed one:
    "label", "extra_points", "raw_body", "gzip_bomb", "cardinality", "redirect", "wrong_id",
    "drip",
]


def splashify_body(status: int) -> dict[str, Any]:
    """Splashify's own error body for an HTTP status."""
    message = _SPLASHIFY_MESSAGES.get(status) or responses.get(status, "Error")
    return {"success": False, "message": message}


def graph_body(code: int, message: str | None = None, subcode: int | None = None) -> dict[str, Any]:
    """A Graph API error body as Meta sends it (and Splashify passes through)."""
    error: dict[str, Any] = {
        "message": message or _GRAPH_MESSAGES.get(code, f"(#{code}) Error"),
        "type": "OAuthException",
        "code": code,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:22]
    return {"error": error}


@dataclass(frozen=True, slots=True)
class Fault:
    """A misbehaviour to inject; build one with the classmethods, arm it with `set_fault`."""

    kind: FaultKind
    http_status: int = 200
    body: dict[str, Any] | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    regain_minutes: int = 0
    """For a rate limit: the `estimated_time_to_regain_access` its usage headers announce."""
    code: int = 0
    """Graph error code, for `graph_error`."""
    subcode: int | None = None
    payload: Any = None
    """What a hostile fault needs (see its classmethod)."""

    @classmethod
    def status(cls, code: int, body: dict[str, Any] | None = None) -> Fault:
        """Answer `code` with `body`, by default Splashify's error body for that status."""
        return cls("status", http_status=code, body=splashify_body(code) if body is None else body)

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls.status(401)

    @classmethod
    def forbidden(cls) -> Fault:
        return cls.status(403)

    @classmethod
    def not_found(cls) -> Fault:
        return cls.status(404)

    @classmethod
    def rate_limited(cls, retry_after: str | None = None, regain_minutes: int = 0) -> Fault:
        """429, with a `Retry-After` header only when given (the upstream does not promise it),
        and usage headers that announce `regain_minutes` when it is not 0."""
        return cls(
            "rate_limited",
            http_status=429,
            body=splashify_body(429),
            retry_after=retry_after,
            regain_minutes=regain_minutes,
        )

    @classmethod
    def graph_error(
        cls, code: int, http_status: int = 400, subcode: int | None = None, regain_minutes: int = 0
    ) -> Fault:
        """A Meta error passed through, e.g. code 80007 (rate limit), 2 (transient), 190 (auth).

        The body is built per answer, so each carries its own fbtrace_id. A rate-limit code's
        usage headers announce `regain_minutes` when it is not 0.
        """
        return cls(
            "graph_error",
            http_status=http_status,
            code=code,
            subcode=subcode,
            regain_minutes=regain_minutes,
        )

    @classmethod
    def malformed_json(cls) -> Fault:
        """200 whose body is the real answer cut in half."""
        return cls("malformed_json")

    @classmethod
    def missing_key(cls) -> Fault:
        """200 `{"id": ...}` without `conversation_analytics`, even when there is data."""
        return cls("missing_key")

    @classmethod
    def flat(cls) -> Fault:
        """200 with `data_points` directly under `conversation_analytics` (no `data[]`)."""
        return cls("flat")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds`, then answer normally."""
        return cls("slow", seconds=seconds)

    @classmethod
    def down(cls) -> Fault:
        """Close the connection without sending any response."""
        return cls("down")

    # -- hostile answers (built in faults.py) --------------------------------------------------

    @classmethod
    def label(cls, key: str, value: object) -> Fault:
        """The real answer plus one point of the newest complete bucket whose dimension `key`
        holds `value`: any JSON value, e.g. the lone surrogate `"\\ud800"` (JSON text) or a list."""
        return cls("label", payload=(key, value))

    @classmethod
    def extra_points(cls, *points: dict[str, Any]) -> Fault:
        """The real answer with these raw points added (e.g. one dated in the year 3000)."""
        return cls("extra_points", payload=points)

    @classmethod
    def raw_body(cls, body: bytes, headers: dict[str, str] | None = None) -> Fault:
        """200 with exactly these bytes (e.g. 100k nested `[`), and these headers."""
        return cls("raw_body", payload=(bytes(body), dict(headers or {})))

    @classmethod
    def gzip_bomb(cls, inflated_bytes: int) -> Fault:
        """200, `Content-Encoding: gzip`, a small body that inflates to `inflated_bytes` of
        valid JSON (an answer with no data and a sea of whitespace)."""
        return cls("gzip_bomb", payload=inflated_bytes)

    @classmethod
    def cardinality(cls, label_sets: int, buckets: int = 1) -> Fault:
        """200 with `label_sets` distinct phone numbers, in one bucket or in each of the
        `buckets` newest complete ones."""
        return cls("cardinality", payload=(label_sets, buckets))

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        """A redirect to `location` (another host, port or path)."""
        return cls("redirect", http_status=status, payload=(status, location))

    @classmethod
    def wrong_id(cls, waba_id: str) -> Fault:
        """The real answer, but with another WABA's `id`."""
        return cls("wrong_id", payload=waba_id)

    @classmethod
    def drip(cls, seconds: float, *, headers: bool = False, limit: int | None = None) -> Fault:
        """Send the real answer one byte every `seconds`: the body after the headers, or
        (`headers`) the status line and headers too. After `limit` bytes, the rest at once."""
        return cls("drip", seconds=seconds, payload=(headers, limit))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the simulator received.

    `time` is the clock reading the answer was computed for (pass it as `as_of` to
    `answer_points` to recompute the answer); `path` is the raw URL path without the query
    string; `query` is the parsed `fields=` blob, None when it was missing or invalid; `status`
    is 0 when the connection was closed without an answer. `answered` is the clock reading when
    the answer was ready to send (after any `slow` fault and the `latency`); `fault` is the kind
    of the armed fault this request took (`Fault.kind`), None for an untouched answer. `fields`
    holds every field the request asked for, by field name (`query` is its
    conversation_analytics part). These three are left out of comparisons, so a test can compare
    requests without knowing them.
    """

    time: float
    path: str
    account_waba_id: str | None
    query: AnalyticsQuery | None
    status: int
    answered: float | None = field(default=None, compare=False)
    fault: FaultKind | None = field(default=None, compare=False)
    fields: dict[str, AnalyticsQuery | FieldQuery] = field(default_factory=dict, compare=False)


@dataclass(slots=True)
class _ArmedFault:
    fault: Fault
    remaining: int | None


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drip: Fault | None = None
    """A `drip` fault: the handler sends this answer byte by byte."""


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(body).encode(), headers or {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout, shutdown) before a slow answer is normal here.
        logger.debug("client %s went away", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "Splashify-Simulator"

    def do_GET(self) -> None:
        response = self.server.simulator._handle(self.path, self.headers.get("Authorization"))
        if response is None:
            # Nothing written: the connection closes as the handler returns.
            self.close_connection = True
            return
        if response.drip is not None:
            self._drip(response, response.drip)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _drip(self, response: _Response, fault: Fault) -> None:
        drip_headers, limit = fault.payload
        head = [f"{self.protocol_version} {response.status} {responses[response.status]}"]
        headers = {"Content-Type": "application/json", "Content-Length": str(len(response.body))}
        head += [f"{k}: {v}" for k, v in {**headers, **response.headers}.items()]
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if not drip_headers:
            self.wfile.write(raw_head)
            self.wfile.flush()
        data = raw_head + response.body if drip_headers else response.body
        limit = len(data) if limit is None else limit
        simulator = self.server.simulator
        sent = 0
        try:
            for i in range(min(limit, len(data))):
                if simulator._stopping.wait(fault.seconds):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                sent += 1
            self.wfile.write(data[limit:])
            self.wfile.flush()
            sent = len(data)
        except OSError:  # the client gave up: that is what a drip is for
            self.close_connection = True
        finally:
            with simulator._lock:
                simulator._drips.append((sent, len(data)))

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib writes every request to stderr; a test run or the demo wants quiet.
        logger.debug("%s %s", self.address_string(), format % args)


class Simulator:
    """The simulated API on `host:port` (port 0: an ephemeral one), serving `accounts`.

    `clock` gives "now" for the data (buckets after it do not exist) and for the checks on
    `end` and `start`; inject one to make a test independent of the wall clock. The late-data
    knob (`late_seconds`, `late_fraction`) is described in `traffic.observed_count`, and
    `campaigns` (marketing bursts, e.g. for a spike scenario) in `traffic.Campaign`.

    Two knobs are for benchmarks. `latency` (seconds) holds every answer that long before it
    is sent, as a distant upstream would; the server is threaded, so the waits of concurrent
    requests overlap. `answer_cache` (off by default) answers a query it answered before from
    memory: the key is the account and the query with `end` aligned down to the half hour, so
    the bucket in progress stops growing within a half hour. Building and encoding thousands of
    points per request in Python would otherwise make the simulator, not the client, the
    bottleneck of a timed poll cycle. `answer_cache_stats` counts hits and misses.
    """

    def __init__(
        self,
        api_key: str = "demo-key",
        accounts: Iterable[SimAccount] = DEMO_ACCOUNTS,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        late_seconds: float = 0.0,
        late_fraction: float = 0.0,
        campaigns: Iterable[Campaign] = (),
        latency: float = 0.0,
        answer_cache: bool = False,
    ) -> None:
        if not 0.0 <= late_fraction <= 1.0:
            raise ValueError("late_fraction must be between 0 and 1")
        if not latency >= 0.0:
            raise ValueError("latency must not be negative")
        self.api_key = api_key
        self.accounts: tuple[SimAccount, ...] = tuple(accounts)
        self._by_waba = {account.waba_id: account for account in self.accounts}
        self._by_customer = {a.customer_id: a for a in self.accounts if a.customer_id is not None}
        if len(self._by_waba) != len(self.accounts):
            raise ValueError("duplicate waba_id in accounts")
        if len(self._by_customer) != sum(a.customer_id is not None for a in self.accounts):
            raise ValueError("duplicate customer_id in accounts")
        self.late_seconds = late_seconds
        self.late_fraction = late_fraction
        self.campaigns: tuple[Campaign, ...] = tuple(campaigns)
        self.latency = latency
        self.answer_cache = answer_cache
        self._cache: dict[tuple[str, tuple[AnalyticsQuery | FieldQuery, ...]], bytes] = {}
        self._cache_hits = 0
        self._cache_misses = 0
        self._address = (host, port)
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str | None, _ArmedFault] = {}
        self._usage_meter = UsageMeter(len(self.accounts))
        self._drips: list[tuple[int, int]] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        server = _Server(self._address, _Handler)
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="splashify-simulator", daemon=True
        )
        self._thread.start()
        logger.debug("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port; requests sleeping in a `slow` fault get no answer."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        # Tolerates `with Simulator().start() as sim:` as well as `with Simulator() as sim:`.
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://{self._address[0]}:{self.port}"

    # -- inspection ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, waba_id: str) -> list[RecordedRequest]:
        """The requests that reached the account `waba_id`, by either route."""
        return [r for r in self.requests if r.account_waba_id == waba_id]

    @property
    def drips(self) -> list[tuple[int, int]]:
        """(bytes sent, bytes in the answer) of every drip-fed answer that ended; fewer sent
        means the client hung up first."""
        with self._lock:
            return list(self._drips)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def answer_cache_stats(self) -> tuple[int, int]:
        """(hits, misses) of the answer cache so far; (0, 0) while it is off."""
        with self._lock:
            return self._cache_hits, self._cache_misses

    def account(self, waba_id: str) -> SimAccount:
        return self._by_waba[waba_id]

    def expected_points(self, waba_id: str, query: AnalyticsQuery, as_of: float) -> list[Point]:
        """What this simulator answers for `query` at `as_of`, late-data knob included."""
        return answer_points(
            self._by_waba[waba_id],
            query,
            as_of,
            late_seconds=self.late_seconds,
            late_fraction=self.late_fraction,
            campaigns=self.campaigns,
        )

    # -- faults --------------------------------------------------------------------------------

    def set_fault(self, fault: Fault, waba_id: str | None = None, times: int | None = None) -> None:
        """Arm `fault` for all accounts (waba_id None) or one, for good or for `times` requests.

        A fault armed for an account wins over a global one; arming again replaces the fault of
        that scope.
        """
        if waba_id is not None and waba_id not in self._by_waba:
            raise ValueError(f"unknown waba_id {waba_id!r}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults[waba_id] = _ArmedFault(fault, times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, waba_id: str) -> Fault | None:
        with self._lock:
            for scope in (waba_id, None):
                armed = self._faults.get(scope)
                if armed is None:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        del self._faults[scope]
                return armed.fault
        return None

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, raw_path: str, authorization: str | None) -> _Response | None:
        """Answer one GET and record it; None means: close without answering."""
        now = self._clock()
        url = urlsplit(raw_path)
        fields, fields_error = _parse_query_string(url.query)
        query = fields.get(FIELD) if fields else None
        taken: list[Fault] = []
        account, response = self._answer(now, url.path, authorization, fields, fields_error, taken)
        if account is not None:
            # Every answer that reached the account says how much of its budget is spent (and
            # counts against it); Splashify's own refusals (bad key, unknown id) do not.
            self._usage_meter.record(account.waba_id, now)
            if response is not None:
                response.headers.update(self._usage_headers(account, now, taken))
        if self.latency > 0 and self._stopping.wait(self.latency):
            response = None  # stopped while holding the answer back: none is sent
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    time=now,
                    path=url.path,
                    account_waba_id=account.waba_id if account else None,
                    query=query if isinstance(query, AnalyticsQuery) else None,
                    status=response.status if response else 0,
                    answered=self._clock(),
                    fault=taken[0].kind if taken else None,
                    fields=fields or {},
                )
            )
        return response

    def _answer(
        self,
        now: float,
        path: str,
        authorization: str | None,
        fields: dict[str, AnalyticsQuery | FieldQuery] | None,
        fields_error: str | None,
        taken: list[Fault],
    ) -> tuple[SimAccount | None, _Response | None]:
        """The account asked for and the answer; the fault taken, if any, is appended to `taken`."""
        waba_match = _WABA_ROUTE.fullmatch(path)
        customer_match = _CUSTOMER_ROUTE.fullmatch(path)
        if waba_match is None and customer_match is None:
            return None, _json(404, {"success": False, "message": f"No route for GET {path}"})
        if not self._authorized(authorization):
            return None, _json(401, splashify_body(401))
        if customer_match is not None:
            account = self._by_customer.get(unquote(customer_match.group(1)))
            if account is None:
                return None, _json(404, {"success": False, "message": "Customer not found"})
        else:
            account = self._by_waba.get(unquote(waba_match.group(2))) if waba_match else None
            if account is None:
                return None, _json(403, splashify_body(403))

        fault = self._take_fault(account.waba_id)
        if fault is not None:
            taken.append(fault)
        if fault is not None and fault.kind == "slow":
            if self._stopping.wait(fault.seconds):
                return account, None
            fault = None
        kind = fault.kind if fault is not None else None
        if kind == "down":
            return account, None
        if fault is not None and kind in ("status", "rate_limited"):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return account, _json(fault.http_status, fault.body, headers)
        if fault is not None and kind == "graph_error":
            return account, _json(fault.http_status, graph_body(fault.code, subcode=fault.subcode))

        if fields is None:
            return account, _json(400, graph_body(100, f"(#100) {fields_error}"))
        for field_query in fields.values():
            rejection = _check_window(field_query, now)
            if rejection is not None:
                return account, _json(400, graph_body(100, f"(#100) {rejection}"))
        query = fields.get(FIELD)
        others = {n: q for n, q in fields.items() if isinstance(q, FieldQuery)}
        if fault is not None and kind in faults.HOSTILE_KINDS:
            # Hostile answers are conversation_analytics answers, over the request's window.
            if not isinstance(query, AnalyticsQuery):
                some = next(iter(fields.values()))
                query = AnalyticsQuery(start=some.start, end=some.end)
            status, data, headers = faults.hostile_answer(
                fault.kind,
                fault.payload,
                account.waba_id,
                query,
                self.expected_points(account.waba_id, query, now),
            )
            return account, _Response(status, data, headers)

        usage = {"X-Business-Use-Case-Usage": self._usage(account, now)}
        cache_key = None
        if self.answer_cache and kind is None:
            aligned = tuple(dataclasses.replace(q, end=align_down(q.end)) for q in fields.values())
            cache_key = (account.waba_id, aligned)
            with self._lock:
                cached = self._cache.get(cache_key)
                if cached is not None:
                    self._cache_hits += 1
                    return account, _Response(200, cached, usage)
                self._cache_misses += 1
        knobs: dict[str, Any] = {
            "late_seconds": self.late_seconds,
            "late_fraction": self.late_fraction,
            "campaigns": self.campaigns,
        }
        points: list[Point] = []
        if isinstance(query, AnalyticsQuery):
            points = answer_points(account, query, now, **knobs)
        answer: dict[str, Any] = {}
        if points and kind == "flat":
            answer["conversation_analytics"] = {"data_points": points}
        elif points and kind != "missing_key":
            answer["conversation_analytics"] = {"data": [{"data_points": points}]}
        if kind != "missing_key":
            answer.update(field_answers(account, others, now, **knobs))
        answer["id"] = account.waba_id
        body = json.dumps(answer).encode()
        if kind == "malformed_json":
            body = body[: len(body) // 2]
        if cache_key is not None:
            with self._lock:
                self._cache[cache_key] = body
        return account, _Response(200, body, usage, drip=fault if kind == "drip" else None)

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, key = (authorization or "").partition(" ")
        # Constant-time, as a real server compares secrets.
        return scheme == "Bearer" and hmac.compare_digest(key.encode(), self.api_key.encode())

    def _usage(self, account: SimAccount, now: float) -> str:
        """The `X-Business-Use-Case-Usage` header of an untouched answer (`_handle` sets the
        usage headers of every answer, faulty ones included)."""
        return self._usage_meter.headers(account.waba_id, now)["X-Business-Use-Case-Usage"]

    def _usage_headers(self, account: SimAccount, now: float, taken: list[Fault]) -> dict[str, str]:
        fault = taken[0] if taken else None
        if fault is None:
            return self._usage_meter.headers(account.waba_id, now)
        return self._usage_meter.headers(
            account.waba_id,
            now,
            kind=fault.kind,
            http_status=fault.http_status,
            code=fault.code,
            regain_minutes=fault.regain_minutes,
        )


def _parse_query_string(
    query_string: str,
) -> tuple[dict[str, AnalyticsQuery | FieldQuery] | None, str | None]:
    """(fields by name, None) for a valid `fields=` blob, else (None, why not)."""
    values = parse_qs(query_string, keep_blank_values=True).get("fields", [])
    if not values:
        return None, "The parameter fields is required"
    if len(values) > 1:
        return None, "The parameter fields must be given once"
    try:
        return parse_request(values[0]), None
    except FieldsError as error:
        return None, f"Syntax error in fields: {error}"


def _check_window(query: AnalyticsQuery | FieldQuery, now: float) -> str | None:
    """Why the upstream refuses the query's time window at `now`, or None."""
    if query.end > now + FUTURE_TOLERANCE_SECONDS:
        return f"end ({query.end}) must not be in the future"
    if query.start < now - HISTORY_SECONDS:
        return f"start ({query.start}) is older than the {HISTORY_SECONDS // 86400} days kept"
    return None
