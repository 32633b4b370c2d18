"""The pure parts of the render-once cache: lines as prometheus-client writes them, CRC
combination, fragments that concatenate into one deflate stream, gzip framing."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from exporter.serve.exposition import (
    EMPTY_FRAGMENT,
    LineTemplate,
    crc32_combine,
    crc_shift,
    escape_label_value,
    format_value,
    fragment,
    gzip_body,
    inflate,
    join,
    render_lines,
)

label_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12
) | st.sampled_from(['a"b', "back\\slash", "new\nline", "100%", "%s", "%%", "", "ü€"])


class _Family:
    def __init__(self, family: GaugeMetricFamily) -> None:
        self.family = family

    def collect(self):
        yield self.family


def reference(name: str, names: list[str], rows: list[tuple[list[str], float]], om: bool) -> str:
    """What prometheus-client writes for these samples, sample lines only."""
    family = GaugeMetricFamily(name, "help", labels=names)
    for values, value in rows:
        family.add_metric(values, value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Family(family))
    text = (generate_openmetrics if om else generate_latest)(registry).decode()
    lines = text.split("\n")[:-1]  # not splitlines(): it also splits on \x85 and friends
    return "".join(line + "\n" for line in lines if not line.startswith("#"))


@settings(max_examples=150)
@given(
    target=st.tuples(label_value, label_value),
    dimension_names=st.lists(
        st.sampled_from(
            ["conversation_category", "country", "phone_number", "a_first", "zz_last", "waba_ie"]
        ),
        unique=True,
        max_size=5,
    ),
    data=st.data(),
)
def test_lines_are_byte_for_byte_prometheus_clients(target, dimension_names, data) -> None:
    rows = data.draw(
        st.lists(
            st.tuples(
                st.lists(
                    label_value, min_size=len(dimension_names), max_size=len(dimension_names)
                ),
                st.integers(min_value=0, max_value=10**15) | st.floats(allow_nan=False),
            ),
            max_size=6,
        )
    )
    template = LineTemplate.build(
        "whatsapp_conversations",
        list(zip(("waba_id", "waba_name"), target, strict=True)),
        dimension_names,
    )
    ours = render_lines(template, [(tuple(values), value) for values, value in rows])
    names = ["waba_id", "waba_name", *dimension_names]
    full_rows = [([*target, *values], value) for values, value in rows]
    for om in (False, True):
        assert ours == reference("whatsapp_conversations", names, full_rows, om)


def test_a_line_without_labels() -> None:
    template = LineTemplate.build("up", [], [])
    assert render_lines(template, [((), 1)]) == "up 1.0\n"


@given(st.integers(min_value=-(10**18), max_value=10**18) | st.floats())
def test_format_value_is_float_to_go_string(value) -> None:
    assert format_value(value) == floatToGoString(value)


def test_format_value_around_the_exponent_switch() -> None:
    for value in (0, 1, 999_999, 1_000_000, 1_000_001, 12_345_678):
        assert format_value(value) == floatToGoString(value)
    assert format_value(1_234_567) == "1.234567e+06"


def test_escape_label_value() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_label_value("plain") == "plain"


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine_matches_zlib(a: bytes, b: bytes) -> None:
    expected = zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == expected
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b), crc_shift(len(b))) == expected


def test_crc32_combine_over_long_lengths() -> None:
    a, b = b"x" * 70_000, bytes(range(256)) * 1000
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=2000) | st.sampled_from([b"", b"a" * 70_000]), max_size=8),
       st.binary(max_size=200))
def test_fragments_concatenate_into_one_gzip_member(pieces: list[bytes], tail: bytes) -> None:
    prefix = join(fragment(piece) for piece in pieces)
    text = b"".join(pieces)
    assert prefix.length == len(text) and prefix.crc == zlib.crc32(text)
    body = b"".join(gzip_body(prefix, tail))
    # gzip.decompress checks the trailer's CRC and length; one member, not several.
    assert gzip.decompress(body) == text + tail
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(body) == text + tail and decoder.eof and not decoder.unused_data
    assert b"".join(inflate(prefix.deflated)) == text


def test_a_join_of_joins_is_a_join() -> None:
    a, b, c = (fragment(x) for x in (b"one\n", b"two\n" * 500, b"three\n"))
    assert join([join([a, b]), c]) == join([a, b, c])


def test_empty_fragments_add_nothing() -> None:
    assert fragment(b"") is EMPTY_FRAGMENT
    assert gzip.decompress(b"".join(gzip_body(join([]), b""))) == b""
    assert list(inflate(b"")) == []


def test_inflate_yields_pieces_for_big_bodies() -> None:
    text = b"".join(b"line %d\n" % i for i in range(400_000))
    pieces = list(inflate(join([fragment(text)]).deflated))
    assert b"".join(pieces) == text
