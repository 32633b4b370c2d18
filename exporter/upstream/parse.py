"""Turn a decoded `conversation_analytics` answer into data points.

Lives with what the real upstream does (docs/upstream.md): points in any order, the key
`conversation_analytics` absent when there is no data, flat `data_points` without the `data[]`
wrapper, dimension keys missing or `UNKNOWN`, enum values nobody documented. Anything that is not
that shape raises `BadResponse` (or `LimitExceeded`), never another exception.

This is where the answer's content is checked, once, so that nothing past it can fail on it:
label values are text (valid Unicode, at most 256 characters), counts and times are integers in
range, every point lies in the window that was asked for, and the `id` is the target's WABA.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter

from exporter.upstream.errors import BadResponse, LimitExceeded, shown
from exporter.vocabulary import DIMENSIONS_BY_NAME, HALF_HOUR_SECONDS, DataPoint


@dataclass(frozen=True, slots=True)
class Answer:
    waba_id: str | None
    """The `id` the upstream answered with (for a customer target, its WABA id)."""
    points: tuple[DataPoint, ...]


_new_point = tuple.__new__
"""Builds a DataPoint without the named tuple's Python-level __new__: a third of a
microsecond saved per point, and an answer has thousands."""

MAX_COUNT = 10**15
"""More conversations than that in half an hour is a broken answer; the counters are int64."""

MAX_LABEL_LENGTH = 256
"""A label value longer than this is no dimension value the API has (a phone number, a country,
an enum) but a broken answer."""

MAX_TIMESTAMP = 2**33
"""Bucket starts beyond this (the year 2242) are refused even when no window is given."""


def _all_text(values: tuple[object, ...]) -> bool:
    return all(type(v) is str or v is None for v in values)


_DECIMAL = re.compile(r"-?[0-9]{1,18}")
"""ASCII digits only (`str.isdigit` also accepts "²"), and short enough for any real count."""


def _integer(value: object, where: str) -> int:
    # Graph sometimes sends numbers as strings; bools are ints in Python but never counts.
    if isinstance(value, bool):
        raise BadResponse(f"{where}: expected an integer, got {shown(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise BadResponse(f"{where}: expected an integer, got {shown(value, 40)}")


def _label_value(value: object, where: str) -> str:
    """A dimension value as the label shows it: the API's own spelling, "" when left out.

    Only text is a label value: a number, a list, an object or a boolean is a broken answer,
    and so is a string that is not valid Unicode (a lone surrogate, which JSON can spell as
    "\\ud800" but no exposition can encode) or longer than MAX_LABEL_LENGTH.

    Interned: the same few categories, countries and phone numbers recur in every point of
    every poll, and the label sets kept between polls then share one string each.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadResponse(f"{where}: a label value must be text, got {_kind(value)}")
    if len(value) > MAX_LABEL_LENGTH:
        raise BadResponse(
            f"{where}: a label value of {len(value)} characters (at most {MAX_LABEL_LENGTH})"
        )
    try:
        if not value.isascii():  # ASCII is valid text, and the check is one flag
            value.encode("utf-8")
    except UnicodeEncodeError:
        message = f"{where}: a label value that is not valid text: {shown(value, 40)}"
        raise BadResponse(message) from None
    return sys.intern(value)


def _when(timestamp: int) -> str:
    """A bucket start as UTC time when it is one (year 1 to 9999), else the number."""
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    except (OverflowError, ValueError, OSError):
        return str(timestamp)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    kinds: dict[type, str] = {list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def label_reader(keys: Sequence[str]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """A function returning a point's values for `keys` as a tuple, None where a key is absent.

    `operator.itemgetter` reads all keys in one C call; a point that lacks one (the upstream
    leaves keys out) takes the slower `.get` path.
    """
    if not keys:
        return lambda raw: ()
    getter = itemgetter(*keys)
    single = len(keys) == 1

    def read(raw: Mapping[str, object]) -> tuple[object, ...]:
        try:
            values = getter(raw)
        except KeyError:
            return tuple(map(raw.get, keys))
        return (values,) if single else values

    return read


def _raw_points(analytics: object) -> Sequence[object]:
    if not isinstance(analytics, Mapping):
        raise BadResponse("conversation_analytics: expected an object")
    if "data" in analytics:
        data = analytics["data"]
        if not isinstance(data, list):
            raise BadResponse("conversation_analytics.data: expected a list")
        points: list[object] = []
        for index, entry in enumerate(data):
            if not isinstance(entry, Mapping):
                raise BadResponse(f"conversation_analytics.data[{index}]: expected an object")
            chunk = entry.get("data_points", [])
            if not isinstance(chunk, list):
                raise BadResponse(f"conversation_analytics.data[{index}].data_points: not a list")
            points.extend(chunk)
        return points
    flat = analytics.get("data_points", [])
    if not isinstance(flat, list):
        raise BadResponse("conversation_analytics.data_points: expected a list")
    return flat


def _answer_id(raw: object, expected: str | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        raw = str(raw)  # Graph ids are strings, but a number is read as its digits
    waba_id = _label_value(raw, "id")
    if expected is not None and waba_id != expected:
        # Another WABA's data (a mix-up upstream, a path rewritten on the way): not this one's.
        raise BadResponse(f"id: the answer is for {shown(waba_id, 40)}, not for {expected}")
    return waba_id or None


def parse_answer(
    body: object,
    dimensions: Sequence[str],
    *,
    window: tuple[int, int] | None = None,
    waba_id: str | None = None,
    max_series: int | None = None,
) -> Answer:
    """Parse a decoded 200 answer; `dimensions` are the configured API names, in label order.

    `window` (start, end) is what the query asked for: a point whose bucket starts before
    `start` or after `end` (and so after the clock that built the query) is refused, because
    it would create series that never leave. `waba_id`, for a WABA target, must be the
    answer's `id`. More than `max_series` label sets raise `LimitExceeded`.
    """
    if not isinstance(body, Mapping):
        raise BadResponse("answer: expected a JSON object")
    answer_id = _answer_id(body.get("id"), waba_id)
    first, last = window if window is not None else (0, MAX_TIMESTAMP)
    analytics = body.get("conversation_analytics")
    if analytics is None:
        # The upstream leaves the key out when there is no data: an empty answer, not an error.
        return Answer(answer_id, ())
    point_keys = [DIMENSIONS_BY_NAME[name].point_key for name in dimensions]
    read_labels = label_reader(point_keys)
    # Raw dimension values -> the label tuple, built once per label set: a label set recurs in
    # every bucket of the window, and every recurrence then shares one tuple.
    label_sets: dict[tuple[object, ...], tuple[str, ...]] = {}
    distinct: set[tuple[str, ...]] = set()
    points = []
    for index, raw in enumerate(_raw_points(analytics)):
        if type(raw) is not dict and not isinstance(raw, Mapping):  # ABC checks are slow
            raise BadResponse(f"data_points[{index}]: expected an object")
        try:
            start, end, count = raw["start"], raw["end"], raw["conversation"]
        except KeyError as missing:
            raise BadResponse(f"data_points[{index}]: missing {missing}") from None
        # Plain ints are the norm; anything else goes through the checks.
        if type(count) is not int:
            count = _integer(count, f"data_points[{index}].conversation")
        if not 0 <= count <= MAX_COUNT:
            raise BadResponse(f"data_points[{index}].conversation: implausible count {count}")
        if type(start) is not int:
            start = _integer(start, f"data_points[{index}].start")
        if type(end) is not int:
            end = _integer(end, f"data_points[{index}].end")
        if start % HALF_HOUR_SECONDS or end - start != HALF_HOUR_SECONDS:
            # Not the half hour we asked for: counting it would put it in a bucket of its own.
            raise BadResponse(f"data_points[{index}]: {start}..{end} is not a half-hour bucket")
        if not first <= start <= last:
            raise BadResponse(
                f"data_points[{index}]: a bucket at {_when(start)} is outside the window asked "
                f"for ({_when(first)} to {_when(last)})"
            )
        raw_labels = read_labels(raw)
        try:
            labels = label_sets.get(raw_labels)
        except TypeError:  # an unhashable value (a list, an object): refused below
            labels = None
        if labels is None:
            labels = tuple(_label_value(v, f"data_points[{index}]") for v in raw_labels)
            # Only all-text keys are cached (1, 1.0 and True are one dict key), though by now
            # anything else was refused.
            if _all_text(raw_labels):
                label_sets[raw_labels] = labels
            if max_series is not None and labels not in distinct:
                distinct.add(labels)
                if len(distinct) > max_series:
                    raise LimitExceeded(
                        f"the answer holds more than {max_series} label sets "
                        f"(limits.max_series_per_target: {max_series})"
                    )
        points.append(_new_point(DataPoint, (start, end, count, labels)))
    return Answer(answer_id, tuple(points))
