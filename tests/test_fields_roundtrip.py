"""The simulator's `fields=` parser is the strict inverse of the exporter's `build_fields`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.simulator import FieldsError, parse_fields
from exporter.upstream.query import AnalyticsQuery, build_fields
from exporter.vocabulary import DIMENSIONS, FILTER_VALUES, GRANULARITIES


def _lists_of(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=len(values) + 1).map(tuple)


@st.composite
def queries(draw: st.DrawFn) -> AnalyticsQuery:
    start = draw(st.integers(min_value=-(2**40), max_value=2**40))
    return AnalyticsQuery(
        start=start,
        end=start + draw(st.integers(min_value=1, max_value=2**40)),
        granularity=draw(st.sampled_from(GRANULARITIES)),
        phone_numbers=draw(
            st.lists(st.text("0123456789", min_size=1, max_size=15), max_size=4).map(tuple)
        ),
        metric_types=draw(_lists_of(("CONVERSATION", "COST"))),
        conversation_categories=draw(_lists_of(FILTER_VALUES["conversation_categories"])),
        conversation_types=draw(_lists_of(FILTER_VALUES["conversation_types"])),
        conversation_directions=draw(_lists_of(FILTER_VALUES["conversation_directions"])),
        dimensions=draw(_lists_of(tuple(d.api_name for d in DIMENSIONS))),
    )


@given(queries())
def test_parse_inverts_build(query: AnalyticsQuery) -> None:
    assert parse_fields(build_fields(query)) == query


@given(queries())
def test_round_trip_through_url_encoding(query: AnalyticsQuery) -> None:
    url = "http://127.0.0.1/api/v25.0/1?" + urlencode({"fields": build_fields(query)})
    (blob,) = parse_qs(urlsplit(url).query)["fields"]
    assert parse_fields(blob) == query


EXPLICIT = [
    AnalyticsQuery(start=0, end=1800),
    AnalyticsQuery(start=1693506600, end=1706725800, granularity="MONTHLY", metric_types=()),
    AnalyticsQuery(
        start=1700000000,
        end=1700003600,
        phone_numbers=("912240289385", "96550012345"),
        conversation_categories=("AUTHENTICATION", "MARKETING", "SERVICE", "UTILITY"),
        conversation_types=("FREE_ENTRY", "FREE_TIER", "REGULAR"),
        conversation_directions=("BUSINESS_INITIATED", "USER_INITIATED"),
        dimensions=tuple(d.api_name for d in DIMENSIONS),
    ),
]


@pytest.mark.parametrize("query", EXPLICIT)
def test_explicit_round_trip(query: AnalyticsQuery) -> None:
    assert parse_fields(build_fields(query)) == query


def test_absent_parts_are_empty_tuples() -> None:
    query = parse_fields("conversation_analytics.start(1).end(2).granularity(DAILY)")
    assert query == AnalyticsQuery(start=1, end=2, granularity="DAILY", metric_types=())


def test_the_api_pages_example_parses() -> None:
    blob = (
        "conversation_analytics.start(1693506600).end(1706725800).granularity(MONTHLY)"
        '.dimensions(["CONVERSATION_CATEGORY","CONVERSATION_TYPE","COUNTRY","PHONE"])'
    )
    query = parse_fields(blob)
    assert query.dimensions == ("CONVERSATION_CATEGORY", "CONVERSATION_TYPE", "COUNTRY", "PHONE")


@pytest.mark.parametrize(
    ("part", "items", "expected"),
    [
        ("dimensions", "[PHONE,COUNTRY]", ("PHONE", "COUNTRY")),
        ("dimensions", '["PHONE",COUNTRY]', ("PHONE", "COUNTRY")),
        ("phone_numbers", "[912240289385]", ("912240289385",)),
        ("phone_numbers", '["912240289385"]', ("912240289385",)),
        ("conversation_types", '["FREE_ENTRY"]', ("FREE_ENTRY",)),
    ],
)
def test_list_items_quoted_or_bare(part: str, items: str, expected: tuple[str, ...]) -> None:
    blob = f"conversation_analytics.start(0).end(1).granularity(HALF_HOUR).{part}({items})"
    assert getattr(parse_fields(blob), part) == expected


BASE = "conversation_analytics.start(100).end(200).granularity(HALF_HOUR)"

REJECTED = {
    "empty": "",
    "other field": "analytics.start(100).end(200).granularity(DAY)",
    "unknown part": BASE + ".country_codes([IN])",
    "duplicate part": BASE + ".dimensions([PHONE]).dimensions([COUNTRY])",
    "duplicate required part": BASE + ".start(100)",
    "missing start": "conversation_analytics.end(200).granularity(HALF_HOUR)",
    "missing end": "conversation_analytics.start(100).granularity(HALF_HOUR)",
    "missing granularity": "conversation_analytics.start(100).end(200)",
    "non-integer start": "conversation_analytics.start(abc).end(200).granularity(HALF_HOUR)",
    "non-ASCII digits": "conversation_analytics.start(\u0661).end(200).granularity(HALF_HOUR)",
    "non-ASCII digit phone": BASE + '.phone_numbers(["\u0661\u0662"])',
    "fractional end": "conversation_analytics.start(100).end(200.5).granularity(HALF_HOUR)",
    "granularity DAY": "conversation_analytics.start(100).end(200).granularity(DAY)",
    "granularity MONTH": "conversation_analytics.start(100).end(200).granularity(MONTH)",
    "quoted granularity": 'conversation_analytics.start(100).end(200).granularity("DAILY")',
    "unknown metric type": BASE + ".metric_types([VOLUME])",
    "unknown category": BASE + ".conversation_categories([MARKETING_LITE])",
    "answer value as type filter": BASE + ".conversation_types([FREE_ENTRY_POINT])",
    "unknown direction": BASE + ".conversation_directions([UNKNOWN])",
    "unknown dimension": BASE + '.dimensions(["TIER"])',
    "lowercase dimension": BASE + '.dimensions(["phone"])',
    "non-digit phone": BASE + '.phone_numbers(["+912240289385"])',
    "start equals end": "conversation_analytics.start(200).end(200).granularity(HALF_HOUR)",
    "start after end": "conversation_analytics.start(300).end(200).granularity(HALF_HOUR)",
    "unclosed bracket": BASE + ".dimensions([PHONE)",
    "missing bracket": BASE + ".dimensions(PHONE)",
    "unclosed quote": BASE + '.dimensions(["PHONE])',
    "unclosed paren": "conversation_analytics.start(100.end(200).granularity(HALF_HOUR)",
    "empty list": BASE + ".dimensions([])",
    "empty item": BASE + ".dimensions([PHONE,])",
    "whitespace": BASE + ".dimensions([PHONE, COUNTRY])",
    "trailing text": BASE + "x",
    "trailing dot": BASE + ".",
    "second field": BASE + ",pricing_analytics.start(100).end(200).granularity(HALF_HOUR)",
}


@pytest.mark.parametrize("blob", REJECTED.values(), ids=REJECTED.keys())
def test_rejected(blob: str) -> None:
    with pytest.raises(FieldsError):
        parse_fields(blob)


def test_error_names_the_position() -> None:
    with pytest.raises(FieldsError, match=r'invalid granularity "DAY".* at character 55'):
        parse_fields("conversation_analytics.start(100).end(200).granularity(DAY)")
