"""A target's history, read once and replayed: what the live exporter served at each past time.

`fetch_history` reads the HALF_HOUR points of every enabled source a day per request, through
the same client, query builder and parser as a poll. `replay` does, for every sample time t,
what a poll at t does with them (the same `query_window`, the same `sources.evaluate_sources`
and so the same `buckets.evaluate`). `build_series` turns the replay into
one step function per series of each data family of the metrics table.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from exporter.config import Config, PollConfig, Target
from exporter.pipeline.buckets import LabelValues, fresh_state, latest_complete_bucket
from exporter.pipeline.poller import build_query
from exporter.pipeline.snapshot import SourceResult, TargetSnapshot
from exporter.pipeline.sources import CounterKey, CounterStates, counter_keys, evaluate_sources
from exporter.serve.metrics import DATA_METRICS, MetricSpec, is_served
from exporter.upstream.client import SplashifyClient
from exporter.upstream.parse import AmountPoint, SourcePoints, parse_sources
from exporter.upstream.query import query_window
from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    HALF_HOUR_SECONDS,
    SOURCES_BY_NAME,
    DataPoint,
    Layout,
)

_Point = TypeVar("_Point", DataPoint, AmountPoint)

CHUNK_SECONDS = 86400
"""History is read a day per request: a few thousand points per answer."""
FETCH_BUDGET_SECONDS = 300.0
"""How long one request may take, retries included."""


@dataclass(slots=True)
class History:
    """One target's points from the oldest window a step needs up to `end`, per source."""

    target: Target
    waba_id: str
    layout: Layout = field(default_factory=lambda: Layout(()))
    counts: dict[CounterKey, list[DataPoint]] = field(default_factory=dict)
    """Per (source, counted value key)."""
    amounts: dict[CounterKey, list[AmountPoint]] = field(default_factory=dict)
    """Per (source, shown-only value key), for the keys the answers carried."""

    @property
    def points(self) -> list[DataPoint]:
        """The conversation_analytics points."""
        return self.counts.get((CONVERSATION_ANALYTICS, "conversation"), [])

    def add(self, answer: Mapping[str, SourcePoints]) -> None:
        for name, points in answer.items():
            for key, counted in points.counts.items():
                self.counts.setdefault((name, key), []).extend(counted)
            for key, amounts in points.amounts.items():
                self.amounts.setdefault((name, key), []).extend(amounts)


def fetch_history(
    client: SplashifyClient, config: Config, target: Target, start: int, end: int
) -> History:
    """Every HALF_HOUR point of `target` from bucket `start` until `end`, a day per request,
    every enabled source in each request.

    Chunks meet on bucket boundaries, so no bucket comes twice. Raises `UpstreamError`.
    """
    history = History(target, target.waba_id or "", config.layout)
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + CHUNK_SECONDS, end)
        query = build_query(config, target, chunk_start, chunk_end)
        body = client.fetch(target, query, time.monotonic() + FETCH_BUDGET_SECONDS)
        answer = parse_sources(
            body,
            config.layout,
            window=(chunk_start, chunk_end),
            waba_id=target.waba_id,
            max_series=config.limits.max_series_per_target,
        )
        if target.customer_id is not None and answer.waba_id:
            history.waba_id = answer.waba_id
        history.add(answer.sources)
        chunk_start = chunk_end
    return history


Results = dict[str, SourceResult]


def _by_bucket(points: Sequence[_Point]) -> dict[int, list[_Point]]:
    grouped: dict[int, list[_Point]] = {}
    for point in points:
        grouped.setdefault(point.start, []).append(point)
    return grouped


def _in(by_bucket: Mapping[int, list[_Point]], buckets: range) -> tuple[_Point, ...]:
    return tuple(point for bucket in buckets for point in by_bucket.get(bucket, ()))


def replay(history: History, poll: PollConfig, times: Sequence[int]) -> Iterator[Results]:
    """What a poll at each of `times` (ascending) makes of the history, as the live poller
    does: the results of every source (sources.evaluate_sources).

    A poll at t sees the buckets of `query_window(t)` that started before the window's end.
    Between two times that see the same buckets and report the same bucket, nothing can change,
    so the results are reused (the same object).
    """
    counts = {key: _by_bucket(points) for key, points in history.counts.items()}
    amounts = {key: _by_bucket(points) for key, points in history.amounts.items()}
    # As a fresh exporter started at the first time: what was complete then is not counted.
    states: CounterStates = {}
    if times:
        baseline = latest_complete_bucket(times[0], poll.delay)
        states = {key: fresh_state(baseline) for key in counter_keys(history.layout)}
    key: tuple[int, int, int] | None = None
    results: Results | None = None
    for t in times:
        window_start, window_end = query_window(t, poll.lookback)
        first = -(-window_start // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS
        stop = -(-window_end // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS  # buckets before it
        reported = latest_complete_bucket(t, poll.delay)
        if (window_start, stop, reported) != key or results is None:
            key = (window_start, stop, reported)
            buckets = range(first, stop, HALF_HOUR_SECONDS)
            seen: dict[str, SourcePoints] = {}
            for name in history.layout.names:
                seen[name] = SourcePoints(
                    counts={
                        value: _in(counts.get((name, value), {}), buckets)
                        for value in SOURCES_BY_NAME[name].counts
                    },
                    amounts={
                        value: _in(by_start, buckets)
                        for (source, value), by_start in amounts.items()
                        if source == name
                    },
                )
            results, states = evaluate_sources(
                seen,
                history.layout,
                now=t,
                delay=poll.delay,
                window_start=window_start,
                previous=states,
            )
        yield results


class _Series:
    """One series as a step function over sample indices: (first index, value) at each change.

    NaN marks "absent from here on". A year of one-minute steps holds one change per half hour.
    """

    __slots__ = ("starts", "values")

    def __init__(self) -> None:
        self.starts = array("q")
        self.values = array("d")

    def set(self, index: int, value: float) -> None:
        if self.values and (
            self.values[-1] == value or (math.isnan(value) and math.isnan(self.values[-1]))
        ):
            return
        self.starts.append(index)
        self.values.append(value)

    def runs(self, count: int) -> Iterator[tuple[int, int, float]]:
        """(first index, end index, value) of each run that has a value."""
        for i, (first, value) in enumerate(zip(self.starts, self.values, strict=True)):
            end = self.starts[i + 1] if i + 1 < len(self.starts) else count
            if not math.isnan(value):
                yield first, end, value


@dataclass(slots=True)
class TargetSeries:
    target_name: str
    waba_id: str
    families: dict[str, dict[LabelValues, _Series]]


def served_families(layout: Layout) -> tuple[MetricSpec, ...]:
    """The data families of the metrics table that /metrics serves under `layout`."""
    return tuple(spec for spec in DATA_METRICS if is_served(spec, layout))


def _family_values(
    history: History, results: Results
) -> dict[str, list[tuple[LabelValues, float]]]:
    """What each data family of the metrics table shows for `results`, as a live poll's
    snapshot would show it."""
    others = dict(results)
    conversations = others.pop(CONVERSATION_ANALYTICS, None)
    snapshot = TargetSnapshot(
        target_name=history.target.name,
        waba_id=history.waba_id,
        poll_success=True,
        poll_duration=0.0,
        bucket_start=conversations.bucket_start if conversations else None,
        conversations=cast(
            "Mapping[LabelValues, int]",
            conversations.gauges["conversation"] if conversations else {},
        ),
        observed=conversations.totals["conversation"] if conversations else {},
        sources=others,
        layout=history.layout,
    )
    return {spec.name: list(spec.samples(snapshot)) for spec in served_families(history.layout)}


def build_series(history: History, poll: PollConfig, times: Sequence[int]) -> TargetSeries:
    specs = served_families(history.layout)
    families: dict[str, dict[LabelValues, _Series]] = {spec.name: {} for spec in specs}
    previous: Results | None = None
    present: dict[str, set[LabelValues]] = {spec.name: set() for spec in specs}
    for index, results in enumerate(replay(history, poll, times)):
        if results is previous:
            continue
        previous = results
        for name, samples in _family_values(history, results).items():
            values = dict(samples)
            series = families[name]
            for labels, value in values.items():
                series.setdefault(labels, _Series()).set(index, float(value))
            for gone in present[name] - values.keys():
                series[gone].set(index, math.nan)
            present[name] = set(values)
    return TargetSeries(history.target.name, history.waba_id, families)


