"""What to ask the upstream: the query window, the `fields=` blob and the request path.

Pure functions on plain data; the client does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from exporter.vocabulary import HALF_HOUR_SECONDS, HISTORY_SECONDS, METRIC_TYPES

FIELD = "conversation_analytics"


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """One `conversation_analytics` request; empty tuples are left out of the blob."""

    start: int
    end: int
    granularity: str = "HALF_HOUR"
    phone_numbers: tuple[str, ...] = ()
    metric_types: tuple[str, ...] = METRIC_TYPES
    conversation_categories: tuple[str, ...] = ()
    conversation_types: tuple[str, ...] = ()
    conversation_directions: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()


def align_down(timestamp: float, step: int = HALF_HOUR_SECONDS) -> int:
    """The start of the `step`-long bucket holding `timestamp` (buckets fall on UTC multiples)."""
    return int(timestamp // step) * step


END_MARGIN_SECONDS = 60
"""`end` stays this far behind our clock: the upstream rejects an `end` in the future, and our
clock may run a little ahead of Meta's."""


def query_window(now: float, lookback_seconds: float) -> tuple[int, int]:
    """(start, end) of the window a poll re-reads.

    start is aligned down to a bucket boundary so that the oldest bucket comes whole, unless
    that would reach past the history the upstream keeps; end is clamped a margin before now.
    """
    start = align_down(now - lookback_seconds)
    if start < now - HISTORY_SECONDS:
        start += HALF_HOUR_SECONDS
    return start, int(now) - END_MARGIN_SECONDS


def _enum_list(values: tuple[str, ...]) -> str:
    return "[" + ",".join(values) + "]"


def _string_list(values: tuple[str, ...]) -> str:
    return "[" + ",".join(f'"{v}"' for v in values) + "]"


def build_fields(query: AnalyticsQuery) -> str:
    """The `fields=` value, unencoded.

    >>> build_fields(AnalyticsQuery(start=0, end=1800, dimensions=("COUNTRY",)))
    'conversation_analytics.start(0).end(1800).granularity(HALF_HOUR).metric_types([CONVERSATION]).dimensions(["COUNTRY"])'

    Enum lists are bare (`[A,B]`); phone numbers and dimensions are quoted strings, as in the
    API page's example.
    """
    parts = [
        FIELD,
        f"start({query.start})",
        f"end({query.end})",
        f"granularity({query.granularity})",
    ]
    optional = (
        ("phone_numbers", query.phone_numbers, _string_list),
        ("metric_types", query.metric_types, _enum_list),
        ("conversation_categories", query.conversation_categories, _enum_list),
        ("conversation_types", query.conversation_types, _enum_list),
        ("conversation_directions", query.conversation_directions, _enum_list),
        ("dimensions", query.dimensions, _string_list),
    )
    parts.extend(f"{name}({render(values)})" for name, values, render in optional if values)
    return ".".join(parts)


def waba_path(api_version: str, waba_id: str) -> str:
    """The Graph passthrough route for a WABA."""
    return f"/api/{quote(api_version, safe='')}/{quote(waba_id, safe='')}"


def customer_path(customer_id: str) -> str:
    """The partner route for a customer (answers with the customer's WABA `id`)."""
    return (
        f"/api/v1/partner/customers/{quote(customer_id, safe='')}/whatsapp/analytics/conversations"
    )
