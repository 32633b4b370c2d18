"""Exposition text, written fast and kept compressed: the pure parts of the render-once cache.

Three jobs, all on plain data (no threads, no clock):

- **Sample lines** byte for byte as prometheus-client writes them (labels sorted by name, values
  through `floatToGoString`), but from a per-family template instead of a `Metric` object per
  sample: a whole target's series in one pass.
- **Fragments**: a piece of exposition text deflated on its own and ended with a sync flush, with
  its CRC-32 and length. Raw deflate streams ended that way can be concatenated into one valid
  stream, so a body is assembled from cached fragments without compressing anything again.
- **gzip framing**: header + fragments + a final block + trailer, where the trailer's CRC of
  the whole text is combined from the fragments' CRCs (`crc32_combine`, as zlib does it), so the
  plain text never has to exist in one piece.

Only the compressed form is kept: at 100k series the text is ~23 MB, its gzip under 1 MB.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from exporter.pipeline.buckets import LabelValues

COMPRESS_LEVEL = 9
"""Fragments are compressed once per poll of their target, and served on every scrape: size first
(at 100k series 9 gives 734 kB where 6 gives 812 kB, for 0.2 ms more per target and poll)."""
TAIL_COMPRESS_LEVEL = 1
"""The per-scrape tail (a few KB of self-metrics) is compressed on every scrape: speed first."""

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""RFC 1952: deflate, no flags, no mtime (a scrape is not a file), no extra flags, OS unknown."""

# -- sample lines ---------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """As the text formats escape a label value: backslash, newline and double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def format_value(value: float) -> str:
    """`floatToGoString`, with a shortcut for the small whole numbers that counts mostly are."""
    if type(value) is int and 0 <= value < 1_000_000:
        # floatToGoString(float(n)) is "n.0" below a million, then switches to 1.234567e+06.
        return f"{value}.0"
    return floatToGoString(value)


@dataclass(frozen=True, slots=True)
class LineTemplate:
    """One metric's sample line for one target, with the dimension values and value left open.

    prometheus-client sorts labels by name, so the target's labels (fixed for the whole block)
    and the dimension labels interleave in a fixed order, decided once here.
    """

    template: str
    dimension_order: tuple[int, ...]
    """Positions in a label-value tuple, in the order the template wants them."""

    @classmethod
    def build(
        cls,
        metric_name: str,
        target_labels: Sequence[tuple[str, str]],
        dimension_labels: Sequence[str],
    ) -> LineTemplate:
        names = [name for name, _ in target_labels] + list(dimension_labels)
        fixed = len(target_labels)
        parts: list[str] = []
        order: list[int] = []
        for position in sorted(range(len(names)), key=names.__getitem__):
            if position < fixed:
                literal = escape_label_value(target_labels[position][1]).replace("%", "%%")
                parts.append(f'{names[position]}="{literal}"')
            else:
                parts.append(f'{names[position]}="%s"')
                order.append(position - fixed)
        labels = "{" + ",".join(parts) + "}" if parts else ""
        return cls(f"{metric_name}{labels} %s\n", tuple(order))


_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def plain_sample_names(name: str, label_names: Iterable[str]) -> bool:
    """True when no name needs escaping or quoting (then both formats write it as is)."""
    return _LEGACY_NAME.fullmatch(name) is not None and all(
        _LEGACY_LABEL.fullmatch(label) is not None for label in label_names
    )


def sample_line(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample as both text formats write it (labels sorted by name), for legacy names."""
    if not labels:
        return f"{name} {format_value(value)}\n"
    pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}} {format_value(value)}\n"


def render_lines(template: LineTemplate, rows: Iterable[tuple[LabelValues, float]]) -> str:
    """The sample lines of `rows` (dimension values, value), in their order."""
    escaped: dict[str, str] = {}
    order = template.dimension_order
    line = template.template
    out: list[str] = []
    for labels, value in rows:
        values = []
        for position in order:
            raw = labels[position]
            text = escaped.get(raw)
            if text is None:
                text = escaped[raw] = escape_label_value(raw)
            values.append(text)
        values.append(format_value(value))
        out.append(line % tuple(values))
    return "".join(out)


# -- CRC-32 combination (zlib's crc32_combine, which Python's zlib does not expose) ----------

_POLY = 0xEDB88320
"""CRC-32's polynomial, reflected, as zlib uses it."""


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial (reflected bit order)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> tuple[int, ...]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return tuple(table)


_X2N = _x2n_table()
"""x^(2^k) modulo the polynomial, for k = 0..31."""


def crc_shift(length: int) -> int:
    """x^(8·length) modulo the polynomial: what moves a CRC past `length` more bytes."""
    p = 1 << 31  # x^0
    k = 3  # 2^3 bits per byte
    while length:
        if length & 1:
            p = _multmodp(_X2N[k & 31], p)
        length >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, length2: int, shift: int | None = None) -> int:
    """CRC-32 of A+B from CRC(A), CRC(B) and len(B); `shift` = crc_shift(len(B)) if known."""
    return _multmodp(crc_shift(length2) if shift is None else shift, crc1) ^ crc2


# -- fragments and gzip bodies --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of exposition text, raw-deflated on its own and ended by a sync flush."""

    deflated: bytes
    crc: int
    length: int
    """Length of the text (bytes, before compression)."""
    shift: int
    """crc_shift(length), computed once so that assembling costs one multiplication."""


EMPTY_FRAGMENT = Fragment(b"", 0, 0, 1 << 31)


def fragment(text: bytes, level: int = COMPRESS_LEVEL) -> Fragment:
    if not text:
        return EMPTY_FRAGMENT
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    # A sync flush ends the fragment on a byte boundary with no final-block bit: another
    # stream's blocks can follow it. A compressor of its own means no back-reference into a
    # neighbour, whatever ends up next to it.
    deflated = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Fragment(deflated, zlib.crc32(text), len(text), crc_shift(len(text)))


def join(fragments: Iterable[Fragment]) -> Fragment:
    """The fragments one after the other, as one fragment."""
    parts: list[bytes] = []
    crc = 0
    length = 0
    for piece in fragments:
        if not piece.length:
            continue
        parts.append(piece.deflated)
        crc = _multmodp(piece.shift, crc) ^ piece.crc
        length += piece.length
    return Fragment(b"".join(parts), crc, length, crc_shift(length))


def gzip_body(prefix: Fragment, tail: bytes) -> list[bytes]:
    """A complete single-member gzip body: `prefix`'s text followed by `tail`.

    Only `tail` (the part that changes every scrape) is compressed here.
    """
    compressor = zlib.compressobj(TAIL_COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    last = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(tail, prefix.crc)  # CRC-32 runs on: the tail comes last
    size = (prefix.length + len(tail)) & 0xFFFFFFFF
    return [GZIP_HEADER, prefix.deflated, last, struct.pack("<II", crc, size)]


INFLATE_CHUNK = 256 * 1024
"""Text bytes inflated per piece at most when a scraper does not accept gzip: what one
response holds in memory at a time, however slowly its client reads."""
_INFLATE_STEP = 16 * 1024
"""Compressed bytes fed per step (a cached body inflates about 30 times)."""


def inflate(deflated: bytes) -> Iterator[bytes]:
    """The text of a run of fragments, in pieces, for a scraper that did not ask for gzip."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    view = memoryview(deflated)
    for start in range(0, len(view), _INFLATE_STEP):
        data: bytes | memoryview = view[start : start + _INFLATE_STEP]
        while data:
            piece = inflater.decompress(data, INFLATE_CHUNK)
            if piece:
                yield piece
            data = inflater.unconsumed_tail
    rest = inflater.flush()
    if rest:
        yield rest
