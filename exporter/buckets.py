"""Bucket logic: which half hour is reported, zero-filling, and the observed counter.

Pure functions on plain data (no clock, no I/O), so every rule is tested directly.

The rules (CONTRACT.md):
- The reported bucket follows the clock, not the data: the newest half hour that ended at
  least `delay` ago, even when it had no conversations.
- Every label set seen anywhere in the lookback window reads 0 in the reported bucket when the
  bucket does not have it, so a quiet half hour shows as 0 rather than as a vanished series.
- `observed_total` counts every conversation of every complete bucket once; an upward revision
  adds its difference, a downward one adds nothing (a counter never goes back), and buckets
  missed while polls failed are caught up from the lookback window by the next good poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.query import align_down
from exporter.vocabulary import HALF_HOUR_SECONDS, DataPoint

LabelValues = tuple[str, ...]
BucketCounts = Mapping[LabelValues, int]

_EMPTY: Mapping = MappingProxyType({})


def latest_complete_bucket(now: float, delay: float) -> int:
    """Start of the newest half-hour bucket that ended at least `delay` seconds before `now`.

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2026, 1, 1, 10, 47, tzinfo=timezone.utc).timestamp()
    >>> datetime.fromtimestamp(latest_complete_bucket(ts, 1800), timezone.utc).strftime("%H:%M")
    '09:30'
    """
    return align_down(now - delay) - HALF_HOUR_SECONDS


def counts_by_bucket(
    points: Iterable[DataPoint], window_start: int
) -> dict[int, dict[LabelValues, int]]:
    """Group points by bucket start (order of arrival does not matter), summing duplicates.

    Points older than `window_start` are ignored: they are outside what this poll asked for.
    """
    buckets: dict[int, dict[LabelValues, int]] = {}
    for point in points:
        if point.start < window_start:
            continue
        bucket = buckets.setdefault(point.start, {})
        bucket[point.labels] = bucket.get(point.labels, 0) + point.conversations
    return buckets


def zero_filled(bucket: BucketCounts, seen: Iterable[LabelValues]) -> dict[LabelValues, int]:
    """The bucket's counts, with 0 for every label set in `seen` that it lacks."""
    filled = dict.fromkeys(seen, 0)
    filled.update(bucket)
    return filled


@dataclass(frozen=True, slots=True)
class ObservedState:
    """What the observed counter has accumulated, and what it already counted of each bucket.

    `counted` keeps, per complete bucket still inside the lookback window, the highest count
    seen for each label set, so that a re-read of the same bucket adds only an upward revision.
    """

    totals: Mapping[LabelValues, int] = field(default_factory=dict)
    counted: Mapping[int, BucketCounts] = field(default_factory=dict)
    floor: int = 0
    """The latest window start seen. Buckets before it were forgotten and must never be
    counted again, even if the wall clock steps back and a window reaches them once more."""


def accumulate(
    state: ObservedState,
    buckets: Mapping[int, BucketCounts],
    window_start: int,
    latest_complete: int,
) -> ObservedState:
    """A new state with the complete buckets in `window_start..latest_complete` counted in.

    Buckets newer than `latest_complete` are provisional and not counted yet (their label sets
    get a series at 0). Per-bucket memory older than `window_start` is dropped, and such
    buckets are ignored from then on.
    """
    floor = max(state.floor, window_start)
    totals = dict(state.totals)
    counted = {start: counts for start, counts in state.counted.items() if start >= floor}
    for start, counts in buckets.items():
        if start < floor:
            continue
        if start > latest_complete:
            # Provisional: not counted yet, but the series exists from now on at 0, so that
            # increase() sees the first conversations when the bucket completes.
            for labels in counts:
                totals.setdefault(labels, 0)
            continue
        already = counted.get(start, _EMPTY)
        merged = dict(already)
        for labels, count in counts.items():
            before = already.get(labels, 0)
            if count > before:
                totals[labels] = totals.get(labels, 0) + count - before
                merged[labels] = count
            elif labels not in totals:
                # A label set first seen at 0 still gets its series.
                totals[labels] = 0
        counted[start] = merged
    return ObservedState(totals=totals, counted=counted, floor=floor)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one poll's answer means for /metrics."""

    bucket_start: int
    conversations: Mapping[LabelValues, int]
    observed: ObservedState


def evaluate(
    points: Iterable[DataPoint],
    *,
    now: float,
    delay: float,
    window_start: int,
    previous: ObservedState,
) -> Evaluation:
    """Choose the reported bucket, zero-fill it, and fold the window into the counter."""
    reported = latest_complete_bucket(now, delay)
    buckets = counts_by_bucket(points, window_start)
    observed = accumulate(previous, buckets, window_start, reported)
    seen: set[LabelValues] = set()
    for counts in buckets.values():
        seen.update(counts)
    # Label sets this poll no longer returned but that an earlier poll saw in a bucket still
    # inside the window (e.g. the answer came back empty) keep reading 0, not vanishing.
    for counts in observed.counted.values():
        seen.update(counts)
    conversations = zero_filled(buckets.get(reported, _EMPTY), seen)
    return Evaluation(bucket_start=reported, conversations=conversations, observed=observed)
