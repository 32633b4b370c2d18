"""The Splashify HTTP client: one `conversation_analytics` request, retried within bounds.

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
from exporter.config import SplashifyConfig, Target
from exporter.upstream.errors import (
    BadResponse,
    ConnectionFailed,
    RateLimited,
    Timeout,
    UpstreamError,
    classify,
)
from exporter.upstream.query import AnalyticsQuery, build_fields, customer_path, waba_path
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


def retry_delay(
    policy: RetryPolicy, retry_number: int, error: UpstreamError, jitter: float
) -> float:
    """How long to wait before retry number `retry_number` (0-based).

    The upstream's `Retry-After` wins when it sent one; otherwise exponential backoff with full
    jitter (`jitter` in [0, 1)), so that many targets failing together do not retry together.
    """
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return error.retry_after
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
    ) -> None:
        self._config = config
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
            session = requests.Session()
            session.headers["User-Agent"] = f"whatsapp-exporter/{__version__}"
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
        query: AnalyticsQuery,
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
        headers = {"Authorization": f"Bearer {self._config.api_key.reveal()}"}
        with self._limiter.request():
            if self._stop.is_set():  # waited for a slot or a token while shutting down
                raise Cancelled
            try:
                response = self._session().get(
                    url, params=params, headers=headers, timeout=self._config.timeout
                )
            except requests.Timeout:
                self._on_response(target.name, "error")
                raise Timeout(f"no answer within {self._config.timeout:g}s") from None
            except requests.RequestException as exc:
                self._on_response(target.name, "error")
                # The exception text names host and port, never the Authorization header.
                raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from None
        self._on_response(target.name, str(response.status_code))
        usage = parse_usage(response.headers)
        if usage:
            self._on_usage(target.name, usage)
        try:
            body: object = response.json()
        except ValueError:
            body = None
        error = classify(response.status_code, body)
        if error is not None:
            if isinstance(error, RateLimited):
                waits = (
                    parse_retry_after(response.headers.get("Retry-After"), self._wall_clock()),
                    regain_access_seconds(response.headers),
                )
                error.retry_after = max((w for w in waits if w is not None), default=None)
            raise error
        if body is None:
            raise BadResponse(f"HTTP {response.status_code} answer is not valid JSON")
        return body
