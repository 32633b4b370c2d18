"""A target's history, read once and replayed: what the live exporter served at each past time.

`fetch_history` reads the HALF_HOUR points a day per request, through the same client, query
builder and parser as a poll. `replay` does, for every sample time t, what a poll at t does with
them (the same `query_window`, the same `buckets.evaluate`). `build_series` turns the replay into
one step function per series of each data family of the metrics table.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from exporter.config import Config, PollConfig, Target
from exporter.pipeline.buckets import (
    Evaluation,
    LabelValues,
    ObservedState,
    evaluate,
    fresh_state,
    latest_complete_bucket,
)
from exporter.pipeline.poller import build_query
from exporter.pipeline.snapshot import TargetSnapshot
from exporter.serve.metrics import DATA_METRICS
from exporter.upstream.client import SplashifyClient
from exporter.upstream.parse import parse_answer
from exporter.upstream.query import query_window
from exporter.vocabulary import HALF_HOUR_SECONDS, DataPoint

CHUNK_SECONDS = 86400
"""History is read a day per request: a few thousand points per answer."""
FETCH_BUDGET_SECONDS = 300.0
"""How long one request may take, retries included."""


@dataclass(slots=True)
class History:
    """One target's points from the oldest window a step needs up to `end`."""

    target: Target
    waba_id: str
    points: list[DataPoint] = field(default_factory=list)


def fetch_history(
    client: SplashifyClient, config: Config, target: Target, start: int, end: int
) -> History:
    """Every HALF_HOUR point of `target` from bucket `start` until `end`, a day per request.

    Chunks meet on bucket boundaries, so no bucket comes twice. Raises `UpstreamError`.
    """
    history = History(target, target.waba_id or "")
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + CHUNK_SECONDS, end)
        query = build_query(config, target, chunk_start, chunk_end)
        body = client.fetch(target, query, time.monotonic() + FETCH_BUDGET_SECONDS)
        answer = parse_answer(
            body,
            config.dimensions,
            window=(chunk_start, chunk_end),
            waba_id=target.waba_id,
            max_series=config.limits.max_series_per_target,
        )
        if target.customer_id is not None and answer.waba_id:
            history.waba_id = answer.waba_id
        history.points.extend(answer.points)
        chunk_start = chunk_end
    return history


def replay(
    points: Sequence[DataPoint], poll: PollConfig, times: Sequence[int]
) -> Iterator[Evaluation]:
    """What a poll at each of `times` (ascending) makes of `points`, as the live poller does.

    A poll at t sees the buckets of `query_window(t)` that started before the window's end.
    Between two times that see the same buckets and report the same bucket, nothing can change,
    so the evaluation is reused (the same object).
    """
    by_bucket: dict[int, list[DataPoint]] = {}
    for point in points:
        by_bucket.setdefault(point.start, []).append(point)
    # As a fresh exporter started at the first time: what was complete then is not counted.
    state = fresh_state(latest_complete_bucket(times[0], poll.delay)) if times else ObservedState()
    key: tuple[int, int, int] | None = None
    evaluation: Evaluation | None = None
    for t in times:
        window_start, window_end = query_window(t, poll.lookback)
        first = -(-window_start // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS
        stop = -(-window_end // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS  # buckets before it
        reported = latest_complete_bucket(t, poll.delay)
        if (window_start, stop, reported) != key or evaluation is None:
            key = (window_start, stop, reported)
            seen = [p for b in range(first, stop, HALF_HOUR_SECONDS) for p in by_bucket.get(b, ())]
            evaluation = evaluate(
                seen, now=t, delay=poll.delay, window_start=window_start, previous=state
            )
            state = evaluation.observed
        yield evaluation


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


def _family_values(
    history: History, evaluation: Evaluation
) -> dict[str, list[tuple[LabelValues, float]]]:
    """What each data family of the metrics table shows for `evaluation`, as a live poll's
    snapshot would show it."""
    snapshot = TargetSnapshot(
        target_name=history.target.name,
        waba_id=history.waba_id,
        poll_success=True,
        poll_duration=0.0,
        bucket_start=evaluation.bucket_start,
        conversations=evaluation.conversations,
        observed=evaluation.observed.totals,
    )
    return {spec.name: list(spec.samples(snapshot)) for spec in DATA_METRICS}


def build_series(history: History, poll: PollConfig, times: Sequence[int]) -> TargetSeries:
    families: dict[str, dict[LabelValues, _Series]] = {spec.name: {} for spec in DATA_METRICS}
    previous: Evaluation | None = None
    present: dict[str, set[LabelValues]] = {spec.name: set() for spec in DATA_METRICS}
    for index, evaluation in enumerate(replay(history.points, poll, times)):
        if evaluation is previous:
            continue
        previous = evaluation
        for name, samples in _family_values(history, evaluation).items():
            values = dict(samples)
            series = families[name]
            for labels, value in values.items():
                series.setdefault(labels, _Series()).set(index, float(value))
            for gone in present[name] - values.keys():
                series[gone].set(index, math.nan)
            present[name] = set(values)
    return TargetSeries(history.target.name, history.waba_id, families)


