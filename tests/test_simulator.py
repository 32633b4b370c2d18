"""The simulated Splashify API: its traffic model, and its answers over real HTTP."""

from __future__ import annotations

import calendar
import dataclasses
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporter.simulator import (
    DEMO_ACCOUNTS,
    Fault,
    RecordedRequest,
    SimAccount,
    Simulator,
    answer_points,
    scaled_accounts,
)
from exporter.simulator.traffic import combos, final_count, observed_count
from exporter.upstream.query import AnalyticsQuery, build_fields, customer_path, waba_path
from exporter.vocabulary import ANSWER_VALUES, DIMENSIONS, HALF_HOUR_SECONDS

ALL_DIMENSIONS = tuple(d.api_name for d in DIMENSIONS)
ACME = DEMO_ACCOUNTS[0]  # IST, UTC+05:30
GULF = next(a for a in DEMO_ACCOUNTS if a.customer_id is not None)
NOW = calendar.timegm((2025, 3, 12, 10, 47, 0))  # 16:17 in India: the afternoon peak
BUCKET = NOW - NOW % HALF_HOUR_SECONDS  # the bucket in progress at NOW
HOUR = 3600


def local_bucket(account: SimAccount, day: int, hour: float) -> int:
    """The UTC start of the half hour at local `hour` on day `day` (0: the day holding NOW)."""
    offset = account.utc_offset_minutes * 60
    local_midnight = (NOW + offset) // 86400 * 86400 - offset
    return int(local_midnight + day * 86400 + hour * HOUR)


def total(points: list[dict[str, Any]]) -> int:
    return sum(int(p["conversation"]) for p in points)


def window(hours: float, **kwargs: Any) -> AnalyticsQuery:
    """A query over the `hours` before NOW."""
    return AnalyticsQuery(start=int(NOW - hours * HOUR), end=NOW, **kwargs)


# -- traffic model ------------------------------------------------------------------------------


def test_final_count_is_deterministic_and_varies_by_bucket() -> None:
    combo = max(combos(ACME), key=lambda c: c.base_rate)
    buckets = [BUCKET - i * HALF_HOUR_SECONDS for i in range(48)]
    counts = [final_count(ACME, combo, b) for b in buckets]
    assert counts == [final_count(ACME, combo, b) for b in buckets]
    assert len(set(counts)) > 10


def test_final_count_wants_an_aligned_bucket() -> None:
    with pytest.raises(ValueError, match="half-hour boundary"):
        final_count(ACME, combos(ACME)[0], BUCKET + 60)


def test_combos_look_like_real_accounts() -> None:
    seen: dict[str, set[str]] = {key: set() for key in ANSWER_VALUES}
    for account in DEMO_ACCOUNTS:
        account_combos = combos(account)
        assert 20 <= len(account_combos) <= 60
        assert len(set(account_combos)) == len(account_combos)
        assert {c.phone_number for c in account_combos} <= set(account.phone_numbers)
        assert len({c.country for c in account_combos}) >= 2
        for combo in account_combos:
            for key in seen:
                seen[key].add(getattr(combo, key))
    for key, values in seen.items():
        assert values == set(ANSWER_VALUES[key]), key


def test_demo_accounts() -> None:
    assert len({a.waba_id for a in DEMO_ACCOUNTS}) == len(DEMO_ACCOUNTS) >= 4
    assert sum(a.customer_id is None for a in DEMO_ACCOUNTS) >= 3
    assert GULF.customer_id == "cus_8f2a"


def test_peak_volume_is_a_few_hundred_per_half_hour() -> None:
    peak = local_bucket(ACME, -1, 15)
    points = answer_points(ACME, AnalyticsQuery(start=peak, end=peak + 1), NOW)
    assert 150 <= total(points) <= 700


def test_nights_are_quiet() -> None:
    night = afternoon = 0
    for day in (-3, -2, -1):
        for hour in (2, 2.5, 3, 3.5):
            start = local_bucket(ACME, day, hour)
            night += total(answer_points(ACME, AnalyticsQuery(start=start, end=start + 1), NOW))
            start = local_bucket(ACME, day, hour + 12)
            afternoon += total(answer_points(ACME, AnalyticsQuery(start=start, end=start + 1), NOW))
    assert night * 10 < afternoon
    zero_at_night = sum(final_count(ACME, c, local_bucket(ACME, -1, 3)) == 0 for c in combos(ACME))
    assert zero_at_night > len(combos(ACME)) / 3


def test_zero_buckets_are_left_out() -> None:
    points = answer_points(ACME, window(24, dimensions=ALL_DIMENSIONS), NOW)
    assert all(int(p["conversation"]) > 0 for p in points)
    assert len(points) < 48 * len(combos(ACME))


def test_points_come_newest_first() -> None:
    points = answer_points(ACME, window(6, dimensions=("COUNTRY",)), NOW)
    starts = [p["start"] for p in points]
    assert starts == sorted(starts, reverse=True)
    assert starts[0] == BUCKET
    assert all(p["end"] == int(p["start"]) + HALF_HOUR_SECONDS for p in points)


@pytest.mark.parametrize(
    "dimensions", [(), ("COUNTRY",), ("PHONE", "CONVERSATION_TYPE"), ALL_DIMENSIONS]
)
def test_points_carry_only_the_requested_keys(dimensions: tuple[str, ...]) -> None:
    wanted = {"start", "end", "conversation"} | {
        d.point_key for d in DIMENSIONS if d.api_name in dimensions
    }
    points = answer_points(ACME, window(3, dimensions=dimensions), NOW)
    assert points
    assert all(set(p) == wanted for p in points)


def per_bucket(points: list[dict[str, Any]]) -> dict[int, int]:
    sums: dict[int, int] = {}
    for p in points:
        sums[int(p["start"])] = sums.get(int(p["start"]), 0) + int(p["conversation"])
    return sums


@pytest.mark.parametrize("dimensions", [("COUNTRY",), ("CONVERSATION_DIRECTION",), ALL_DIMENSIONS])
def test_aggregation_preserves_totals(dimensions: tuple[str, ...]) -> None:
    undivided = answer_points(ACME, window(12), NOW)
    assert per_bucket(answer_points(ACME, window(12, dimensions=dimensions), NOW)) == per_bucket(
        undivided
    )
    assert len({p["start"] for p in undivided}) == len(undivided)


@pytest.mark.parametrize(
    ("filters", "key", "allowed"),
    [
        ({"conversation_categories": ("MARKETING",)}, "conversation_category", {"MARKETING"}),
        ({"conversation_types": ("FREE_ENTRY",)}, "conversation_type", {"FREE_ENTRY_POINT"}),
        (
            {"conversation_types": ("FREE_TIER", "REGULAR")},
            "conversation_type",
            {"FREE_TIER", "REGULAR"},
        ),
        (
            {"conversation_directions": ("USER_INITIATED",)},
            "conversation_direction",
            {"USER_INITIATED"},
        ),
        ({"phone_numbers": (ACME.phone_numbers[1],)}, "phone_number", {ACME.phone_numbers[1]}),
    ],
)
def test_filters(filters: dict[str, tuple[str, ...]], key: str, allowed: set[str]) -> None:
    points = answer_points(ACME, window(24, dimensions=ALL_DIMENSIONS, **filters), NOW)
    assert {p[key] for p in points} == allowed
    everything = answer_points(ACME, window(24, dimensions=ALL_DIMENSIONS), NOW)
    assert points == [p for p in everything if p[key] in allowed]


def test_metric_types_without_conversation_has_no_data() -> None:
    assert answer_points(ACME, window(6, metric_types=("COST",)), NOW) == []
    assert answer_points(ACME, window(6, metric_types=("CONVERSATION", "COST")), NOW)


def test_window_bounds() -> None:
    query = AnalyticsQuery(start=BUCKET - 3 * HOUR + 1, end=BUCKET - HOUR + 1)
    starts = [p["start"] for p in answer_points(ACME, query, NOW)]
    # The first aligned bucket at or after start, up to the one holding end (counted whole).
    assert starts == [BUCKET - HOUR - HALF_HOUR_SECONDS * i for i in range(4)]
    beyond_now = answer_points(ACME, AnalyticsQuery(start=BUCKET - HOUR, end=NOW + HOUR), NOW)
    assert [p["start"] for p in beyond_now] == [BUCKET, BUCKET - 1800, BUCKET - 3600]
    assert answer_points(ACME, AnalyticsQuery(start=NOW + 1, end=NOW + HOUR), NOW) == []


def test_bucket_in_progress_reports_its_elapsed_share() -> None:
    as_of = BUCKET + 900
    points = answer_points(ACME, window(1, dimensions=ALL_DIMENSIONS), as_of)
    current = [p for p in points if p["start"] == BUCKET]
    assert current
    # With every dimension asked for, each point is exactly one combo.
    by_labels = {tuple(getattr(c, d.point_key) for d in DIMENSIONS): c for c in combos(ACME)}
    for point in current:
        combo = by_labels[tuple(point[d.point_key] for d in DIMENSIONS)]
        assert point["conversation"] == final_count(ACME, combo, BUCKET) // 2
    assert total(current) < total([p for p in points if p["start"] == BUCKET - 1800])


def test_late_data_knob() -> None:
    combo = max(combos(ACME), key=lambda c: c.base_rate)
    done = BUCKET - HALF_HOUR_SECONDS  # ended 17 minutes before NOW
    final = final_count(ACME, combo, done)
    late = {"late_seconds": 1800.0, "late_fraction": 0.25}
    assert observed_count(ACME, combo, done, NOW) == final
    assert observed_count(ACME, combo, done, NOW, **late) == math.floor(final * 0.75)
    assert observed_count(ACME, combo, done, done + HALF_HOUR_SECONDS + 1800, **late) == final
    assert observed_count(ACME, combo, done - 2 * HOUR, NOW, **late) == final_count(
        ACME, combo, done - 2 * HOUR
    )
    # Counts only grow as time passes, across the end of the bucket and of the late window.
    seen = [observed_count(ACME, combo, done, done + t, **late) for t in range(0, 5400, 60)]
    assert seen == sorted(seen)
    assert seen[-1] == final
    revised = answer_points(ACME, window(2), NOW, late_seconds=1800.0, late_fraction=0.25)
    settled = answer_points(ACME, window(2), NOW)
    assert revised[1]["start"] == done
    assert revised[1]["conversation"] < settled[1]["conversation"]
    assert revised[2:] == settled[2:]


def test_bucket_not_started_does_not_exist() -> None:
    assert observed_count(ACME, combos(ACME)[0], BUCKET, BUCKET) == 0


def test_daily_follows_the_accounts_midnight() -> None:
    query = AnalyticsQuery(
        start=NOW - 4 * 86400, end=NOW, granularity="DAILY", dimensions=("PHONE",)
    )
    points = answer_points(ACME, query, NOW)
    days = sorted({int(p["start"]) for p in points}, reverse=True)
    assert len(days) == 4
    assert all(day % 86400 == 18 * HOUR + 1800 for day in days)  # midnight IST is 18:30 UTC
    assert all(p["end"] == int(p["start"]) + 86400 for p in points)
    half_hours = answer_points(ACME, AnalyticsQuery(start=days[1], end=days[1] + 86400), NOW)
    assert total([p for p in points if p["start"] == days[1]]) == total(half_hours)


def test_monthly_follows_the_accounts_calendar() -> None:
    query = AnalyticsQuery(start=NOW - 50 * 86400, end=NOW, granularity="MONTHLY")
    points = answer_points(ACME, query, NOW)
    feb_ist = calendar.timegm((2025, 2, 1, 0, 0, 0)) - 330 * 60
    mar_ist = calendar.timegm((2025, 3, 1, 0, 0, 0)) - 330 * 60
    apr_ist = calendar.timegm((2025, 4, 1, 0, 0, 0)) - 330 * 60
    assert [(p["start"], p["end"]) for p in points] == [(mar_ist, apr_ist), (feb_ist, mar_ist)]


# -- over HTTP ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(api_key="test-key", clock=clock) as simulator:
        yield simulator


def get(
    sim: Simulator,
    query: AnalyticsQuery | None = None,
    *,
    path: str | None = None,
    key: str | None = "test-key",
    fields: str | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if fields is None and query is not None:
        fields = build_fields(query)
    params = {"fields": fields} if fields is not None else {}
    return requests.get(
        sim.url + (path or waba_path("v25.0", ACME.waba_id)),
        params=params,
        headers=headers,
        timeout=5,
    )


QUERY = window(6, dimensions=ALL_DIMENSIONS)


def test_answer_shape_for_a_waba(sim: Simulator) -> None:
    response = get(sim, QUERY)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"conversation_analytics", "id"}
    assert body["id"] == ACME.waba_id
    (recorded,) = sim.requests
    assert recorded.query == QUERY
    expected = answer_points(ACME, recorded.query, recorded.time)
    assert body["conversation_analytics"] == {"data": [{"data_points": expected}]}
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
    assert set(usage) == {ACME.waba_id}
    assert usage[ACME.waba_id][0]["type"] == "whatsapp_business_management"
    assert usage[ACME.waba_id][0]["estimated_time_to_regain_access"] == 0


def test_answer_shape_for_a_customer(sim: Simulator) -> None:
    assert GULF.customer_id is not None
    response = get(sim, QUERY, path=customer_path(GULF.customer_id))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == GULF.waba_id
    points = body["conversation_analytics"]["data"][0]["data_points"]
    assert points == answer_points(GULF, QUERY, NOW)
    assert [r.path for r in sim.requests_for(GULF.waba_id)] == [customer_path(GULF.customer_id)]


def test_any_api_version_routes(sim: Simulator) -> None:
    assert get(sim, QUERY, path=waba_path("v19.0", ACME.waba_id)).status_code == 200


def test_key_is_absent_without_data(sim: Simulator) -> None:
    response = get(sim, window(6, phone_numbers=("10000000000",)))
    assert response.status_code == 200
    assert response.json() == {"id": ACME.waba_id}


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
def test_bad_key(sim: Simulator, key: str | None) -> None:
    response = get(sim, QUERY, key=key)
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Invalid or missing API key"}


def test_non_bearer_scheme(sim: Simulator) -> None:
    url = sim.url + waba_path("v25.0", ACME.waba_id)
    response = requests.get(
        url,
        params={"fields": build_fields(QUERY)},
        headers={"Authorization": "Basic test-key"},
        timeout=5,
    )
    assert response.status_code == 401


def assert_splashify_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["message"], str)
    assert body["message"]


def test_unknown_waba_is_forbidden(sim: Simulator) -> None:
    assert_splashify_error(get(sim, QUERY, path=waba_path("v25.0", "999999999999999")), 403)


def test_unknown_customer_is_not_found(sim: Simulator) -> None:
    assert_splashify_error(get(sim, QUERY, path=customer_path("cus_nope")), 404)


@pytest.mark.parametrize(
    "path", ["/", "/api/v25.0", "/api/v25/115344761664057", "/api/v25.0/115344761664057/x"]
)
def test_unknown_route(sim: Simulator, path: str) -> None:
    assert_splashify_error(get(sim, QUERY, path=path), 404)


def assert_graph_error(response: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert isinstance(error["message"], str)
    assert isinstance(error["fbtrace_id"], str)
    return dict(error)


@pytest.mark.parametrize(
    "fields",
    [
        None,
        "",
        "conversation_analytics.start(1).end(2).granularity(DAY)",
        "conversation_analytics.start(1)",
    ],
)
def test_bad_fields(sim: Simulator, fields: str | None) -> None:
    error = assert_graph_error(get(sim, fields=fields), 400, 100)
    assert error["message"].startswith("(#100) ")
    (recorded,) = sim.requests
    assert recorded.query is None
    assert recorded.status == 400


def test_end_in_the_future_is_rejected(sim: Simulator) -> None:
    assert_graph_error(get(sim, AnalyticsQuery(start=NOW - HOUR, end=NOW + 60)), 400, 100)
    assert get(sim, AnalyticsQuery(start=NOW - HOUR, end=NOW + 2)).status_code == 200


def test_start_older_than_a_year_is_rejected(sim: Simulator) -> None:
    year = 365 * 86400
    assert_graph_error(get(sim, AnalyticsQuery(start=NOW - year - 1, end=NOW)), 400, 100)
    assert get(sim, AnalyticsQuery(start=NOW - year, end=NOW - year + HOUR)).status_code == 200


def test_the_clock_decides_what_exists(sim: Simulator, clock: FakeClock) -> None:
    first = get(sim, QUERY).json()
    clock.now += HOUR
    second = get(sim, QUERY).json()
    assert first != second
    assert [r.time for r in sim.requests] == [NOW, NOW + HOUR]


def test_requests_are_recorded(sim: Simulator) -> None:
    get(sim, QUERY)
    get(sim, QUERY, key="nope")
    get(sim, QUERY, path=waba_path("v25.0", GULF.waba_id))
    assert sim.requests == [
        RecordedRequest(NOW, waba_path("v25.0", ACME.waba_id), ACME.waba_id, QUERY, 200),
        RecordedRequest(NOW, waba_path("v25.0", ACME.waba_id), None, QUERY, 401),
        RecordedRequest(NOW, waba_path("v25.0", GULF.waba_id), GULF.waba_id, QUERY, 200),
    ]
    assert [r.status for r in sim.requests_for(ACME.waba_id)] == [200]
    sim.clear_requests()
    assert sim.requests == []


def test_late_data_over_http(clock: FakeClock) -> None:
    with Simulator(clock=clock, late_seconds=HOUR, late_fraction=0.5) as late_sim:
        points = get(late_sim, QUERY, key="demo-key").json()["conversation_analytics"]
        expected = late_sim.expected_points(ACME.waba_id, QUERY, NOW)
        assert points["data"][0]["data_points"] == expected
        assert total(expected) < total(answer_points(ACME, QUERY, NOW))


def test_stderr_stays_quiet(sim: Simulator, capfd: pytest.CaptureFixture[str]) -> None:
    get(sim, QUERY)
    get(sim, path="/nope")
    assert capfd.readouterr().err == ""


def test_stop_releases_the_port(clock: FakeClock) -> None:
    simulator = Simulator(clock=clock).start()
    url = simulator.url
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "body"),
    [
        (Fault.status(502), 502, {"success": False, "message": "Request to WhatsApp failed"}),
        (Fault.status(500), 500, None),
        (Fault.status(503, {"success": False, "message": "busy"}), 503, None),
        (Fault.unauthorized(), 401, {"success": False, "message": "Invalid or missing API key"}),
        (Fault.forbidden(), 403, None),
        (Fault.not_found(), 404, None),
    ],
)
def test_status_faults(
    sim: Simulator, fault: Fault, status: int, body: dict[str, Any] | None
) -> None:
    sim.set_fault(fault)
    response = get(sim, QUERY)
    assert_splashify_error(response, status)
    assert body is None or response.json() == body
    assert sim.requests[-1].status == status
    assert sim.requests[-1].query == QUERY


@pytest.mark.parametrize("retry_after", [None, "7"])
def test_rate_limited(sim: Simulator, retry_after: str | None) -> None:
    sim.set_fault(Fault.rate_limited(retry_after))
    response = get(sim, QUERY)
    assert_splashify_error(response, 429)
    assert response.headers.get("Retry-After") == retry_after


@pytest.mark.parametrize(
    ("code", "status", "subcode"), [(80007, 400, None), (130429, 429, 2494055), (2, 500, None)]
)
def test_graph_error(sim: Simulator, code: int, status: int, subcode: int | None) -> None:
    sim.set_fault(Fault.graph_error(code, http_status=status, subcode=subcode))
    error = assert_graph_error(get(sim, QUERY), status, code)
    assert error.get("error_subcode") == subcode


def test_malformed_json(sim: Simulator) -> None:
    sim.set_fault(Fault.malformed_json())
    response = get(sim, QUERY)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_missing_key(sim: Simulator) -> None:
    sim.set_fault(Fault.missing_key())
    response = get(sim, QUERY)
    assert response.status_code == 200
    assert response.json() == {"id": ACME.waba_id}
    assert answer_points(ACME, QUERY, NOW)


def test_flat(sim: Simulator) -> None:
    sim.set_fault(Fault.flat())
    body = get(sim, QUERY).json()
    assert body == {
        "conversation_analytics": {"data_points": answer_points(ACME, QUERY, NOW)},
        "id": ACME.waba_id,
    }


def test_slow(sim: Simulator) -> None:
    sim.set_fault(Fault.slow(0.3))
    began = time.monotonic()
    response = get(sim, QUERY)
    assert time.monotonic() - began >= 0.3
    assert response.status_code == 200
    assert "conversation_analytics" in response.json()


def test_stop_cuts_a_slow_answer_short(clock: FakeClock) -> None:
    simulator = Simulator(clock=clock, api_key="test-key").start()
    simulator.set_fault(Fault.slow(30))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            get(simulator, QUERY)
        except requests.RequestException as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)  # the request is recorded only once answered, so give it time to arrive
    began = time.monotonic()
    simulator.stop()
    caller.join(5)
    assert time.monotonic() - began < 2
    assert len(outcome) == 1


def test_down(sim: Simulator) -> None:
    sim.set_fault(Fault.down())
    with pytest.raises(requests.ConnectionError):
        get(sim, QUERY)
    assert sim.requests[-1].status == 0


def test_fault_clears_itself_after_times(sim: Simulator) -> None:
    sim.set_fault(Fault.status(502), times=2)
    assert [get(sim, QUERY).status_code for _ in range(3)] == [502, 502, 200]


def test_each_request_records_the_fault_it_took(sim: Simulator) -> None:
    sim.set_fault(Fault.missing_key(), times=1)
    sim.set_fault(Fault.status(502), waba_id=ACME.waba_id, times=1)
    statuses = [get(sim, QUERY).status_code for _ in range(3)]
    assert statuses == [502, 200, 200]
    assert [r.fault for r in sim.requests] == ["status", "missing_key", None]
    # A 200 that took a fault is told apart from a healthy one.
    assert [r.status for r in sim.requests] == [502, 200, 200]


def test_fault_for_one_waba(sim: Simulator) -> None:
    assert GULF.customer_id is not None
    sim.set_fault(Fault.status(503), waba_id=GULF.waba_id)
    assert get(sim, QUERY).status_code == 200
    assert get(sim, QUERY, path=waba_path("v25.0", GULF.waba_id)).status_code == 503
    assert get(sim, QUERY, path=customer_path(GULF.customer_id)).status_code == 503


def test_a_wabas_fault_wins_over_the_global_one(sim: Simulator) -> None:
    sim.set_fault(Fault.status(502))
    sim.set_fault(Fault.rate_limited(), waba_id=ACME.waba_id, times=1)
    assert get(sim, QUERY).status_code == 429
    assert get(sim, QUERY).status_code == 502
    sim.clear_faults()
    assert get(sim, QUERY).status_code == 200


def test_faults_come_after_the_key_check(sim: Simulator) -> None:
    sim.set_fault(Fault.status(502), times=1)
    assert get(sim, QUERY, key="wrong").status_code == 401
    assert get(sim, QUERY).status_code == 502


def test_set_fault_checks_its_arguments(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown waba_id"):
        sim.set_fault(Fault.down(), waba_id="1")
    with pytest.raises(ValueError, match="times"):
        sim.set_fault(Fault.down(), times=0)


# -- command line -------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_module_runs_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        listed = [process.stdout.readline() for _ in DEMO_ACCOUNTS]
        assert all(a.waba_id in line for a, line in zip(DEMO_ACCOUNTS, listed, strict=True))
        response = requests.get(url + "/", timeout=5)
        assert response.status_code == 404
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()


def test_module_stops_quietly_when_interrupted_while_printing_its_banner() -> None:
    # SIGINT as soon as the URL line is out, while the account lines are still being printed.
    for _ in range(5):
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", "--port", "0", "--api-key", "k"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("Simulated Splashify API on ")
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=10)
            assert process.returncode == 0, stderr
            assert "Traceback" not in stderr
        finally:
            process.kill()
            process.wait()


# -- benchmark knobs: scaled accounts, latency, answer cache ------------------------------------


@pytest.mark.parametrize(("count", "label_sets"), [(1, 1), (3, 7), (4, 25), (2, 250)])
def test_scaled_accounts_have_exactly_the_label_sets_asked_for(count: int, label_sets: int) -> None:
    accounts = scaled_accounts(count, label_sets)
    assert len(accounts) == count
    assert len({a.waba_id for a in accounts}) == count
    assert len({a.name for a in accounts}) == count
    for account in accounts:
        account_combos = combos(account)
        assert len(account_combos) == label_sets
        assert len({dataclasses.replace(c, base_rate=0) for c in account_combos}) == label_sets
        assert {c.phone_number for c in account_combos} <= set(account.phone_numbers)
        assert {c.country for c in account_combos} <= {code for code, _ in account.countries}


def test_scaled_accounts_are_deterministic_and_look_real() -> None:
    accounts = scaled_accounts(50, 40)
    assert accounts == scaled_accounts(50, 40)
    assert scaled_accounts(10, 40) == accounts[:10]
    values: dict[str, set[str]] = {key: set() for key in ANSWER_VALUES}
    for account in accounts:
        assert account.waba_id.isdigit() and len(account.waba_id) == 15
        assert account.customer_id is None
        assert all(p.isdigit() and len(p) == 12 for p in account.phone_numbers)
        assert len(set(account.phone_numbers)) == len(account.phone_numbers)
        assert all(len(code) == 2 and code.isupper() for code, _ in account.countries)
        for combo in combos(account):
            for key in values:
                values[key].add(getattr(combo, key))
    for key, seen in values.items():
        assert seen <= set(ANSWER_VALUES[key]), key
        assert len(seen) >= 3, key


def test_scaled_accounts_check_their_arguments() -> None:
    with pytest.raises(ValueError):
        scaled_accounts(2, 0)
    with pytest.raises(ValueError):
        scaled_accounts(-1, 5)


@pytest.mark.parametrize("hour", [0, 3, 9, 15, 21])
def test_scaled_label_sets_are_busy_in_most_buckets(hour: int) -> None:
    """Every label set shows up in a 6-hour window at any time of day, so the cardinality a
    benchmark asks for is the cardinality the exporter sees; and it is non-zero in most of
    the window's complete buckets."""
    label_sets = 30
    for account in scaled_accounts(4, label_sets):
        as_of = local_bucket(account, -1, hour) + 600
        query = AnalyticsQuery(start=as_of - 6 * HOUR, end=int(as_of), dimensions=ALL_DIMENSIONS)
        points = answer_points(account, query, as_of)
        seen = {tuple(str(p[d.point_key]) for d in DIMENSIONS) for p in points}
        assert len(seen) == label_sets
        complete = [p for p in points if int(p["end"]) <= as_of]
        buckets = {p["start"] for p in complete}
        assert len(complete) > 0.75 * label_sets * len(buckets)


def test_scaled_accounts_over_http(clock: FakeClock) -> None:
    accounts = scaled_accounts(2, 12)
    with Simulator(api_key="test-key", accounts=accounts, clock=clock) as simulator:
        response = get(simulator, QUERY, path=waba_path("v25.0", accounts[1].waba_id))
        points = response.json()["conversation_analytics"]["data"][0]["data_points"]
        assert len({tuple(p[d.point_key] for d in DIMENSIONS) for p in points}) == 12


def test_latency_holds_every_answer() -> None:
    latency = 0.25
    with Simulator(api_key="test-key", latency=latency) as simulator:
        now = int(time.time())
        query = AnalyticsQuery(start=now - 3 * HOUR, end=now, dimensions=ALL_DIMENSIONS)
        for path in (waba_path("v25.0", ACME.waba_id), "/nope"):
            began = time.monotonic()
            response = get(simulator, query, path=path)
            assert time.monotonic() - began >= latency
        assert response.status_code == 404
        recorded = simulator.requests
        assert [r.status for r in recorded] == [200, 404]
        assert all(r.answered is not None and r.answered - r.time >= latency for r in recorded)


def test_latency_default_is_none_and_negative_is_refused(sim: Simulator) -> None:
    assert sim.latency == 0
    get(sim, QUERY)
    (recorded,) = sim.requests
    assert recorded.answered == NOW  # the fake clock did not move
    with pytest.raises(ValueError, match="latency"):
        Simulator(latency=-0.1)


def test_answer_cache_is_off_by_default(sim: Simulator, clock: FakeClock) -> None:
    first = get(sim, QUERY).content
    clock.now += 600
    later = dataclasses.replace(QUERY, end=QUERY.end + 600)
    assert get(sim, later).content != first  # the bucket in progress grew
    assert sim.answer_cache_stats == (0, 0)


def test_answer_cache_answers_a_repeated_query_within_the_half_hour(clock: FakeClock) -> None:
    assert NOW % HALF_HOUR_SECONDS < HALF_HOUR_SECONDS - 600
    with Simulator(api_key="test-key", clock=clock, answer_cache=True) as simulator:
        first = get(simulator, QUERY).content
        clock.now += 600
        later = dataclasses.replace(QUERY, end=QUERY.end + 600)  # same half hour
        again = get(simulator, later)
        assert again.content == first
        assert "X-Business-Use-Case-Usage" in again.headers
        assert simulator.answer_cache_stats == (1, 1)
        # Another account, another question, or a faulty answer: not from the cache.
        other = get(simulator, later, path=waba_path("v25.0", GULF.waba_id)).json()
        assert other["id"] == GULF.waba_id
        assert get(simulator, dataclasses.replace(later, dimensions=())).content != first
        simulator.set_fault(Fault.flat(), times=1)
        assert "data_points" in get(simulator, later).json()["conversation_analytics"]
        # The next half hour is a new key: the answer is computed afresh.
        clock.now = BUCKET + HALF_HOUR_SECONDS + 60
        next_half_hour = dataclasses.replace(QUERY, end=int(clock.now))
        fresh = get(simulator, next_half_hour).json()["conversation_analytics"]
        expected = answer_points(ACME, next_half_hour, clock.now)
        assert fresh == {"data": [{"data_points": expected}]}
        assert simulator.answer_cache_stats == (1, 4)


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_module_takes_the_benchmark_flags() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.simulator",
            "--port=0",
            "--api-key=k",
            "--accounts=12",
            "--label-sets=5",
            "--latency=0.2",
            "--answer-cache",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    accounts = scaled_accounts(12, 5)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        listing = [process.stdout.readline() for _ in range(4)]
        assert accounts[0].waba_id in listing[0]
        assert accounts[-1].waba_id in listing[3]
        now = int(time.time())
        query = AnalyticsQuery(start=now - 3 * HOUR, end=now - 60, dimensions=ALL_DIMENSIONS)
        began = time.monotonic()
        response = requests.get(
            url + waba_path("v25.0", accounts[5].waba_id),
            params={"fields": build_fields(query)},
            headers={"Authorization": "Bearer k"},
            timeout=5,
        )
        assert time.monotonic() - began >= 0.2
        points = response.json()["conversation_analytics"]["data"][0]["data_points"]
        assert len({tuple(p[d.point_key] for d in DIMENSIONS) for p in points}) == 5
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("flag", ["--latency=-1", "--accounts=0", "--label-sets=0"])
def test_module_refuses_bad_benchmark_flags(flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter.simulator", "--port=0", flag],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert flag.split("=")[0] in result.stderr
