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
