"""The Splashify HTTP client: one analytics request (every enabled field), retried within bounds.

This is where a request is sent, where its answer is classified into a typed error, and where
it is retried. The retry policy itself (`retry_delay`) is a pure function.

Why a hand-written loop rather than urllib3's `Retry`: the retry decision needs the decoded
body (Graph rate limits arrive as HTTP 400 with a code inside), every attempt must be counted
in `whatsapp_exporter_api_requests_total`, and the whole poll has a deadline. urllib3's `Retry`
sees only the status line and hides the intermediate attempts.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from exporter import __version__
from exporter.config import LimitsConfig, SplashifyConfig, Target
from exporter.upstream.bounded import (
    ERROR_BODY_BYTES,
    AttemptGuard,
    attempt_timeout,
    decode_json,
    guarded_session,
    read_body,
    send,
)
from exporter.upstream.errors import (
    BadResponse,
    ConnectionFailed,
    RateLimited,
    UpstreamError,
    classify,
    shown,
)
from exporter.upstream.query import (
    AnalyticsQuery,
    FieldQuery,
    Request,
    build_fields,
    customer_path,
    waba_path,
)
from exporter.upstream.ratelimit import RequestLimiter
from exporter.upstream.usage import Usage, parse_usage

ResponseHook = Callable[[str, str], None]
"""Called with (target name, HTTP status or "error") after every attempt."""
UsageHook = Callable[[str, Usage], None]
"""Called with (target name, usage) after every answer whose headers say how much of the rate
budget is spent (exporter/upstream/usage.py)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    base_delay: float = 0.5
    max_delay: float = 30.0


_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):  # ASCII digits only: `str.isdigit` also takes "²"
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive one is malformed but readable
        return None
    return max(0.0, when.timestamp() - now)


USAGE_HEADERS = ("X-Business-Use-Case-Usage", "X-App-Usage")


def _regain_minutes(value: object) -> float:
    """The largest `estimated_time_to_regain_access` anywhere in a decoded usage header."""
    if isinstance(value, dict):
        found = [_regain_minutes(v) for v in value.values()]
        own = value.get("estimated_time_to_regain_access")
        # json.loads accepts Infinity and NaN: neither is a time to wait.
        if isinstance(own, int | float) and not isinstance(own, bool) and math.isfinite(own):
            found.append(float(own))
        return max(found, default=0.0)
    if isinstance(value, list):
        return max((_regain_minutes(v) for v in value), default=0.0)
    return 0.0


def regain_access_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds until the upstream lets us back in, from Meta's usage headers (minutes there).

    `X-Business-Use-Case-Usage` is `{"<id>": [{"estimated_time_to_regain_access": 5, ...}]}`;
    `X-App-Usage` is a flat object. None when neither says we are throttled; a header that is
    not JSON is ignored, never an error.
    """
    minutes = 0.0
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            minutes = max(minutes, _regain_minutes(json.loads(raw)))
        except (ValueError, RecursionError):
            continue
    return minutes * 60 if minutes > 0 else None


RATE_LIMIT_FLOOR_SECONDS = 1.0
"""The first retry after a rate limit waits at least this long (the next ones twice as long
each): full jitter alone can come down to nothing, and a throttled upstream must not be
hammered."""


def retry_delay(
    policy: RetryPolicy, retry_number: int, error: UpstreamError, jitter: float
) -> float:
    """How long to wait before retry number `retry_number` (0-based).

    The upstream's `Retry-After` wins when it sent one; otherwise exponential backoff with full
    jitter (`jitter` in [0, 1)), so that many targets failing together do not retry together.
    A rate limit waits at least RATE_LIMIT_FLOOR_SECONDS, doubling per retry, plus jitter of
    up to as much again (within `max_delay`, unless `Retry-After` asks for more).
    """
    if isinstance(error, RateLimited):
        floor = min(policy.max_delay, RATE_LIMIT_FLOOR_SECONDS * 2**retry_number)
        if error.retry_after is not None:
            return max(error.retry_after, floor)
        return min(policy.max_delay, floor * (1 + jitter))
    return jitter * min(policy.max_delay, policy.base_delay * 2**retry_number)


class Cancelled(Exception):
    """The exporter is shutting down: the request was not sent. Not a failure of the target."""


class SplashifyClient:
    """Fetches one target's analytics; safe to share between poller threads."""

    def __init__(
        self,
        config: SplashifyConfig,
        limiter: RequestLimiter,
        *,
        on_response: ResponseHook = lambda target, code: None,
        on_usage: UsageHook = lambda target, usage: None,
        sleep: Callable[[float], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        stop: threading.Event | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self._config = config
        self._max_bytes = (limits or LimitsConfig()).max_response_bytes
        self._limiter = limiter
        self._on_response = on_response
        self._on_usage = on_usage
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._stop = stop or threading.Event()
        # Waiting on the stop event makes a backoff end at once on shutdown.
        self._sleep = sleep or self._stop.wait
        self._policy = RetryPolicy(max_retries=config.max_retries)
        # requests.Session is not documented as thread-safe: one per poller thread.
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session(f"whatsapp-exporter/{__version__}")
            self._local.session = session
        return session

    def url_for(self, target: Target) -> str:
        if target.waba_id is not None:
            path = waba_path(self._config.api_version, target.waba_id)
        else:
            path = customer_path(str(target.customer_id))
        return self._config.base_url + path

    def fetch(
        self,
        target: Target,
        query: AnalyticsQuery | FieldQuery | Request,
        deadline: float,
        *,
        on_attempt: Callable[[], object] = lambda: None,
    ) -> object:
        """The decoded JSON answer, or a typed `UpstreamError` once retries are spent.

        `deadline` (monotonic seconds) bounds the retries: a retry is only attempted when its
        backoff and a whole `timeout` fit before it. Raises `Cancelled` once stopping.
        `on_attempt` is called before each attempt (the poller counts them).
        """
        url = self.url_for(target)
        params = {"fields": build_fields(query)}
        retry_number = 0
        while True:
            try:
                on_attempt()
                return self._attempt(target, url, params)
            except UpstreamError as error:
                if not error.retryable or retry_number >= self._policy.max_retries:
                    raise
                delay = retry_delay(self._policy, retry_number, error, self._jitter())
                finish = self._monotonic() + delay + self._config.timeout
                if finish > deadline or self._stop.is_set():
                    raise
                self._sleep(delay)
                if self._stop.is_set():  # shutting down: do not start another attempt
                    raise
                retry_number += 1

    def _attempt(self, target: Target, url: str, params: dict[str, str]) -> object:
        """One request, bounded as a whole by `splashify.timeout` (see upstream/bounded.py)."""
        headers = {"Authorization": f"Bearer {self._config.api_key.reveal()}"}
        with self._limiter.request():
            if self._stop.is_set():  # waited for a slot or a token while shutting down
                raise Cancelled
            with AttemptGuard(self._config.timeout) as guard:
                try:
                    response = send(self._session(), url, params, headers, guard)
                except requests.RequestException as exc:
                    self._on_response(target.name, "error")
                    if guard.expired or isinstance(exc, requests.Timeout):
                        raise attempt_timeout(guard) from None
                    # The exception text names host and port, never the Authorization header.
                    raise ConnectionFailed(shown(f"{type(exc).__name__}: {exc}")) from None
                status = response.status_code
                self._on_response(target.name, str(status))
                usage = parse_usage(response.headers)
                if usage:
                    self._on_usage(target.name, usage)
                data = self._body(response, guard, status)
        if 300 <= status < 400:
            # Not followed: another host's answer is not this target's data, and a path
            # rewritten to another WABA's would be taken for this one's.
            location = shown(response.headers.get("Location", ""), 120)
            raise BadResponse(
                f"HTTP {status} redirect to {location or '(no Location)'} not followed; "
                "splashify.base_url must be where the API answers",
                status=status,
            )
        body: object = None
        if data is not None:
            try:
                body = decode_json(data)
            except BadResponse as undecodable:
                if 200 <= status < 300:
                    raise BadResponse(f"HTTP {status}: {undecodable}", status=status) from None
        error = classify(status, body)
        if error is not None:
            if isinstance(error, RateLimited):
                waits = (
                    parse_retry_after(response.headers.get("Retry-After"), self._wall_clock()),
                    regain_access_seconds(response.headers),
                )
                error.retry_after = max((w for w in waits if w is not None), default=None)
            raise error
        return body  # its shape is for exporter/upstream/parse.py to judge

    def _body(
        self, response: requests.Response, guard: AttemptGuard, status: int
    ) -> bytearray | None:
        """The answer's body, read within the guard's bounds; then the connection is freed.

        A success must come whole. An error answer is classified by its status when its body
        cannot be read (too big, too slow, broken off): it says what went wrong either way.
        A redirect's body is not read at all.
        """
        if 300 <= status < 400:
            response.close()
            return None
        success = 200 <= status < 300
        limit = self._max_bytes if success else min(self._max_bytes, ERROR_BODY_BYTES)
        try:
            data = read_body(response, guard, limit)
        except UpstreamError:
            response.close()  # the connection may hold the rest of the answer: not reused
            if success:
                raise
            return None
        response.raw.release_conn()
        return data
