"""Property-based tests: no upstream answer or header makes the parsing code raise anything but
its typed errors."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.upstream.client import parse_retry_after, regain_access_seconds
from exporter.upstream.errors import BadResponse, UpstreamError, classify
from exporter.upstream.parse import Answer, parse_answer
from exporter.vocabulary import DIMENSIONS

ALL_DIMENSIONS = tuple(d.api_name for d in DIMENSIONS)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)

# Answers close to the real shape, so that the deep paths are reached, not only the top check.
point = st.fixed_dictionaries(
    {},
    optional={
        "start": json_values | st.integers(0, 10**10).map(lambda n: n - n % 1800),
        "end": json_values | st.integers(0, 10**10),
        "conversation": json_values | st.integers(-3, 10**6),
        "country": json_values,
        "phone_number": json_values,
        "conversation_category": json_values,
    },
)
near_answers = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "conversation_analytics": json_values
        | st.fixed_dictionaries({"data": st.lists(
            st.fixed_dictionaries({"data_points": st.lists(point, max_size=5)}), max_size=3)})
        | st.fixed_dictionaries({"data_points": st.lists(point, max_size=5)}),
    },
)


@settings(max_examples=700)
@given(body=json_values | near_answers, dimensions=st.sampled_from(
    [ALL_DIMENSIONS, (), ("COUNTRY",), ("PHONE", "CONVERSATION_CATEGORY")]))
def test_parse_answer_returns_an_answer_or_raises_bad_response(body, dimensions) -> None:
    try:
        answer = parse_answer(body, dimensions)
    except BadResponse:
        return
    assert isinstance(answer, Answer)
    for data_point in answer.points:
        assert data_point.start % 1800 == 0 and data_point.end - data_point.start == 1800
        assert data_point.conversations >= 0
        assert len(data_point.labels) == len(dimensions)
        assert all(isinstance(label, str) for label in data_point.labels)


@settings(max_examples=700)
@given(status=st.integers(100, 599), body=json_values | st.fixed_dictionaries(
    {"error": st.fixed_dictionaries({}, optional={"code": json_values | st.integers(),
                                                  "message": json_values})})
    | st.fixed_dictionaries({"success": json_values, "message": json_values}))
def test_classify_returns_a_typed_error_or_none(status: int, body: object) -> None:
    error = classify(status, body)
    assert error is None or isinstance(error, UpstreamError)
    if error is None:
        assert 200 <= status < 300
    assert error is not None or not (isinstance(body, dict) and isinstance(body.get("error"),
                                                                             dict))


@settings(max_examples=500)
@given(headers=st.dictionaries(
    st.sampled_from(["X-Business-Use-Case-Usage", "X-App-Usage", "Other"]),
    st.text(max_size=40) | json_values.map(json.dumps), max_size=3))
def test_usage_headers_never_raise(headers: dict[str, str]) -> None:
    seconds = regain_access_seconds(headers)
    assert seconds is None or seconds > 0


@given(value=st.none() | st.text(max_size=40), now=st.floats(0, 4e9))
def test_retry_after_never_raises(value: str | None, now: float) -> None:
    seconds = parse_retry_after(value, now)
    assert seconds is None or seconds >= 0


def test_usage_header_examples() -> None:
    usage = {"115344761664057": [{"type": "whatsapp_business_management", "call_count": 100,
                                  "estimated_time_to_regain_access": 7}]}
    assert regain_access_seconds({"X-Business-Use-Case-Usage": json.dumps(usage)}) == 420
    assert regain_access_seconds({"X-App-Usage": '{"call_count": 95}'}) is None
    assert regain_access_seconds({"X-App-Usage": "not json"}) is None
    assert regain_access_seconds({}) is None
    infinite = '{"estimated_time_to_regain_access": Infinity}'
    assert regain_access_seconds({"X-App-Usage": infinite}) is None
    assert parse_retry_after("\u00b2", 0) is None  # a digit to str.isdigit, not to HTTP
