import pytest

from exporter.upstream.errors import BadResponse
from exporter.upstream.parse import Answer, parse_answer
from exporter.vocabulary import DataPoint

ALL = ("CONVERSATION_CATEGORY", "CONVERSATION_DIRECTION", "CONVERSATION_TYPE", "COUNTRY", "PHONE")


def wrapped(*points: dict, waba_id: object = "115344761664057") -> dict:
    return {"conversation_analytics": {"data": [{"data_points": list(points)}]}, "id": waba_id}


def test_the_documented_example_shape() -> None:
    # The API page's example, with a half-hour bucket (its own example is MONTHLY).
    body = wrapped(
        {
            "start": 1693506600,
            "end": 1693508400,
            "conversation": 1,
            "phone_number": "912240289385",
            "country": "KW",
            "conversation_type": "REGULAR",
            "conversation_category": "MARKETING",
        }
    )
    answer = parse_answer(body, ALL)
    assert answer == Answer(
        "115344761664057",
        (DataPoint(1693506600, 1693508400, 1, ("MARKETING", "", "REGULAR", "KW", "912240289385")),),
    )


def test_labels_follow_the_configured_dimensions_only() -> None:
    body = wrapped({"start": 0, "end": 1800, "conversation": 3, "country": "IN",
                    "conversation_category": "SERVICE"})
    assert parse_answer(body, ("COUNTRY",)).points[0].labels == ("IN",)
    assert parse_answer(body, ()).points[0].labels == ()


def test_unknown_enum_values_are_kept_as_they_come() -> None:
    body = wrapped({"start": 0, "end": 1800, "conversation": 2,
                    "conversation_category": "MARKETING_LITE",
                    "conversation_type": "FREE_ENTRY_POINT",
                    "conversation_direction": "UNKNOWN"})
    labels = parse_answer(body, ALL[:3]).points[0].labels
    assert labels == ("MARKETING_LITE", "UNKNOWN", "FREE_ENTRY_POINT")


def test_points_keep_their_order_and_numbers_as_strings_are_read() -> None:
    body = wrapped(
        {"start": "3600", "end": "5400", "conversation": " 4"},
        {"start": 0, "end": 1800, "conversation": 1},
    )
    assert [p.start for p in parse_answer(body, ()).points] == [3600, 0]
    assert parse_answer(body, ()).points[0].conversations == 4


def test_missing_key_means_no_data() -> None:
    assert parse_answer({"id": "1"}, ALL) == Answer("1", ())
    assert parse_answer({"id": "1", "conversation_analytics": None}, ALL) == Answer("1", ())


def test_flat_data_points_without_the_data_wrapper() -> None:
    body = {"conversation_analytics": {"data_points": [{"start": 0, "end": 1800,
                                                         "conversation": 5}]}, "id": 42}
    assert parse_answer(body, ()) == Answer("42", (DataPoint(0, 1800, 5, ()),))


def test_several_data_entries_are_joined() -> None:
    body = {"conversation_analytics": {"data": [
        {"data_points": [{"start": 0, "end": 1800, "conversation": 1}]},
        {"data_points": [{"start": 1800, "end": 3600, "conversation": 2}]},
        {},
    ]}}
    answer = parse_answer(body, ())
    assert answer.waba_id is None
    assert [p.conversations for p in answer.points] == [1, 2]


def test_null_dimension_values_become_empty_and_non_text_is_a_bad_response() -> None:
    body = wrapped({"start": 0, "end": 1800, "conversation": 1, "phone_number": "912240289385",
                    "country": None})
    assert parse_answer(body, ("COUNTRY", "PHONE")).points[0].labels == ("", "912240289385")
    # A label value is text: a number is not (it was once labelled by its digits).
    body = wrapped({"start": 0, "end": 1800, "conversation": 1, "phone_number": 912240289385})
    with pytest.raises(BadResponse, match="must be text, got a number"):
        parse_answer(body, ("PHONE",))


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        None,
        {"conversation_analytics": []},
        {"conversation_analytics": {"data": {}}},
        {"conversation_analytics": {"data": [[]]}},
        {"conversation_analytics": {"data": [{"data_points": {}}]}},
        {"conversation_analytics": {"data_points": "x"}},
        wrapped("not a point"),
        wrapped({"start": 0, "end": 1800}),
        wrapped({"start": 0, "conversation": 1}),
        wrapped({"start": "soon", "end": 1800, "conversation": 1}),
        wrapped({"start": 0, "end": 1800, "conversation": True}),
        wrapped({"start": 0, "end": 1800, "conversation": 1.5}),
        wrapped({"start": 0, "end": 1800, "conversation": -1}),
        wrapped({"start": 0, "end": 1800, "conversation": None}),
        wrapped({"start": 0, "end": 1800, "conversation": "²"}),
        wrapped({"start": 0, "end": 1800, "conversation": "1" * 5000}),
        # The API page's own example: a MONTHLY point is not a half-hour bucket.
        wrapped({"start": 1693506600, "end": 1696098600, "conversation": 1}),
        wrapped({"start": 900, "end": 2700, "conversation": 1}),
        wrapped({"start": 0, "end": 3600, "conversation": 1}),
    ],
)
def test_malformed_answers_raise_bad_response(body: object) -> None:
    with pytest.raises(BadResponse):
        parse_answer(body, ALL)


def test_label_reader_reads_present_and_absent_keys() -> None:
    from exporter.upstream.parse import label_reader

    point = {"country": "KW", "phone_number": "9122", "conversation_type": None}
    assert label_reader(["country", "phone_number"])(point) == ("KW", "9122")
    assert label_reader(["country"])(point) == ("KW",)
    assert label_reader([])(point) == ()
    assert label_reader(["country", "conversation_category"])(point) == ("KW", None)
    assert label_reader(["conversation_type"])(point) == (None,)


def test_non_text_dimension_values_are_a_bad_response() -> None:
    # 1, True and 1.0 are one dict key in Python, and none of them is text: a label value
    # must not be a Python repr ("True", "['a', 'b']"). The text "1" is fine.
    def body(value: object) -> dict:
        point = {"start": 0, "end": 1800, "conversation": 1, "country": value}
        return {"conversation_analytics": {"data_points": [point]}}

    assert parse_answer(body("1"), ("COUNTRY",)).points[0].labels == ("1",)
    for value in (1, True, 1.0, ["a", "b"], {"a": 1}):
        with pytest.raises(BadResponse, match="must be text"):
            parse_answer(body(value), ("COUNTRY",))


def test_an_implausible_count_is_a_bad_response() -> None:
    from exporter.upstream.parse import MAX_COUNT

    def body(count: object) -> dict:
        return {"conversation_analytics": {"data_points": [
            {"start": 0, "end": 1800, "conversation": count}]}}

    assert parse_answer(body(MAX_COUNT), ()).points[0].conversations == MAX_COUNT
    for count in (MAX_COUNT + 1, 2**63, -1, str(MAX_COUNT + 1)):
        with pytest.raises(BadResponse, match="implausible count"):
            parse_answer(body(count), ())
