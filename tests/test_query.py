from urllib.parse import parse_qs, urlencode

import pytest

from exporter.upstream.query import (
    AnalyticsQuery,
    align_down,
    build_fields,
    customer_path,
    query_window,
    waba_path,
)
from exporter.vocabulary import HISTORY_SECONDS


def test_minimal_blob() -> None:
    assert build_fields(AnalyticsQuery(start=1693506600, end=1706725800)) == (
        "conversation_analytics.start(1693506600).end(1706725800).granularity(HALF_HOUR)"
        ".metric_types([CONVERSATION])"
    )


def test_every_optional_part_in_the_documented_order_and_spelling() -> None:
    query = AnalyticsQuery(
        start=0,
        end=1800,
        phone_numbers=("912240289385", "16505550111"),
        conversation_categories=("MARKETING", "UTILITY"),
        conversation_types=("FREE_ENTRY", "REGULAR"),
        conversation_directions=("BUSINESS_INITIATED",),
        dimensions=("CONVERSATION_CATEGORY", "PHONE"),
    )
    assert build_fields(query) == (
        "conversation_analytics.start(0).end(1800).granularity(HALF_HOUR)"
        '.phone_numbers(["912240289385","16505550111"])'
        ".metric_types([CONVERSATION])"
        ".conversation_categories([MARKETING,UTILITY])"
        ".conversation_types([FREE_ENTRY,REGULAR])"
        ".conversation_directions([BUSINESS_INITIATED])"
        '.dimensions(["CONVERSATION_CATEGORY","PHONE"])'
    )


def test_the_api_pages_curl_example_encodes_the_same_way() -> None:
    # The API page's cURL example encodes dimensions as %5B%22...%22%2C...%5D.
    query = AnalyticsQuery(
        start=1693506600, end=1706725800, granularity="MONTHLY", metric_types=(),
        dimensions=("CONVERSATION_CATEGORY", "CONVERSATION_TYPE", "COUNTRY", "PHONE"),
    )
    encoded = urlencode({"fields": build_fields(query)})
    assert encoded.endswith(
        "dimensions%28%5B%22CONVERSATION_CATEGORY%22%2C%22CONVERSATION_TYPE%22%2C%22COUNTRY"
        "%22%2C%22PHONE%22%5D%29"
    )
    assert parse_qs(encoded)["fields"] == [build_fields(query)]


@pytest.mark.parametrize(
    ("now", "lookback", "expected"),
    [
        (10_000.0, 3600, (5400, 9940)),
        (10_000.9, 3600, (5400, 9940)),  # end a margin behind now: never in the future
        (7200.0, 3600, (3600, 7140)),
        (7199.0, 1800, (3600, 7139)),  # 5399 aligns down: the oldest bucket comes whole
    ],
)
def test_query_window(now: float, lookback: float, expected: tuple[int, int]) -> None:
    assert query_window(now, lookback) == expected


@pytest.mark.parametrize("now", [HISTORY_SECONDS + 100.0, HISTORY_SECONDS + 1800.0])
def test_a_full_year_of_lookback_stays_inside_the_upstreams_history(now: float) -> None:
    start, _ = query_window(now, HISTORY_SECONDS)
    assert start % 1800 == 0
    assert now - HISTORY_SECONDS <= start < now - HISTORY_SECONDS + 1800


def test_align_down() -> None:
    assert align_down(3599) == 1800
    assert align_down(3600) == 3600
    assert align_down(0) == 0


def test_paths_escape_ids() -> None:
    assert waba_path("v25.0", "115344761664057") == "/api/v25.0/115344761664057"
    assert customer_path("cus_8f2a") == (
        "/api/v1/partner/customers/cus_8f2a/whatsapp/analytics/conversations"
    )
    assert customer_path("a/b") == (
        "/api/v1/partner/customers/a%2Fb/whatsapp/analytics/conversations"
    )
