"""Properties at the boundaries with the upstream: what comes in is checked once, and what
passed the check can go out.

- The answer parser, given any JSON value in any field (lone surrogates, huge and non-finite
  numbers, deep nesting, long text), returns an answer or raises its typed errors, nothing else.
- The body decoder, given any bytes, returns a JSON value or raises `BadResponse`.
- Any label text the parser accepts renders, in both formats and through the collector, and
  prometheus-client's parsers read back the same label values.
- Quoting upstream text into a message or a log line never fails and stays one bounded line.
"""

from __future__ import annotations

import contextlib
import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot
from exporter.serve.collector import ConversationCollector
from exporter.serve.render import OPENMETRICS, TEXT, ExpositionCache, render_registry
from exporter.upstream.bounded import decode_json
from exporter.upstream.errors import (
    SHOWN_LENGTH,
    BadResponse,
    LimitExceeded,
    UpstreamError,
    classify,
    shown,
)
from exporter.upstream.parse import MAX_LABEL_LENGTH, Answer, parse_answer
from exporter.vocabulary import DIMENSIONS

ALL = tuple(d.api_name for d in DIMENSIONS)
KEYS = [d.point_key for d in DIMENSIONS]
LABELS = [d.label for d in DIMENSIONS]
WINDOW = (1_700_000_000 - 1_700_000_000 % 1800, 1_700_000_000 - 1_700_000_000 % 1800 + 6 * 3600)

# Any character, lone surrogates included (JSON can spell them, as "\ud800").
text_char = st.characters(codec=None, exclude_categories=())
any_char = text_char | st.characters(
    min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()
)
any_text = st.text(any_char, max_size=12) | st.text(any_char, min_size=250, max_size=270)
numbers = (
    st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**63, -(2**63) - 1, 10**15 + 1, 1800 * 10**30, 1e300])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | any_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(any_text, children, max_size=4),
    max_leaves=25,
)


def deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


odd = json_values | st.integers(100, 900).map(deep)
starts = st.integers(-2, 14).map(lambda k: WINDOW[0] + 1800 * k)
point = st.fixed_dictionaries(
    {},
    optional={
        "start": odd | starts,
        "end": odd | starts.map(lambda s: s + 1800),
        "conversation": odd | st.integers(-3, 10**6),
        **{key: odd | st.text(max_size=6) for key in KEYS},
    },
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "id": odd | st.sampled_from(["115344761664057", "1", ""]),
        "conversation_analytics": odd
        | st.fixed_dictionaries(
            {"data": st.lists(st.fixed_dictionaries({"data_points": st.lists(point, max_size=6)}),
                              max_size=3)}
        )
        | st.fixed_dictionaries({"data_points": st.lists(point, max_size=6)}),
    },
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=odd | answers,
    dimensions=st.sampled_from([ALL, (), ("COUNTRY",), ("PHONE", "CONVERSATION_CATEGORY")]),
    window=st.none() | st.just(WINDOW),
    waba_id=st.none() | st.just("115344761664057"),
    max_series=st.none() | st.integers(1, 4),
)
def test_the_parser_raises_only_its_typed_errors(
    body: object, dimensions: tuple[str, ...], window, waba_id, max_series
) -> None:
    try:
        answer = parse_answer(
            body, dimensions, window=window, waba_id=waba_id, max_series=max_series
        )
    except (BadResponse, LimitExceeded) as error:
        str(error).encode("utf-8")  # its message is text, whatever the answer held
        return
    assert isinstance(answer, Answer)
    assert answer.waba_id is None or answer.waba_id == (waba_id or answer.waba_id)
    label_sets = set()
    for data_point in answer.points:
        assert data_point.start % 1800 == 0 and data_point.end - data_point.start == 1800
        if window is not None:
            assert window[0] <= data_point.start <= window[1]
        assert 0 <= data_point.conversations <= 10**15
        assert len(data_point.labels) == len(dimensions)
        for label in data_point.labels:
            assert type(label) is str and len(label) <= MAX_LABEL_LENGTH
            label.encode("utf-8")
        label_sets.add(data_point.labels)
    assert max_series is None or len(label_sets) <= max_series


@settings(max_examples=500)
@given(
    data=st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.integers(0, 5000).map(lambda n: b"[" * n + b"]" * n)
    | st.integers(0, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    | any_text.map(lambda t: json.dumps(t).encode())
    | st.text(any_char, max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_the_body_decoder_gives_json_or_a_bad_response(data: bytes) -> None:
    with contextlib.suppress(BadResponse):
        decode_json(bytearray(data))


@settings(max_examples=500)
@given(value=odd, limit=st.integers(1, 300))
def test_quoting_upstream_text_is_total_and_one_bounded_line(value: object, limit: int) -> None:
    text = shown(value, limit)
    assert text.isprintable() and "\n" not in text
    text.encode("utf-8")
    assert len(text) <= 10 * limit + 3  # `limit` characters, each escaped to at most 10


@settings(max_examples=300)
@given(
    status=st.integers(100, 599),
    message=odd,
    code=odd,
)
def test_error_messages_quote_the_upstream_safely(status: int, message, code) -> None:
    for body in ({"error": {"code": code, "message": message}},
                 {"success": False, "message": message}, {"message": message}):
        error = classify(status, body)
        if error is not None:
            assert isinstance(error, UpstreamError)
            text = str(error)
            text.encode("utf-8")
            assert "\n" not in text and len(text) < 2 * (10 * SHOWN_LENGTH + 3) + 100


# -- what passed the parser renders and reads back --------------------------------------------

label_values = (
    st.text(text_char, max_size=12)
    | st.text(text_char, min_size=MAX_LABEL_LENGTH - 2, max_size=MAX_LABEL_LENGTH + 2)
    | st.text(any_char, max_size=4)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.tuples(*[label_values] * len(KEYS)), min_size=1, max_size=4))
def test_any_label_text_the_parser_takes_renders_and_reads_back(values) -> None:
    bucket = WINDOW[0] + 1800
    points = [
        {"start": bucket, "end": bucket + 1800, "conversation": i + 1,
         **dict(zip(KEYS, labels, strict=True))}
        for i, labels in enumerate(values)
    ]
    body = {"id": "1", "conversation_analytics": {"data": [{"data_points": points}]}}
    try:
        answer = parse_answer(body, ALL, window=WINDOW, waba_id="1")
    except BadResponse:
        # Refused only for what the contract refuses: invalid text, or too long.
        assert any(not _valid(v) for labels in values for v in labels)
        return
    assert all(_valid(v) for labels in values for v in labels)
    expected: dict[tuple[str, ...], int] = {}
    for data_point in answer.points:
        expected[data_point.labels] = expected.get(data_point.labels, 0) + data_point.conversations

    store = SnapshotStore(ALL)
    store.put(TargetSnapshot("acme", "1", True, 0.1, 1_700_000_000.0, bucket, expected,
                             expected, ALL))
    cache = ExpositionCache(store, CollectorRegistry(), CollectorRegistry(), 3600,
                            clock=lambda: 1_700_000_100.0)
    collector = CollectorRegistry()
    collector.register(ConversationCollector(store, 3600, clock=lambda: 1_700_000_100.0))
    texts = {
        "collector": (render_registry(collector, TEXT), text_string_to_metric_families),
        TEXT: (_body(cache, TEXT), text_string_to_metric_families),
        OPENMETRICS: (_body(cache, OPENMETRICS), openmetrics_families),
    }
    for where, (raw, parser) in texts.items():
        read = {
            tuple(s.labels[label] for label in LABELS): s.value
            for family in parser(raw.decode("utf-8"))
            if family.name == "whatsapp_conversations"
            for s in family.samples
        }
        assert read == {labels: float(count) for labels, count in expected.items()}, where


def _valid(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(value) <= MAX_LABEL_LENGTH


def _body(cache: ExpositionCache, fmt: str) -> bytes:
    pieces, _ = cache.body(fmt, gzip=True)
    return gzip.decompress(b"".join(pieces))
