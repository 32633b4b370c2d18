"""The upstream's vocabulary: dimensions, enum values and the shape of one data point.

Everything that names an upstream concept lives here, so that the config loader, the query
builder, the response parser and the simulator agree on one spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

HALF_HOUR_SECONDS = 1800
"""HALF_HOUR buckets fall on :00 and :30 UTC."""

HISTORY_SECONDS = 365 * 86400
"""How far back the upstream answers; asking for more is an error, not an empty answer."""

GRANULARITIES = ("HALF_HOUR", "DAILY", "MONTHLY")
"""Spelling of `conversation_analytics` (the sibling `analytics` field says DAY/MONTH: a trap)."""


@dataclass(frozen=True, slots=True)
class Dimension:
    """One breakdown the API offers, and where it shows up in an answer and on /metrics."""

    api_name: str
    """As written in `dimensions([...])`."""
    point_key: str
    """The key a data point carries when this dimension was asked for."""
    label: str
    """The Prometheus label name (docs/contract.md)."""


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("CONVERSATION_CATEGORY", "conversation_category", "conversation_category"),
    Dimension("CONVERSATION_DIRECTION", "conversation_direction", "conversation_direction"),
    Dimension("CONVERSATION_TYPE", "conversation_type", "conversation_type"),
    Dimension("COUNTRY", "country", "country"),
    Dimension("PHONE", "phone_number", "phone_number"),
)
"""In the documented label order (docs/contract.md); label tuples everywhere follow this order."""

DIMENSIONS_BY_NAME: dict[str, Dimension] = {d.api_name: d for d in DIMENSIONS}

# Filter values as the API page documents them. Answers carry more (see ANSWER_VALUES); a
# filter is only sent with documented values, because the upstream rejects what it does not know.
FILTER_VALUES: dict[str, tuple[str, ...]] = {
    "conversation_categories": ("AUTHENTICATION", "MARKETING", "SERVICE", "UTILITY"),
    "conversation_types": ("FREE_ENTRY", "FREE_TIER", "REGULAR"),
    "conversation_directions": ("BUSINESS_INITIATED", "USER_INITIATED"),
}

METRIC_TYPES = ("CONVERSATION",)
"""The only metric type that is reliable for partner-billed accounts."""

# Values seen in real answers (docs/upstream.md). The exporter never rejects an unknown value;
# this table only feeds the simulator, so that it answers like the real thing.
ANSWER_VALUES: dict[str, tuple[str, ...]] = {
    "conversation_category": (
        "MARKETING",
        "UTILITY",
        "AUTHENTICATION",
        "AUTHENTICATION_INTERNATIONAL",
        "SERVICE",
        "MARKETING_LITE",
    ),
    "conversation_type": ("REGULAR", "FREE_ENTRY_POINT", "FREE_TIER", "UNKNOWN"),
    "conversation_direction": ("BUSINESS_INITIATED", "USER_INITIATED", "UNKNOWN"),
}

# The documented filter value FREE_ENTRY shows up as FREE_ENTRY_POINT in answers.
FILTER_TO_ANSWER_VALUE = {"FREE_ENTRY": "FREE_ENTRY_POINT"}


class DataPoint(NamedTuple):
    """One bucket of one label set, as parsed from an answer.

    `labels` holds the values of the configured dimensions in DIMENSIONS order; a value the
    answer left out is "".

    A named tuple rather than a frozen dataclass: an answer holds thousands of points and a
    frozen dataclass's __init__ (one object.__setattr__ per field) costs several times more.
    """

    start: int
    end: int
    conversations: int
    labels: tuple[str, ...]


# -- sources: the analytics fields the exporter reads -----------------------------------------

CONVERSATION_ANALYTICS = "conversation_analytics"
PRICING_ANALYTICS = "pricing_analytics"
MESSAGE_ANALYTICS = "message_analytics"

PRICING_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("PRICING_CATEGORY", "pricing_category", "pricing_category"),
    Dimension("PRICING_TYPE", "pricing_type", "pricing_type"),
    Dimension("COUNTRY", "country", "country"),
    Dimension("PHONE", "phone_number", "phone_number"),
    Dimension("TIER", "tier", "tier"),
)
"""In label order; all five are enabled unless `pricing.dimensions` says otherwise."""

PRICING_FILTER_VALUES: dict[str, tuple[str, ...]] = {
    "pricing_categories": (
        "AUTHENTICATION",
        "AUTHENTICATION_INTERNATIONAL",
        "MARKETING",
        "MARKETING_LITE",
        "REFERRAL_CONVERSION",
        "SERVICE",
        "UTILITY",
    ),
    "pricing_types": ("FREE_CUSTOMER_SERVICE", "FREE_ENTRY_POINT", "REGULAR"),
}

COUNTRY_CODES = "country_codes"
"""A filter of ISO 3166-1 alpha-2 codes (`IN`, `BR`): free text to the vocabulary, checked by
form in the config."""

PRICING_METRIC_TYPES = ("VOLUME", "COST")
"""Both are asked for; `cost` is simply absent from answers for partner-billed accounts."""

MESSAGE_GRANULARITIES = ("HALF_HOUR", "DAY", "MONTH")
"""How the message `analytics` field spells granularities (not DAILY/MONTHLY: the trap)."""

# Pricing values seen in answers, for the simulator (the exporter passes any value through).
PRICING_ANSWER_VALUES: dict[str, tuple[str, ...]] = {
    "pricing_category": (*ANSWER_VALUES["conversation_category"], "REFERRAL_CONVERSION"),
    "pricing_type": PRICING_FILTER_VALUES["pricing_types"],
}


@dataclass(frozen=True, slots=True)
class Source:
    """One analytics field the exporter can read, as a description: the poller, the parser and
    the bucket rules are the same code for every source, driven by these fields."""

    name: str
    """As written in the config's `sources:`."""
    field: str
    """As written in `fields=`, and the answer's top-level key."""
    dimensions: tuple[Dimension, ...]
    """Every breakdown the field offers, in label order (empty: per-account totals only)."""
    counts: tuple[str, ...]
    """Point keys of the whole-number values that are reported per bucket and counted."""
    amounts: tuple[str, ...] = ()
    """Point keys of values reported per bucket but never counted, and only when answers carry
    them (pricing's `cost`)."""
    granularity: str = "HALF_HOUR"
    """The half-hour granularity, as this field spells it."""
    granularities: tuple[str, ...] = GRANULARITIES
    """Every granularity this field takes, as it spells them."""
    filters: tuple[str, ...] = ()
    """The filter modifiers the config may pass through, in the order they are written (after
    `phone_numbers` and `metric_types`, before `dimensions`)."""
    metric_types: tuple[str, ...] = ()
    """Sent as `metric_types([...])` when not empty."""

    def dimension(self, api_name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.api_name == api_name:
                return dimension
        raise KeyError(api_name)

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.api_name for d in self.dimensions)


SOURCES: tuple[Source, ...] = (
    Source(
        name=CONVERSATION_ANALYTICS,
        field="conversation_analytics",
        dimensions=DIMENSIONS,
        counts=("conversation",),
        filters=tuple(FILTER_VALUES),
        metric_types=METRIC_TYPES,
    ),
    Source(
        name=PRICING_ANALYTICS,
        field="pricing_analytics",
        dimensions=PRICING_DIMENSIONS,
        counts=("volume",),
        amounts=("cost",),
        filters=("pricing_categories", "pricing_types", COUNTRY_CODES),
        metric_types=PRICING_METRIC_TYPES,
    ),
    Source(
        name=MESSAGE_ANALYTICS,
        field="analytics",
        dimensions=(),
        counts=("sent", "delivered"),
        granularities=MESSAGE_GRANULARITIES,
        filters=(COUNTRY_CODES,),
    ),
)
"""In the order requests and /metrics list them."""

SOURCES_BY_NAME: dict[str, Source] = {s.name: s for s in SOURCES}
SOURCES_BY_FIELD: dict[str, Source] = {s.field: s for s in SOURCES}


@dataclass(frozen=True, slots=True)
class Layout:
    """The series a config makes: every enabled source, with the dimensions (API names) it is
    broken down by, in SOURCES order. Two polls whose layouts differ label different things."""

    sources: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def conversations(cls, dimensions: tuple[str, ...]) -> Layout:
        """conversation_analytics alone: what every config was before sources."""
        return cls(((CONVERSATION_ANALYTICS, tuple(dimensions)),))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.sources)

    def enabled(self, name: str) -> bool:
        return any(source == name for source, _ in self.sources)

    def dimensions(self, name: str) -> tuple[str, ...]:
        """The enabled dimensions of source `name` (empty when it is not enabled)."""
        for source, dimensions in self.sources:
            if source == name:
                return dimensions
        return ()

    def labels(self, name: str) -> tuple[str, ...]:
        """The dimension label names of source `name`, in label order."""
        source = SOURCES_BY_NAME[name]
        return tuple(source.dimension(d).label for d in self.dimensions(name))
