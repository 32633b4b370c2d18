"""Bucket logic: which half hour is reported, zero-filling, and the observed counter.

Pure functions on plain data (no clock, no I/O), so every rule is tested directly.

The rules (docs/contract.md):
- The reported bucket follows the clock, not the data: the newest half hour that ended at
  least `delay` ago, even when it had no conversations.
- Every label set seen anywhere in the lookback window reads 0 in the reported bucket when the
  bucket does not have it, so a quiet half hour shows as 0 rather than as a vanished series.
- `observed_total` counts every conversation of every complete bucket once; an upward revision
  adds its difference, a downward one adds nothing (a counter never goes back), and buckets
  missed while polls failed are caught up from the lookback window by the next good poll.
- A fresh counter (a new process without saved state, or new dimensions) does not count the
  history it finds: its first fold takes every complete bucket up to its baseline as already
  counted, remembering each count without adding it. A restart then never adds hours of old
  conversations to `increase()`; later revisions of those buckets still add their difference.
"""

from __future__ import annotations

from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from exporter.upstream.query import align_down
from exporter.vocabulary import HALF_HOUR_SECONDS, DataPoint

LabelValues = tuple[str, ...]
BucketCounts = Mapping[LabelValues, int]

LabelIndex = Mapping[LabelValues, int]
"""Label set -> position 0..n-1, in insertion order."""

_EMPTY: Mapping = MappingProxyType({})

ABSENT = -1
"""A packed value for "no such label set here" (counts are never negative)."""
_ABSENT_RUN = array("q", [ABSENT])


class PackedCounts(Mapping[LabelValues, int]):
    """Counts by label set, as one machine integer per position of a shared label index.

    Tens of thousands of label sets per process make per-entry dicts and int objects the bulk of
    the memory; here a value costs 8 bytes. A position past the end of `values`, or holding
    ABSENT, is a label set this mapping does not have. Read-only, like every snapshot part.
    """

    __slots__ = ("_index", "_values")

    def __init__(self, index: LabelIndex, values: array[int]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, labels: LabelValues) -> int:
        position = self._index.get(labels)
        if position is None or position >= len(self._values) or self._values[position] < 0:
            raise KeyError(labels)
        return self._values[position]

    def __iter__(self) -> Iterator[LabelValues]:
        return (labels for labels, _ in self.pairs())

    def __len__(self) -> int:
        return sum(1 for value in self._values if value >= 0)

    def pairs(self) -> Iterator[tuple[LabelValues, int]]:
        """(labels, count) in index order, without a lookup per item."""
        # zip stops at the shorter: positions the values never reached are absent.
        return ((labels, v) for labels, v in zip(self._index, self._values, strict=False) if v >= 0)

    def items(self) -> ItemsView[LabelValues, int]:
        return _PackedItems(self)

    def __repr__(self) -> str:
        return f"PackedCounts({dict(self.pairs())!r})"


class _PackedItems(ItemsView[LabelValues, int]):
    _mapping: PackedCounts

    def __iter__(self) -> Iterator[tuple[LabelValues, int]]:
        return self._mapping.pairs()


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


_Value = TypeVar("_Value", int, float)


def zero_filled(
    bucket: Mapping[LabelValues, _Value], seen: Iterable[LabelValues]
) -> dict[LabelValues, _Value]:
    """The bucket's counts, with 0 for every label set in `seen` that it lacks."""
    filled: dict[LabelValues, _Value] = dict.fromkeys(seen, 0)
    filled.update(bucket)
    return filled


def reported_amounts(
    points: Iterable[tuple[int, LabelValues, float]],
    bucket_start: int,
    shown: Iterable[LabelValues],
) -> dict[LabelValues, float]:
    """A value that is shown but not counted (pricing's `cost`), for the reported bucket: summed
    per label set, 0 for every label set in `shown` (those its counted sibling shows) it lacks."""
    in_bucket: dict[LabelValues, float] = {}
    for start, labels, amount in points:
        if start == bucket_start:
            in_bucket[labels] = in_bucket.get(labels, 0.0) + amount
    return zero_filled(in_bucket, shown)


@dataclass(frozen=True, slots=True)
class ObservedState:
    """What the observed counter has accumulated, and what it already counted of each bucket.

    `counted` keeps, per complete bucket still inside the lookback window, the highest count
    seen for each label set, so that a re-read of the same bucket adds only an upward revision.

    Stored packed (see `PackedCounts`): one label index per state, and one machine integer per
    label set for the totals and for each bucket in the window. A 6h lookback holds 12 buckets
    per label set; as dicts they cost ~40 bytes an entry plus an int object, as arrays 8.
    """

    index: LabelIndex = field(default_factory=dict)
    """Every label set this state knows, by position; never mutated once the state exists."""
    total_values: array[int] = field(default_factory=lambda: array("q"))
    counted_values: Mapping[int, array[int]] = field(default_factory=dict)
    floor: int = 0
    """The latest window start seen. Buckets before it were forgotten and must never be
    counted again, even if the wall clock steps back and a window reaches them once more."""
    last_seen: array[int] = field(default_factory=lambda: array("q"))
    """Per label set, the start of the newest bucket any answer had it in, complete or not, at
    any count (ABSENT: never). A label set whose newest bucket is still inside the window keeps
    reading 0 even when a later answer leaves it out (or comes back with no data at all)."""
    baseline: int | None = None
    """A fresh counter's start (see `fresh_state`): the next fold takes every complete bucket
    up to this one as counted before, remembering its counts without adding them. None: count
    everything (every state after its first fold, and every state read back from a file)."""

    @property
    def totals(self) -> PackedCounts:
        return PackedCounts(self.index, self.total_values)

    @property
    def counted(self) -> dict[int, PackedCounts]:
        return {start: PackedCounts(self.index, v) for start, v in self.counted_values.items()}


def fresh_state(baseline: int) -> ObservedState:
    """The state of a counter that starts now, when `baseline` is the bucket a poll reports.

    It counts the buckets that complete after `baseline`; `baseline` and everything before it
    are what a previous process (or nobody) counted, which this one cannot know: remembered at
    the first fold, never added. So a restart costs `increase()` at most the buckets that
    completed while no process was polling, and never counts a bucket twice.
    """
    return ObservedState(baseline=baseline)


def _extended(values: array[int] | None, size: int) -> array[int]:
    """A copy of `values` (or an empty array) grown to `size` positions with ABSENT."""
    copy = array("q") if values is None else array("q", values)
    if len(copy) < size:
        copy.extend(_ABSENT_RUN * (size - len(copy)))
    return copy


def accumulate(
    state: ObservedState,
    buckets: Mapping[int, BucketCounts],
    window_start: int,
    latest_complete: int,
) -> ObservedState:
    """A new state with the complete buckets in `window_start..latest_complete` counted in.

    Buckets newer than `latest_complete` are provisional and not counted yet (their label sets
    get a series at 0). Per-bucket memory older than `window_start` is dropped, and such
    buckets are ignored from then on. A fresh state's first fold remembers the complete buckets
    up to its baseline without adding them (see `fresh_state`).
    """
    floor = max(state.floor, window_start)
    index = state.index
    new = [labels for counts in buckets.values() for labels in counts if labels not in index]
    if new:
        # A new index for the new state: the previous state, perhaps still served, keeps its own.
        # Existing label sets keep their positions (and key objects), so old arrays stay valid.
        index = dict(index)
        for labels in new:
            index.setdefault(labels, len(index))
    size = len(index)
    totals = _extended(state.total_values, size)
    last_seen = _extended(state.last_seen, size)
    counted = {start: v for start, v in state.counted_values.items() if start >= floor}
    baseline = state.baseline
    for start, counts in buckets.items():
        if start < floor:
            continue
        if start > latest_complete:
            # Provisional: not counted yet, but the series exists from now on at 0, so that
            # increase() sees the first conversations when the bucket completes.
            for labels in counts:
                position = index[labels]
                if last_seen[position] < start:
                    last_seen[position] = start
                if totals[position] == ABSENT:
                    totals[position] = 0
            continue
        merged = _extended(counted.get(start), size)
        if baseline is not None and start <= baseline:
            # Counted before this counter existed, or never: remembered, not added.
            for labels, count in counts.items():
                position = index[labels]
                if last_seen[position] < start:
                    last_seen[position] = start
                if count > merged[position]:
                    merged[position] = count
                if totals[position] == ABSENT:
                    totals[position] = 0
            counted[start] = merged
            continue
        for labels, count in counts.items():
            position = index[labels]
            if last_seen[position] < start:
                last_seen[position] = start
            before = merged[position]
            if before < 0:
                before = 0
            if count > before:
                total = totals[position]
                totals[position] = (total if total > 0 else 0) + count - before
                merged[position] = count
            elif totals[position] == ABSENT:
                # A label set first seen at 0 still gets its series.
                totals[position] = 0
        counted[start] = merged
    return ObservedState(
        index=index,
        total_values=totals,
        counted_values=counted,
        floor=floor,
        last_seen=last_seen,
        # Kept while the baseline is not complete yet (a clock that stepped back): those
        # buckets are history to this counter too, whenever they complete.
        baseline=baseline if baseline is not None and baseline > latest_complete else None,
    )


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
    index = observed.index
    # zero_filled() over every label set seen in the window, packed: by this answer or by an
    # earlier one (a label set the upstream no longer returns, or an answer that came back
    # empty, keeps reading 0 until its newest bucket leaves the window), ABSENT for the rest.
    floor = observed.floor
    values = array("q", [0 if seen >= floor else ABSENT for seen in observed.last_seen])
    # Points older than the floor (the clock stepped back) are shown, though never counted.
    for start, counts in buckets.items():
        if start < floor:
            for labels in counts:
                values[index[labels]] = 0
    for labels, count in buckets.get(reported, _EMPTY).items():
        values[index[labels]] = count
    conversations = PackedCounts(index, values)
    return Evaluation(bucket_start=reported, conversations=conversations, observed=observed)
