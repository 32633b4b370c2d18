"""Sources beside conversation_analytics: `pricing_analytics` and message `analytics`.

From the config to /metrics: the config keys and their one-line errors, the one request per
target and poll, the strict blob grammar of the simulator (granularity spellings included), the
simulator's coherent answers, the parser, the shared bucket rules, the poller and the collector.
Expected values are computed from what the simulator recorded, never from the exporter's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from exporter.app import Exporter
from exporter.config import (
    Config,
    ConfigError,
    MessagesConfig,
    MessagesFilters,
    PollConfig,
    PricingConfig,
    PricingFilters,
    Secret,
    Shard,
    SplashifyConfig,
    Target,
    parse_config,
)
from exporter.pipeline.buckets import ObservedState, latest_complete_bucket
from exporter.pipeline.sharding import shard_config
from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot
from exporter.pipeline.sources import build_request, evaluate_sources
from exporter.serve.collector import ConversationCollector
from exporter.simulator import Simulator
from exporter.simulator.fields import FieldsError, parse_request
from exporter.simulator.pricing import message_points, pricing_points
from exporter.simulator.traffic import answer_points
from exporter.upstream.errors import BadResponse
from exporter.upstream.parse import AmountPoint, parse_sources
from exporter.upstream.query import (
    AnalyticsQuery,
    FieldQuery,
    Request,
    build_fields,
    query_window,
    source_query,
)
from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    MESSAGE_ANALYTICS,
    PRICING_ANALYTICS,
    PRICING_DIMENSIONS,
    PRICING_FILTER_VALUES,
    SOURCES,
    SOURCES_BY_NAME,
    DataPoint,
    Layout,
)
from tests.conftest import CUSTOMER_ACCOUNTS, DEMO_ACCOUNTS, TEST_API_KEY, WABA_ACCOUNTS

ALL = tuple(source.name for source in SOURCES)
PRICING = SOURCES_BY_NAME[PRICING_ANALYTICS]
MESSAGES = SOURCES_BY_NAME[MESSAGE_ANALYTICS]
PRICING_DIMS = tuple(d.api_name for d in PRICING_DIMENSIONS)
PRICING_KEYS = [d.point_key for d in PRICING_DIMENSIONS]
# An afternoon in India, a few minutes after a bucket boundary: every demo account is busy.
NOW = datetime(2026, 6, 10, 9, 47, 12, tzinfo=timezone.utc).timestamp()
BASE = {"splashify": {"api_key": "pk_live_abcdefgh"}, "targets": [{"waba_id": "1"}]}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(api_key=TEST_API_KEY, clock=clock) as simulator:
        yield simulator


def make_config(sim: Simulator, **changes: object) -> Config:
    targets = tuple(
        Target(name=a.name, customer_id=a.customer_id)
        if a.customer_id
        else Target(name=a.name, waba_id=a.waba_id)
        for a in DEMO_ACCOUNTS
    )
    config = Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url),
        targets=targets,
        poll=PollConfig(interval=60.0),
        sources=ALL,
    )
    return dataclasses.replace(config, **changes)


# -- config ---------------------------------------------------------------------------------------


def test_the_default_is_conversation_analytics_alone() -> None:
    config = parse_config(BASE, {})
    assert config.sources == (CONVERSATION_ANALYTICS,)
    assert config.layout == Layout.conversations(config.dimensions)
    assert config.pricing == PricingConfig(dimensions=PRICING_DIMS)
    assert config.messages == MessagesConfig()


def test_the_sources_blocks_parse_into_typed_values() -> None:
    config = parse_config(
        {
            **BASE,
            "sources": ["message_analytics", "pricing_analytics", "conversation_analytics"],
            "pricing": {
                "dimensions": ["TIER", "PRICING_CATEGORY"],
                "filters": {
                    "pricing_categories": ["UTILITY", "MARKETING"],
                    "pricing_types": ["REGULAR"],
                    "country_codes": ["${CC}", "BR"],
                },
            },
            "messages": {"filters": {"country_codes": ["KW"]}},
        },
        {"CC": "IN"},
    )
    assert config.sources == ALL  # in the vocabulary's order, whatever the file's
    assert config.pricing == PricingConfig(
        dimensions=("PRICING_CATEGORY", "TIER"),
        filters=PricingFilters(("MARKETING", "UTILITY"), ("REGULAR",), ("IN", "BR")),
    )
    assert config.messages == MessagesConfig(MessagesFilters(("KW",)))
    assert config.layout.labels(PRICING_ANALYTICS) == ("pricing_category", "tier")
    assert config.layout.dimensions(MESSAGE_ANALYTICS) == ()


SOURCE_ERRORS = [
    ({"sources": []}, "sources: must list at least one source"),
    ({"sources": "pricing_analytics"}, 'sources: expected a list, got "pricing_analytics"'),
    (
        {"sources": ["analytics"]},
        'sources[0]: unknown source "analytics" (one of conversation_analytics, '
        "pricing_analytics, message_analytics)",
    ),
    (
        {"sources": ["pricing_analytics", "pricing_analytics"]},
        'sources[1]: duplicate "pricing_analytics" (also sources[0])',
    ),
    (
        {"pricing": {"dimensions": ["CONVERSATION_TYPE"]}},
        'pricing.dimensions[0]: unknown dimension "CONVERSATION_TYPE" (one of PRICING_CATEGORY, '
        "PRICING_TYPE, COUNTRY, PHONE, TIER)",
    ),
    (
        {"pricing": {"filters": {"pricing_types": ["FREE_TIER"]}}},
        'pricing.filters.pricing_types[0]: unknown value "FREE_TIER" (one of '
        "FREE_CUSTOMER_SERVICE, FREE_ENTRY_POINT, REGULAR)",
    ),
    (
        {"pricing": {"filters": {"country_codes": ["in"]}}},
        'pricing.filters.country_codes[0]: not a country code (two capital letters, such as '
        'IN), got "in"',
    ),
    (
        {"messages": {"filters": {"country_codes": [False]}}},
        "messages.filters.country_codes[0]: expected a string, got false; quote it",
    ),
    (
        {"messages": {"filters": {"country_codes": ["KW", "KW"]}}},
        'messages.filters.country_codes[1]: duplicate "KW" (also '
        "messages.filters.country_codes[0])",
    ),
    (
        {"pricing": {"dimension": ["TIER"]}},
        "unknown key pricing.dimension (one of dimensions, filters)",
    ),
    (
        {"messages": {"filters": {"pricing_types": ["REGULAR"]}}},
        "unknown key messages.filters.pricing_types (one of country_codes)",
    ),
    ({"messages": {"dimensions": []}}, "unknown key messages.dimensions (one of filters)"),
    ({"pricing": ["TIER"]}, 'pricing: expected a mapping, got a list'),
]


@pytest.mark.parametrize(("extra", "message"), SOURCE_ERRORS)
def test_each_mistake_is_one_line_that_names_the_place(extra: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **extra}, {})
    assert str(caught.value) == message


# -- the request -----------------------------------------------------------------------------


def test_one_blob_carries_every_enabled_field_in_order() -> None:
    config = Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY)),
        targets=(Target(name="t", waba_id="1", phone_numbers=("912240289385",)),),
        dimensions=("COUNTRY",),
        sources=ALL,
        pricing=PricingConfig(
            dimensions=("PRICING_CATEGORY", "TIER"),
            filters=PricingFilters(("MARKETING",), (), ("IN", "BR")),
        ),
        messages=MessagesConfig(MessagesFilters(("KW",))),
    )
    request = build_request(config, config.targets[0], 1800, 7200)
    assert build_fields(request) == (
        'conversation_analytics.start(1800).end(7200).granularity(HALF_HOUR)'
        '.phone_numbers(["912240289385"]).metric_types([CONVERSATION]).dimensions(["COUNTRY"]),'
        'pricing_analytics.start(1800).end(7200).granularity(HALF_HOUR)'
        '.phone_numbers(["912240289385"]).metric_types([VOLUME,COST])'
        '.pricing_categories([MARKETING]).country_codes(["IN","BR"])'
        '.dimensions(["PRICING_CATEGORY","TIER"]),'
        'analytics.start(1800).end(7200).granularity(HALF_HOUR)'
        '.phone_numbers(["912240289385"]).country_codes(["KW"])'
    )
    # Through URL encoding and back, and through the simulator's strict parser.
    blob = build_fields(request)
    (decoded,) = parse_qs(urlencode({"fields": blob}))["fields"]
    assert tuple(parse_request(decoded).values()) == request.fields


def test_a_source_alone_is_one_field() -> None:
    config = parse_config({**BASE, "sources": ["message_analytics"]}, {})
    request = build_request(config, config.targets[0], 0, 1800)
    assert build_fields(request) == "analytics.start(0).end(1800).granularity(HALF_HOUR)"


def _lists_of(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), min_size=0, max_size=len(values)).map(
        lambda items: tuple(dict.fromkeys(items))
    )


@st.composite
def requests_(draw: st.DrawFn) -> Request:
    start = draw(st.integers(min_value=0, max_value=2**34))
    end = start + draw(st.integers(min_value=1, max_value=2**30))
    phones = draw(st.lists(st.text("0123456789", min_size=1, max_size=15), max_size=3))
    countries = draw(st.lists(st.sampled_from(("IN", "BR", "KW", "US")), max_size=3))
    fields: list[AnalyticsQuery | FieldQuery] = []
    if draw(st.booleans()):
        fields.append(AnalyticsQuery(start=start, end=end, phone_numbers=tuple(phones)))
    if draw(st.booleans()):
        fields.append(
            source_query(
                PRICING,
                start,
                end,
                phone_numbers=tuple(phones),
                filters=(
                    *((name, draw(_lists_of(v))) for name, v in PRICING_FILTER_VALUES.items()),
                    ("country_codes", tuple(countries)),
                ),
                dimensions=draw(_lists_of(PRICING_DIMS)),
            )
        )
    if draw(st.booleans()) or not fields:
        fields.append(
            source_query(
                MESSAGES,
                start,
                end,
                phone_numbers=tuple(phones),
                filters=(("country_codes", tuple(countries)),),
            )
        )
    return Request(tuple(fields))


@given(requests_())
def test_the_simulators_parser_inverts_the_builder(request: Request) -> None:
    assert tuple(parse_request(build_fields(request)).values()) == request.fields


P = "pricing_analytics.start(100).end(200)"
M = "analytics.start(100).end(200)"
C = "conversation_analytics.start(100).end(200).granularity(HALF_HOUR)"
REJECTED = {
    "analytics says DAY, not DAILY": M + ".granularity(DAILY)",
    "analytics says MONTH, not MONTHLY": M + ".granularity(MONTHLY)",
    "pricing says DAILY, not DAY": P + ".granularity(DAY)",
    "pricing says MONTHLY, not MONTH": P + ".granularity(MONTH)",
    "unknown pricing modifier": P + ".granularity(HALF_HOUR).product_types([0])",
    "unknown analytics modifier": M + ".granularity(HALF_HOUR).dimensions([COUNTRY])",
    "unknown pricing type": P + ".granularity(HALF_HOUR).pricing_types([FREE_TIER])",
    "unknown pricing category": P + ".granularity(HALF_HOUR).pricing_categories([PROMO])",
    "unknown pricing dimension": P + '.granularity(HALF_HOUR).dimensions(["DIRECTION"])',
    "conversation metric type": P + ".granularity(HALF_HOUR).metric_types([CONVERSATION])",
    "lower-case country": M + '.granularity(HALF_HOUR).country_codes(["in"])',
    "unknown product type": M + ".granularity(HALF_HOUR).product_types([1])",
    "missing granularity": P,
    "unknown field": C + ",message_analytics.start(1).end(2).granularity(HALF_HOUR)",
    "the same field twice": C + "," + C,
    "empty field after a comma": C + ",",
    "an error in the second field fails all": C + "," + M + ".granularity(DAILY)",
}


@pytest.mark.parametrize("blob", REJECTED.values(), ids=REJECTED.keys())
def test_the_simulator_rejects_what_the_upstream_rejects(blob: str) -> None:
    with pytest.raises(FieldsError):
        parse_request(blob)


@pytest.mark.parametrize(
    "blob",
    [M + ".granularity(DAY)", M + ".granularity(MONTH)", P + ".granularity(DAILY)",
     P + ".granularity(MONTHLY)", M + ".granularity(HALF_HOUR).product_types([0,2])"],
)
def test_each_field_takes_its_own_spelling(blob: str) -> None:
    (query,) = parse_request(blob).values()
    assert isinstance(query, FieldQuery)


@pytest.mark.parametrize("blob", list(REJECTED.values())[:6], ids=list(REJECTED)[:6])
def test_a_rejected_blob_is_http_400_code_100(sim: Simulator, blob: str) -> None:
    response = requests.get(
        f"{sim.url}/api/v25.0/{WABA_ACCOUNTS[0].waba_id}",
        params={"fields": blob},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


# -- the simulator's answers -------------------------------------------------------------------


def _window() -> tuple[int, int]:
    return query_window(NOW, 6 * 3600)


def test_the_answers_tell_one_story() -> None:
    start, end = _window()
    dims = ("CONVERSATION_CATEGORY", "CONVERSATION_DIRECTION", "CONVERSATION_TYPE")
    for account in DEMO_ACCOUNTS:
        conversations = answer_points(
            account, AnalyticsQuery(start=start, end=end, dimensions=dims), NOW
        )
        pricing = pricing_points(
            account, source_query(PRICING, start, end, dimensions=PRICING_DIMS), NOW
        )
        messages = message_points(account, source_query(MESSAGES, start, end), NOW)
        assert pricing and messages
        by_bucket: dict[int, dict[str, int]] = {}
        for point in conversations:
            if point["conversation_direction"] == "BUSINESS_INITIATED" and point[
                "conversation_category"
            ] == "MARKETING":
                by_bucket.setdefault(point["start"], {}).setdefault("conversations", 0)
                by_bucket[point["start"]]["conversations"] += point["conversation"]
        for point in pricing:
            bucket = by_bucket.setdefault(point["start"], {})
            bucket["volume"] = bucket.get("volume", 0) + point["volume"]
            if point["pricing_category"] == "MARKETING":
                bucket["marketing"] = bucket.get("marketing", 0) + point["volume"]
            # Service and entry-point traffic is free, and only tiered categories carry a tier.
            if point["pricing_category"] in ("SERVICE", "REFERRAL_CONVERSION"):
                assert point["pricing_type"] in ("FREE_CUSTOMER_SERVICE", "FREE_ENTRY_POINT")
            assert ("tier" in point) == (
                point["pricing_category"].startswith(("UTILITY", "AUTHENTICATION"))
                and point["pricing_type"] == "REGULAR"
            )
            assert ("cost" in point) == (account.customer_id is None)
            if point["pricing_type"] != "REGULAR" and "cost" in point:
                assert point["cost"] == 0
        for point in messages:
            bucket = by_bucket[point["start"]]
            assert point["delivered"] <= point["sent"]
            assert point["delivered"] == bucket["volume"]
        for start_, bucket in by_bucket.items():
            # Marketing messages are at least the marketing conversations they open.
            assert bucket.get("marketing", 0) >= bucket.get("conversations", 0), start_


def test_late_counts_only_grow() -> None:
    account = DEMO_ACCOUNTS[0]
    start, end = _window()
    query = source_query(PRICING, start, end, dimensions=PRICING_DIMS)
    knobs = {"late_seconds": 1800.0, "late_fraction": 0.3}
    early = pricing_points(account, query, NOW, **knobs)
    later = pricing_points(account, dataclasses.replace(query), NOW + 1200, **knobs)
    key = [*PRICING_KEYS, "start"]
    before = {tuple(p.get(k, "") for k in key): p["volume"] for p in early}
    after = {tuple(p.get(k, "") for k in key): p["volume"] for p in later}
    assert all(after.get(labels, 0) >= volume for labels, volume in before.items())
    assert sum(after.values()) > sum(before.values())


def test_filters_narrow_the_answers() -> None:
    account = WABA_ACCOUNTS[0]
    start, end = _window()
    query = source_query(
        PRICING,
        start,
        end,
        filters=(("pricing_types", ("REGULAR",)), ("country_codes", ("IN",))),
        dimensions=("PRICING_TYPE", "COUNTRY"),
    )
    points = pricing_points(account, query, NOW)
    assert points and {(p["pricing_type"], p["country"]) for p in points} == {("REGULAR", "IN")}
    templates = message_points(
        account, FieldQuery("analytics", start, end, modifiers=(("product_types", ("0",)),)), NOW
    )
    everything = message_points(account, source_query(MESSAGES, start, end), NOW)
    assert 0 < sum(p["sent"] for p in templates) < sum(p["sent"] for p in everything)


def test_the_simulator_answers_every_field_of_one_request(sim: Simulator) -> None:
    config = make_config(sim)
    target = config.targets[0]
    start, end = query_window(NOW, config.poll.lookback)
    response = requests.get(
        f"{sim.url}/api/v25.0/{target.waba_id}",
        params={"fields": build_fields(build_request(config, target, start, end))},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert {"conversation_analytics", "pricing_analytics", "analytics", "id"} == set(body)
    assert body["analytics"]["granularity"] == "HALF_HOUR"
    assert "data" not in body["analytics"]  # message analytics come flat
    (recorded,) = sim.requests
    assert set(recorded.fields) == {"conversation_analytics", "pricing_analytics", "analytics"}
    assert recorded.query == recorded.fields["conversation_analytics"]


# -- the parser -------------------------------------------------------------------------------


LAYOUT = Layout(
    (
        (CONVERSATION_ANALYTICS, ("COUNTRY",)),
        (PRICING_ANALYTICS, ("PRICING_CATEGORY", "TIER")),
        (MESSAGE_ANALYTICS, ()),
    )
)


def test_each_field_is_read_by_the_same_rules() -> None:
    body = {
        "id": "1",
        "conversation_analytics": {"data": [{"data_points": [
            {"start": 0, "end": 1800, "conversation": 2, "country": "IN"}]}]},
        "pricing_analytics": {"data": [{"data_points": [
            {"start": 1800, "end": 3600, "volume": "7", "cost": "0.125",
             "pricing_category": "UTILITY", "tier": "0:25000"},
            {"start": 1800, "end": 3600, "volume": 3, "pricing_category": "SERVICE"}]}]},
        "analytics": {"granularity": "HALF_HOUR", "data_points": [
            {"start": 0, "end": 1800, "sent": 10, "delivered": 9.0}]},
    }
    answer = parse_sources(body, LAYOUT)
    assert answer.waba_id == "1"
    assert answer.sources[CONVERSATION_ANALYTICS].counts == {
        "conversation": (DataPoint(0, 1800, 2, ("IN",)),)
    }
    pricing = answer.sources[PRICING_ANALYTICS]
    assert pricing.counts == {"volume": (
        DataPoint(1800, 3600, 7, ("UTILITY", "0:25000")),
        DataPoint(1800, 3600, 3, ("SERVICE", "")),
    )}
    # Cost where the points carry it, nothing invented where they do not.
    assert pricing.amounts == {"cost": (AmountPoint(1800, ("UTILITY", "0:25000"), 0.125),)}
    assert answer.sources[MESSAGE_ANALYTICS].counts == {
        "sent": (DataPoint(0, 1800, 10, ()),),
        "delivered": (DataPoint(0, 1800, 9, ()),),
    }


def test_a_field_left_out_is_no_data() -> None:
    answer = parse_sources({"id": "1"}, LAYOUT)
    assert answer.sources[PRICING_ANALYTICS].counts == {"volume": ()}
    assert answer.sources[MESSAGE_ANALYTICS].counts == {"sent": (), "delivered": ()}
    assert not answer.sources[PRICING_ANALYTICS].amounts


@pytest.mark.parametrize(
    ("field", "point", "where"),
    [
        ("pricing_analytics", {"start": 0, "end": 1800}, "missing 'volume'"),
        ("pricing_analytics", {"start": 0, "end": 1800, "volume": -1}, "volume: implausible"),
        ("pricing_analytics", {"start": 0, "end": 1800, "volume": 1, "cost": "x"}, "cost"),
        ("pricing_analytics", {"start": 0, "end": 1800, "volume": 1, "cost": -2}, "cost"),
        ("pricing_analytics", {"start": 0, "end": 1800, "volume": 1, "cost": True}, "cost"),
        ("pricing_analytics", {"start": 0, "end": 86400, "volume": 1}, "not a half-hour"),
        ("analytics", {"start": 0, "end": 1800, "sent": 1}, "missing 'delivered'"),
        ("analytics", {"start": 0, "end": 1800, "sent": 1, "delivered": 1.5}, "delivered"),
    ],
)
def test_a_broken_point_of_any_field_is_a_bad_response(field: str, point: dict, where: str):
    with pytest.raises(BadResponse, match=where) as caught:
        parse_sources({field: {"data_points": [point]}}, LAYOUT)
    assert str(caught.value).startswith(f"{field}.")


# -- the bucket rules, per source ------------------------------------------------------------------


def test_every_value_key_is_bucketed_zero_filled_and_counted_alone() -> None:
    reported = latest_complete_bucket(NOW, 1800)
    window_start = reported - 4 * 1800
    older = reported - 1800
    answer = parse_sources(
        {"pricing_analytics": {"data_points": [
            {"start": older, "end": older + 1800, "volume": 5, "cost": 0.5,
             "pricing_category": "MARKETING"},
            {"start": reported, "end": reported + 1800, "volume": 2, "cost": 0.25,
             "pricing_category": "UTILITY"}]},
         "analytics": {"data_points": [
             {"start": reported, "end": reported + 1800, "sent": 4, "delivered": 3}]}},
        LAYOUT,
    ).sources
    results, states = evaluate_sources(
        answer, LAYOUT, now=NOW, delay=1800, window_start=window_start, previous={}
    )
    pricing = results[PRICING_ANALYTICS]
    assert pricing.bucket_start == reported
    assert dict(pricing.gauges["volume"]) == {("MARKETING", ""): 0, ("UTILITY", ""): 2}
    assert dict(pricing.gauges["cost"]) == {("MARKETING", ""): 0, ("UTILITY", ""): 0.25}
    assert dict(pricing.totals["volume"]) == {("MARKETING", ""): 5, ("UTILITY", ""): 2}
    messages = results[MESSAGE_ANALYTICS]
    assert dict(messages.gauges["sent"]) == {(): 4}
    assert dict(messages.gauges["delivered"]) == {(): 3}
    assert set(states) == {
        (CONVERSATION_ANALYTICS, "conversation"),
        (PRICING_ANALYTICS, "volume"),
        (MESSAGE_ANALYTICS, "sent"),
        (MESSAGE_ANALYTICS, "delivered"),
    }
    # The next poll's answer leaves pricing out: its series read 0, its counter holds, no cost.
    again, _ = evaluate_sources(
        {}, LAYOUT, now=NOW + 60, delay=1800, window_start=window_start, previous=states
    )
    assert dict(again[PRICING_ANALYTICS].gauges["volume"]) == {
        ("MARKETING", ""): 0, ("UTILITY", ""): 0
    }
    assert "cost" not in again[PRICING_ANALYTICS].gauges
    assert dict(again[PRICING_ANALYTICS].totals["volume"]) == dict(pricing.totals["volume"])
    assert dict(again[MESSAGE_ANALYTICS].totals["sent"]) == {(): 4}
    assert dict(again[MESSAGE_ANALYTICS].totals["delivered"]) == {(): 3}
    assert isinstance(states[MESSAGE_ANALYTICS, "sent"], ObservedState)


# -- end to end: one request per target and poll, the metrics of the contract ----------------------


def family(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from tests.conftest import parse_metrics

    (metric,) = [f for f in parse_metrics(exposition).values() if f.name == name]
    return {tuple(sorted(s.labels.items())): s.value for s in metric.samples}


def test_one_request_per_target_carries_every_source_and_the_metrics_match(
    sim: Simulator, clock: Clock
) -> None:
    exporter = Exporter(make_config(sim), clock=clock)
    assert exporter.poll_all_once()
    assert len(sim.requests) == len(DEMO_ACCOUNTS)
    for request in sim.requests:
        assert set(request.fields) == {"conversation_analytics", "pricing_analytics", "analytics"}
    text = exporter.exposition().decode()
    reported = latest_complete_bucket(NOW, 1800)
    volume = family(text, "whatsapp_pricing_volume")
    cost = family(text, "whatsapp_pricing_cost")
    sent = family(text, "whatsapp_messages_sent")
    delivered_total = family(text, "whatsapp_messages_delivered_observed")
    for request in sim.requests:
        account = sim.account(request.account_waba_id)
        labels = (("waba_id", account.waba_id), ("waba_name", account.name))
        points = pricing_points(account, request.fields["pricing_analytics"], request.time)
        expected: dict[tuple, int] = {}
        for point in points:
            key = tuple(sorted((*labels, *((d.label, point.get(d.point_key, ""))
                                          for d in PRICING_DIMENSIONS))))
            expected.setdefault(key, 0)
            if point["start"] == reported:
                expected[key] += point["volume"]
        mine = {k: v for k, v in volume.items() if dict(k)["waba_name"] == account.name}
        assert mine == expected and sum(mine.values()) > 0
        costs = {k: v for k, v in cost.items() if dict(k)["waba_name"] == account.name}
        assert (set(costs) == set(mine)) == (account.customer_id is None)
        assert bool(costs) == (account.customer_id is None)
        messages = message_points(account, request.fields["analytics"], request.time)
        (in_bucket,) = [p for p in messages if p["start"] == reported]
        assert sent[tuple(sorted(labels))] == in_bucket["sent"]
        # A fresh counter counts none of the history of its first poll, as for conversations.
        assert delivered_total[tuple(sorted(labels))] == 0
    starts = family(text, "whatsapp_pricing_bucket_start_timestamp_seconds")
    assert set(starts.values()) == {float(reported)} and len(starts) == len(DEMO_ACCOUNTS)
    # Half an hour later one more bucket is complete: the counters add exactly it.
    sim.clear_requests()
    clock.now += 1800
    assert exporter.poll_all_once()
    text = exporter.exposition().decode()
    delivered_total = family(text, "whatsapp_messages_delivered_observed")
    volume_total = family(text, "whatsapp_pricing_volume_observed")
    for request in sim.requests:
        account = sim.account(request.account_waba_id)
        labels = (("waba_id", account.waba_id), ("waba_name", account.name))
        messages = message_points(account, request.fields["analytics"], request.time)
        (newly,) = [p for p in messages if p["start"] == reported + 1800]
        assert delivered_total[tuple(sorted(labels))] == newly["delivered"] > 0
        points = pricing_points(account, request.fields["pricing_analytics"], request.time)
        mine = sum(v for k, v in volume_total.items() if dict(k)["waba_name"] == account.name)
        assert mine == sum(p["volume"] for p in points if p["start"] == reported + 1800)


def test_counters_of_a_source_carry_over_while_another_is_added(
    sim: Simulator, clock: Clock
) -> None:
    exporter = Exporter(make_config(sim, sources=(CONVERSATION_ANALYTICS,)), clock=clock)
    assert exporter.poll_all_once()
    clock.now += 1800
    assert exporter.poll_all_once()
    before = family(exporter.exposition().decode(), "whatsapp_conversations_observed")
    assert sum(before.values()) > 0
    clock.now += 1800  # one more bucket completes
    exporter.reload(make_config(sim, sources=ALL))
    assert exporter.poll_all_once()
    text = exporter.exposition().decode()
    after = family(text, "whatsapp_conversations_observed")
    # Conversations went on counting (no reset: the new bucket added) ...
    assert all(after[key] >= value for key, value in before.items())
    assert sum(after.values()) > sum(before.values())
    # ... while pricing starts fresh: its series exist, its first poll counts nothing ...
    assert set(family(text, "whatsapp_pricing_volume_observed").values()) == {0.0}
    clock.now += 1800
    assert exporter.poll_all_once()
    text = exporter.exposition().decode()
    # ... and the next one counts the bucket that completed since.
    assert sum(family(text, "whatsapp_pricing_volume_observed").values()) > 0


def test_the_store_refuses_a_snapshot_of_another_layout() -> None:
    store = SnapshotStore(("COUNTRY",), LAYOUT)
    old = TargetSnapshot("a", "1", True, 0.1, dimensions=("COUNTRY",))  # conversations alone
    assert not store.put(old)
    assert store.put(dataclasses.replace(old, layout=LAYOUT))


def test_families_of_disabled_sources_are_not_served() -> None:
    conversations_only = ConversationCollector(SnapshotStore(("COUNTRY",)), 3600)
    names = {metric.name for metric in conversations_only.describe()}
    assert "whatsapp_conversations" in names
    assert not {n for n in names if n.startswith(("whatsapp_pricing", "whatsapp_messages"))}
    pricing_only = Layout(((PRICING_ANALYTICS, ("TIER",)),))
    collector = ConversationCollector(SnapshotStore(("COUNTRY",), pricing_only), 3600)
    described = {metric.name: metric for metric in collector.describe()}
    assert "whatsapp_conversations" not in described
    assert "whatsapp_messages_sent" not in described
    assert "whatsapp_exporter_poll_success" in described
    assert "whatsapp_pricing_volume" in described


@pytest.mark.parametrize("customer", CUSTOMER_ACCOUNTS, ids=lambda a: a.name)
def test_a_partner_customer_gets_volume_without_cost(sim: Simulator, clock: Clock, customer):
    target = Target(name=customer.name, customer_id=customer.customer_id)
    config = make_config(sim, targets=(target,))
    exporter = Exporter(config, clock=clock)
    assert exporter.poll_all_once()
    text = exporter.exposition().decode()
    assert sum(family(text, "whatsapp_pricing_volume").values()) > 0
    assert family(text, "whatsapp_pricing_cost") == {}


def test_shards_split_every_source_by_target(sim: Simulator, clock: Clock) -> None:
    config = make_config(sim)
    owners: dict[str, list[int]] = {}
    for index in range(2):
        exporter = Exporter(shard_config(config, Shard(index, 2)), clock=clock)
        assert exporter.poll_all_once()
        text = exporter.exposition().decode()
        for name in ("whatsapp_pricing_volume", "whatsapp_messages_delivered_observed"):
            for waba in {dict(labels)["waba_name"] for labels in family(text, name)}:
                owners.setdefault(f"{name} {waba}", []).append(index)
    expected = {f"{n} {a.name}" for n in ("whatsapp_pricing_volume",
                                          "whatsapp_messages_delivered_observed")
                for a in DEMO_ACCOUNTS}
    assert set(owners) == expected
    assert all(len(shards) == 1 for shards in owners.values())  # polled once, by one replica


# -- persistence: every counter of every source, one row each -------------------------------------


def _state(size: int, seed: int) -> ObservedState:
    from array import array

    index = {(f"L{n}",) if size else (): n for n in range(max(size, 1))}
    width = len(index)
    return ObservedState(
        index=index,
        total_values=array("q", [seed + n for n in range(width)]),
        last_seen=array("q", [seed] * width),
        floor=seed,
    )


def test_every_counter_is_saved_and_restored_under_its_own_source(tmp_path) -> None:
    from exporter.pipeline.persistence import open_state_file

    target = Target(name="acme", waba_id="1001")
    config = Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY)),
        targets=(target,),
        dimensions=("COUNTRY",),
        sources=ALL,
        pricing=PricingConfig(dimensions=("TIER",)),
    )
    states = {
        (CONVERSATION_ANALYTICS, "conversation"): _state(2, 10),
        (PRICING_ANALYTICS, "volume"): _state(3, 20),
        (MESSAGE_ANALYTICS, "sent"): _state(0, 30),
        (MESSAGE_ANALYTICS, "delivered"): _state(0, 40),
    }
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    assert state_file.save(target, config, states)
    state_file.close()

    again = open_state_file(path)
    restored = again.restore(config)["acme"]
    assert {key: state.floor for key, state in restored.items()} == {
        key: state.floor for key, state in states.items()
    }
    assert list(restored[PRICING_ANALYTICS, "volume"].index) == [("L0",), ("L1",), ("L2",)]
    again.close()

    # Other pricing dimensions: pricing starts afresh, the other sources go on.
    changed = dataclasses.replace(config, pricing=PricingConfig(dimensions=("COUNTRY",)))
    third = open_state_file(path)
    assert set(third.restore(changed)["acme"]) == set(states) - {(PRICING_ANALYTICS, "volume")}
    third.close()

    # A source no longer read: its rows go (its counting stopped), the others' stay.
    conversations_only = dataclasses.replace(config, sources=(CONVERSATION_ANALYTICS,))
    fourth = open_state_file(path)
    assert set(fourth.restore(conversations_only)["acme"]) == {
        (CONVERSATION_ANALYTICS, "conversation")
    }
    fourth.close()
    fifth = open_state_file(path)
    assert set(fifth.restore(config)["acme"]) == {(CONVERSATION_ANALYTICS, "conversation")}
    fifth.close()


def test_a_restart_with_a_state_file_goes_on_counting_every_source(
    sim: Simulator, clock: Clock, tmp_path
) -> None:
    from exporter.pipeline.persistence import open_state_file

    path = str(tmp_path / "state.db")
    config = make_config(sim, targets=make_config(sim).targets[:1])
    state_file = open_state_file(path)
    first = Exporter(config, clock=clock, state_file=state_file)
    assert first.poll_all_once()
    clock.now += 1800
    assert first.poll_all_once()
    before = first.exposition().decode()
    counters = ("whatsapp_conversations_observed", "whatsapp_pricing_volume_observed",
                "whatsapp_messages_sent_observed", "whatsapp_messages_delivered_observed")
    totals = {name: sum(family(before, name).values()) for name in counters}
    assert all(totals.values()), totals
    first.stop()
    state_file.close()

    clock.now += 1800  # one more bucket completes while no process polls
    state_file = open_state_file(path)
    second = Exporter(config, clock=clock, state_file=state_file)
    assert second.poll_all_once()
    after = second.exposition().decode()
    for name in counters:
        # No reset: each counter goes on from its value, and counts the bucket it missed.
        assert sum(family(after, name).values()) > totals[name], name
        assert all(family(after, name)[k] >= v for k, v in family(before, name).items()), name
    second.stop()
    state_file.close()
