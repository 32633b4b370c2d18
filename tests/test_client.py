"""The client against the simulator over real HTTP on loopback."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from exporter.config import Secret, SplashifyConfig, Target
from exporter.simulator import Fault, Simulator
from exporter.upstream.client import RetryPolicy, SplashifyClient, parse_retry_after, retry_delay
from exporter.upstream.errors import (
    AuthError,
    BadRequest,
    BadResponse,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    Timeout,
    UpstreamFailed,
)
from exporter.upstream.query import AnalyticsQuery, query_window
from exporter.upstream.ratelimit import RequestLimiter
from tests.conftest import CUSTOMER_ACCOUNTS, TEST_API_KEY, WABA_ACCOUNTS, free_port

WABA = WABA_ACCOUNTS[0]
TARGET = Target(name=WABA.name, waba_id=WABA.waba_id)


class Recorder:
    def __init__(self) -> None:
        self.codes: list[str] = []
        self.sleeps: list[float] = []

    def on_response(self, target: str, code: str) -> None:
        assert target == TARGET.name or target.startswith("cust")
        self.codes.append(code)


def make_client(
    sim: Simulator | str, recorder: Recorder, *, key: str = TEST_API_KEY, **settings: object
) -> SplashifyClient:
    base_url = sim if isinstance(sim, str) else sim.url
    config = SplashifyConfig(api_key=Secret(key), base_url=base_url, **settings)
    return SplashifyClient(
        config,
        RequestLimiter(config.max_concurrency, 1000),
        on_response=recorder.on_response,
        sleep=recorder.sleeps.append,
        jitter=lambda: 0.5,
    )


def window_query() -> AnalyticsQuery:
    start, end = query_window(time.time(), 6 * 3600)
    return AnalyticsQuery(start=start, end=end, dimensions=("CONVERSATION_CATEGORY",))


def far() -> float:
    return time.monotonic() + 3600


def test_fetches_the_simulators_answer(simulator: Simulator) -> None:
    recorder = Recorder()
    query = window_query()
    body = make_client(simulator, recorder).fetch(TARGET, query, far())
    assert body["id"] == WABA.waba_id
    assert body["conversation_analytics"]["data"][0]["data_points"]
    assert recorder.codes == ["200"]
    (request,) = simulator.requests
    assert request.query == query  # the blob the simulator parsed is the query we built


def test_customer_route(simulator: Simulator) -> None:
    account = CUSTOMER_ACCOUNTS[0]
    target = Target(name="customer", customer_id=account.customer_id)
    body = make_client(simulator, Recorder()).fetch(target, window_query(), far())
    assert body["id"] == account.waba_id
    assert simulator.requests[0].path.startswith("/api/v1/partner/customers/")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.unauthorized(), AuthError),
        (Fault.forbidden(), PermissionDenied),
        (Fault.not_found(), NotFound),
        (Fault.graph_error(100), BadRequest),
        (Fault.graph_error(190), AuthError),
        (Fault.malformed_json(), BadResponse),
    ],
)
def test_permanent_errors_are_not_retried(simulator: Simulator, fault: Fault, error: type) -> None:
    simulator.set_fault(fault)
    recorder = Recorder()
    with pytest.raises(error):
        make_client(simulator, recorder).fetch(TARGET, window_query(), far())
    assert len(recorder.codes) == 1
    assert recorder.sleeps == []


def test_a_wrong_key_is_an_auth_error(simulator: Simulator) -> None:
    with pytest.raises(AuthError):
        make_client(simulator, Recorder(), key="wrong").fetch(TARGET, window_query(), far())


@pytest.mark.parametrize(
    ("fault", "sleeps"),
    [
        *[(fault, [0.25, 0.5]) for fault in (Fault.status(500), Fault.status(502),
                                             Fault.status(503), Fault.graph_error(2),
                                             Fault.down())],
        # Rate limits wait at least 1s, then 2s (plus jitter): the upstream is not hammered.
        *[(fault, [1.5, 3.0]) for fault in (Fault.rate_limited(), Fault.graph_error(4),
                                            Fault.graph_error(130429, http_status=400))],
    ],
)
def test_transient_errors_are_retried_until_success(
    simulator: Simulator, fault: Fault, sleeps: list[float]
) -> None:
    simulator.set_fault(fault, times=2)
    recorder = Recorder()
    body = make_client(simulator, recorder).fetch(TARGET, window_query(), far())
    assert body["id"] == WABA.waba_id
    assert len(recorder.codes) == 3 and recorder.codes[-1] == "200"
    # Exponential backoff (jitter fixed at 0.5 here): 0.5 * 0.5s, then 0.5 * 1s.
    assert recorder.sleeps == sleeps


def test_retries_are_bounded(simulator: Simulator) -> None:
    simulator.set_fault(Fault.status(502))
    recorder = Recorder()
    with pytest.raises(UpstreamFailed):
        make_client(simulator, recorder, max_retries=2).fetch(TARGET, window_query(), far())
    assert recorder.codes == ["502", "502", "502"]


def test_retry_after_is_honoured(simulator: Simulator) -> None:
    simulator.set_fault(Fault.rate_limited(retry_after="7"), times=1)
    recorder = Recorder()
    make_client(simulator, recorder).fetch(TARGET, window_query(), far())
    assert recorder.codes == ["429", "200"]
    assert recorder.sleeps == [7.0]


def test_no_retry_past_the_deadline(simulator: Simulator) -> None:
    simulator.set_fault(Fault.rate_limited(retry_after="120"))
    recorder = Recorder()
    with pytest.raises(RateLimited) as caught:
        make_client(simulator, recorder).fetch(TARGET, window_query(), time.monotonic() + 60)
    assert caught.value.retry_after == 120
    assert recorder.codes == ["429"] and recorder.sleeps == []


def test_connection_refused_is_counted_as_error() -> None:
    recorder = Recorder()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConnectionFailed) as caught:
        make_client(nobody, recorder, max_retries=1).fetch(TARGET, window_query(), far())
    assert recorder.codes == ["error", "error"]
    assert TEST_API_KEY not in str(caught.value)


def test_a_slow_upstream_times_out(simulator: Simulator) -> None:
    simulator.set_fault(Fault.slow(2))
    recorder = Recorder()
    with pytest.raises(Timeout):
        make_client(simulator, recorder, timeout=0.2, max_retries=0).fetch(
            TARGET, window_query(), far()
        )
    assert recorder.codes == ["error"]


def test_the_key_is_sent_as_a_bearer_token_and_never_in_the_url(simulator: Simulator) -> None:
    make_client(simulator, Recorder()).fetch(TARGET, window_query(), far())
    assert TEST_API_KEY not in simulator.requests[0].path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("12", 12.0),
        (" 3 ", 3.0),
        ("soon", None),
        ("-1", None),
        (format_datetime(datetime(2026, 1, 1, 0, 1, 0, tzinfo=timezone.utc), usegmt=True), 60.0),
        (format_datetime(datetime(2025, 1, 1, tzinfo=timezone.utc), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(value, now) == expected


def test_retry_delay() -> None:
    policy = RetryPolicy(max_retries=10, base_delay=1, max_delay=8)
    failure = UpstreamFailed("x")
    assert [retry_delay(policy, n, failure, 1.0) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    assert retry_delay(policy, 3, failure, 0.0) == 0
    assert retry_delay(policy, 0, RateLimited("x", retry_after=30), 0.5) == 30
    # Rate limits: a floor of 1s doubling per retry, jitter on top, within max_delay.
    assert retry_delay(policy, 0, RateLimited("x"), 0.0) == 1
    assert retry_delay(policy, 2, RateLimited("x"), 0.5) == 6
    assert retry_delay(policy, 5, RateLimited("x"), 0.9) == 8
    assert retry_delay(policy, 1, RateLimited("x", retry_after=0), 0.5) == 2
