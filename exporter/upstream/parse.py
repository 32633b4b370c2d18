"""Turn a decoded answer into data points: `conversation_analytics`, and beside it every other
source (`pricing_analytics`, `analytics`) by the same code.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import NamedTuple

from exporter.upstream.errors import BadResponse, LimitExceeded, shown
from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    HALF_HOUR_SECONDS,
    SOURCES_BY_NAME,
    DataPoint,
    Layout,
    Source,
)


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


def _raw_points(analytics: object, field: str = "conversation_analytics") -> Sequence[object]:
    if not isinstance(analytics, Mapping):
        raise BadResponse(f"{field}: expected an object")
    if "data" in analytics:
        data = analytics["data"]
        if not isinstance(data, list):
            raise BadResponse(f"{field}.data: expected a list")
        points: list[object] = []
        for index, entry in enumerate(data):
            if not isinstance(entry, Mapping):
                raise BadResponse(f"{field}.data[{index}]: expected an object")
            chunk = entry.get("data_points", [])
            if not isinstance(chunk, list):
                raise BadResponse(f"{field}.data[{index}].data_points: not a list")
            points.extend(chunk)
        return points
    flat = analytics.get("data_points", [])
    if not isinstance(flat, list):
        raise BadResponse(f"{field}.data_points: expected a list")
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


class AmountPoint(NamedTuple):
    """One bucket of one label set of a value that is shown but never counted (`cost`)."""

    start: int
    labels: tuple[str, ...]
    amount: float


@dataclass(frozen=True, slots=True)
class SourcePoints:
    """One source's part of an answer, as DataPoints per value key."""

    counts: Mapping[str, tuple[DataPoint, ...]]
    """Per key of `Source.counts` (`conversation`, `volume`, `sent`, ...): one point per bucket
    and label set, in answer order."""
    amounts: Mapping[str, tuple[AmountPoint, ...]] = field(default_factory=dict)
    """Per key of `Source.amounts` that the answer carried on at least one point; a key no
    point carried is absent (partner-billed accounts get no `cost`)."""


@dataclass(frozen=True, slots=True)
class SourcesAnswer:
    waba_id: str | None
    """The `id` the upstream answered with (for a customer target, its WABA id)."""
    sources: Mapping[str, SourcePoints]
    """Per enabled source (by name); a field the answer left out has no points."""


def _amount(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadResponse(f"{where}: expected a number, got {shown(value, 40)}")
    try:
        amount = float(value)
    except ValueError:
        raise BadResponse(f"{where}: expected a number, got {shown(value, 40)}") from None
    if not 0 <= amount <= MAX_COUNT:  # NaN fails both
        raise BadResponse(f"{where}: implausible amount {shown(value, 40)}")
    return amount


def parse_field(
    analytics: object,
    source: Source,
    dimensions: Sequence[str],
    prefix: str = "",
    *,
    window: tuple[int, int] | None = None,
    max_series: int | None = None,
) -> SourcePoints:
    """The points of one field of an answer (`analytics` is the value under its key).

    `dimensions` are the enabled API names of `source`, in label order. The same checks for
    every source: each point is one half hour on a :00 or :30 boundary inside `window` (start,
    end: what the query asked for; a bucket outside it would create series that never leave),
    each counted value a whole number from 0 to MAX_COUNT, each label value text; more than
    `max_series` label sets raise `LimitExceeded`. `prefix` goes before the place in error
    messages.
    """
    keys = source.counts
    first_bucket, last_bucket = window if window is not None else (0, MAX_TIMESTAMP)
    point_keys = [source.dimension(name).point_key for name in dimensions]
    read_labels = label_reader(point_keys)
    # Raw dimension values -> the label tuple, built once per label set: a label set recurs in
    # every bucket of the window, and every recurrence then shares one tuple.
    label_sets: dict[tuple[object, ...], tuple[str, ...]] = {}
    distinct: set[tuple[str, ...]] = set()
    counts: list[list[DataPoint]] = [[] for _ in keys]
    first = counts[0]
    amounts: dict[str, list[AmountPoint]] = {}
    # One value key (every source but message analytics) takes the fast path: one lookup.
    first_key = keys[0]
    single = len(keys) == 1
    for index, raw in enumerate(_raw_points(analytics, source.field)):
        if type(raw) is not dict and not isinstance(raw, Mapping):  # ABC checks are slow
            raise BadResponse(f"{prefix}data_points[{index}]: expected an object")
        try:
            start, end, count = raw["start"], raw["end"], raw[first_key]
            values = None if single else [count, *(raw[key] for key in keys[1:])]
        except KeyError as missing:
            raise BadResponse(f"{prefix}data_points[{index}]: missing {missing}") from None
        # Plain ints are the norm; anything else goes through the checks.
        if values is None:
            if type(count) is not int:
                count = _integer(count, f"{prefix}data_points[{index}].{first_key}")
            if not 0 <= count <= MAX_COUNT:
                message = f"{first_key}: implausible count {count}"
                raise BadResponse(f"{prefix}data_points[{index}].{message}")
        else:
            for position, key in enumerate(keys):
                value = values[position]
                if type(value) is not int:
                    where = f"{prefix}data_points[{index}].{key}"
                    value = values[position] = _integer(value, where)
                if not 0 <= value <= MAX_COUNT:
                    message = f"{key}: implausible count {value}"
                    raise BadResponse(f"{prefix}data_points[{index}].{message}")
        if type(start) is not int:
            start = _integer(start, f"{prefix}data_points[{index}].start")
        if type(end) is not int:
            end = _integer(end, f"{prefix}data_points[{index}].end")
        if start % HALF_HOUR_SECONDS or end - start != HALF_HOUR_SECONDS:
            # Not the half hour we asked for: counting it would put it in a bucket of its own.
            message = f"{start}..{end} is not a half-hour bucket"
            raise BadResponse(f"{prefix}data_points[{index}]: {message}")
        if not first_bucket <= start <= last_bucket:
            raise BadResponse(
                f"{prefix}data_points[{index}]: a bucket at {_when(start)} is outside the window "
                f"asked for ({_when(first_bucket)} to {_when(last_bucket)})"
            )
        raw_labels = read_labels(raw)
        try:
            labels = label_sets.get(raw_labels)
        except TypeError:  # an unhashable value (a list, an object): refused below
            labels = None
        if labels is None:
            labels = tuple(_label_value(v, f"{prefix}data_points[{index}]") for v in raw_labels)
            # Only all-text keys are cached (1, 1.0 and True are one dict key), though by now
            # anything else was refused.
            if _all_text(raw_labels):
                label_sets[raw_labels] = labels
            if max_series is not None and labels not in distinct:
                distinct.add(labels)
                if len(distinct) > max_series:
                    raise LimitExceeded(
                        f"{prefix}the answer holds more than {max_series} label sets "
                        f"(limits.max_series_per_target: {max_series})"
                    )
        if values is None:
            first.append(_new_point(DataPoint, (start, end, count, labels)))
        else:
            for position, value in enumerate(values):
                counts[position].append(_new_point(DataPoint, (start, end, value, labels)))
        for key in source.amounts:
            amount = raw.get(key)
            if amount is None:
                continue
            # Plain floats in range are the norm (NaN fails the comparison).
            if type(amount) is not float or not 0.0 <= amount <= MAX_COUNT:
                amount = _amount(amount, f"{prefix}data_points[{index}].{key}")
            amounts.setdefault(key, []).append(
                _new_point(AmountPoint, (start, labels, amount))
            )
    return SourcePoints(
        counts={key: tuple(points) for key, points in zip(keys, counts, strict=True)},
        amounts={key: tuple(points) for key, points in amounts.items()},
    )


def parse_answer(
    body: object,
    dimensions: Sequence[str],
    *,
    window: tuple[int, int] | None = None,
    waba_id: str | None = None,
    max_series: int | None = None,
) -> Answer:
    """Parse a decoded 200 answer to a conversation_analytics request; `dimensions` are the
    configured API names, in label order.

    `window` (start, end) is what the query asked for: a point whose bucket starts before
    `start` or after `end` (and so after the clock that built the query) is refused, because
    it would create series that never leave. `waba_id`, for a WABA target, must be the
    answer's `id`. More than `max_series` label sets raise `LimitExceeded`.
    """
    if not isinstance(body, Mapping):
        raise BadResponse("answer: expected a JSON object")
    answer_id = _answer_id(body.get("id"), waba_id)
    analytics = body.get("conversation_analytics")
    if analytics is None:
        # The upstream leaves the key out when there is no data: an empty answer, not an error.
        return Answer(answer_id, ())
    points = parse_field(
        analytics,
        SOURCES_BY_NAME[CONVERSATION_ANALYTICS],
        dimensions,
        window=window,
        max_series=max_series,
    )
    return Answer(answer_id, points.counts["conversation"])


def parse_sources(
    body: object,
    layout: Layout,
    *,
    window: tuple[int, int] | None = None,
    waba_id: str | None = None,
    max_series: int | None = None,
) -> SourcesAnswer:
    """Parse a decoded 200 answer to a request for every source of `layout`, with the checks
    of `parse_answer` (`max_series` holds for each source on its own).

    A field the answer leaves out means no data for that source, as for conversations; keys of
    fields that were not asked for are ignored.
    """
    if not isinstance(body, Mapping):
        raise BadResponse("answer: expected a JSON object")
    answer_id = _answer_id(body.get("id"), waba_id)
    parsed: dict[str, SourcePoints] = {}
    for name, dimensions in layout.sources:
        source = SOURCES_BY_NAME[name]
        analytics = body.get(source.field)
        if analytics is None:
            parsed[name] = SourcePoints({key: () for key in source.counts})
            continue
        # conversation_analytics keeps the error messages it always had.
        prefix = "" if name == CONVERSATION_ANALYTICS else f"{source.field}."
        parsed[name] = parse_field(
            analytics, source, dimensions, prefix, window=window, max_series=max_series
        )
    return SourcesAnswer(answer_id, parsed)
