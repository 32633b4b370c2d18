"""The upstream's vocabulary: one spelling of every dimension, filter and value."""

from __future__ import annotations

import re

from exporter.vocabulary import (
    ANSWER_VALUES,
    DIMENSIONS,
    DIMENSIONS_BY_NAME,
    FILTER_TO_ANSWER_VALUE,
    FILTER_VALUES,
    GRANULARITIES,
    HALF_HOUR_SECONDS,
    DataPoint,
)

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def test_dimensions_are_the_documented_five_in_label_order() -> None:
    assert [d.api_name for d in DIMENSIONS] == [
        "CONVERSATION_CATEGORY",
        "CONVERSATION_DIRECTION",
        "CONVERSATION_TYPE",
        "COUNTRY",
        "PHONE",
    ]
    assert [d.label for d in DIMENSIONS] == [
        "conversation_category",
        "conversation_direction",
        "conversation_type",
        "country",
        "phone_number",
    ]
    assert {d.api_name: d for d in DIMENSIONS} == DIMENSIONS_BY_NAME


def test_labels_are_prometheus_label_names_and_distinct_from_the_target_labels() -> None:
    labels = [d.label for d in DIMENSIONS]
    assert all(LABEL_NAME.fullmatch(label) and not label.startswith("__") for label in labels)
    assert len(set(labels)) == len(labels)
    assert not set(labels) & {"waba_id", "waba_name"}


def test_filters_and_answers_use_the_same_words() -> None:
    assert set(FILTER_VALUES) == {
        "conversation_categories",
        "conversation_types",
        "conversation_directions",
    }
    # Every documented filter value shows up in answers, spelled as answers spell it.
    for key, answer_key in (
        ("conversation_categories", "conversation_category"),
        ("conversation_types", "conversation_type"),
        ("conversation_directions", "conversation_direction"),
    ):
        for value in FILTER_VALUES[key]:
            assert FILTER_TO_ANSWER_VALUE.get(value, value) in ANSWER_VALUES[answer_key]


def test_granularity_and_bucket_width() -> None:
    assert GRANULARITIES[0] == "HALF_HOUR" and "DAY" not in GRANULARITIES
    assert HALF_HOUR_SECONDS == 30 * 60


def test_a_data_point_is_a_plain_tuple() -> None:
    point = DataPoint(1800, 3600, 4, ("MARKETING", "IN"))
    assert point == (1800, 3600, 4, ("MARKETING", "IN"))
    assert point.conversations == 4 and point.labels[1] == "IN"
