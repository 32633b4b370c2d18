"""What to ask the upstream: the query window, the `fields=` blob and the request path.

Pure functions on plain data; the client does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from exporter.vocabulary import HALF_HOUR_SECONDS, HISTORY_SECONDS, METRIC_TYPES, Source

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


Modifiers = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class FieldQuery:
    """One field of a request beside `conversation_analytics` (`pricing_analytics`,
    `analytics`): its window and granularity, and its modifiers as (name, values) in the order
    they are written. A modifier with no values is left out of the blob."""

    field: str
    start: int
    end: int
    granularity: str = "HALF_HOUR"
    modifiers: Modifiers = ()

    def values(self, name: str) -> tuple[str, ...]:
        """The values of modifier `name` (empty when it is not there)."""
        for modifier, values in self.modifiers:
            if modifier == name:
                return values
        return ()


@dataclass(frozen=True, slots=True)
class Request:
    """Every field one request asks for, in the order the blob lists them
    (`fields=a...,b...`): one request per target and poll, whatever the sources."""

    fields: tuple[AnalyticsQuery | FieldQuery, ...]

    def field(self, name: str) -> AnalyticsQuery | FieldQuery | None:
        for query in self.fields:
            if field_name(query) == name:
                return query
        return None


QUOTED_MODIFIERS = frozenset({"phone_numbers", "dimensions", "country_codes"})
"""Modifiers whose items are strings, written quoted (`["IN","BR"]`); the others are enums or
numbers, written bare (`[VOLUME,COST]`, `[0,2]`)."""


def field_name(query: AnalyticsQuery | FieldQuery) -> str:
    return query.field if isinstance(query, FieldQuery) else FIELD


def source_query(
    source: Source,
    start: int,
    end: int,
    *,
    phone_numbers: tuple[str, ...] = (),
    filters: Modifiers = (),
    dimensions: tuple[str, ...] = (),
) -> FieldQuery:
    """The query of `source` (not conversation_analytics, which has AnalyticsQuery): the
    phone numbers, the source's metric types, its filters in the source's order, then the
    dimensions, as the API pages write them."""
    given = dict(filters)
    modifiers: Modifiers = (
        ("phone_numbers", phone_numbers),
        ("metric_types", source.metric_types),
        *((name, given.get(name, ())) for name in source.filters),
        ("dimensions", dimensions),
    )
    return FieldQuery(
        field=source.field,
        start=start,
        end=end,
        granularity=source.granularity,
        modifiers=tuple((name, values) for name, values in modifiers if values),
    )


def _field_blob(query: FieldQuery) -> str:
    parts = [
        query.field,
        f"start({query.start})",
        f"end({query.end})",
        f"granularity({query.granularity})",
    ]
    for name, values in query.modifiers:
        if values:
            render = _string_list if name in QUOTED_MODIFIERS else _enum_list
            parts.append(f"{name}({render(values)})")
    return ".".join(parts)


def build_fields(query: AnalyticsQuery | FieldQuery | Request) -> str:
    """The `fields=` value, unencoded: one field's blob, or a request's joined by commas."""
    if isinstance(query, Request):
        return ",".join(build_fields(part) for part in query.fields)
    if isinstance(query, FieldQuery):
        return _field_blob(query)
    return _conversation_blob(query)


def _conversation_blob(query: AnalyticsQuery) -> str:
    """The `fields=` value of a `conversation_analytics` query, unencoded.

    >>> _conversation_blob(AnalyticsQuery(start=0, end=1800, dimensions=("COUNTRY",)))
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
