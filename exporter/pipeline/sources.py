"""Every enabled source through the same rules: one request, and what its answer means.

A source (vocabulary.Source) is a description: the field to ask for, its dimensions and its
value keys. Nothing here is specific to one source. The request carries every enabled field
(`fields=a...,b...`: one request per target and poll, one share of the rate budget); each value
key of each source then goes through the same `buckets.evaluate` as conversations always did,
with its own counter state, so bucket choice, delay, lookback, zero-fill and counting are the
same for all of them. A source the answer leaves out has no data this poll, as conversations
never had.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from exporter.config import Config, Target
from exporter.pipeline.buckets import ObservedState, evaluate, reported_amounts
from exporter.pipeline.snapshot import SourceResult
from exporter.upstream.parse import SourcePoints
from exporter.upstream.query import AnalyticsQuery, FieldQuery, Request, source_query
from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    SOURCES_BY_NAME,
    Layout,
)

CounterKey = tuple[str, str]
"""(source name, value key), e.g. ("pricing_analytics", "volume"): what one counter state
belongs to. A target keeps one state per key, so that a reload or a saved state can keep or
drop each source's counters on its own."""

CounterStates = Mapping[CounterKey, ObservedState]


def counter_keys(layout: Layout) -> tuple[CounterKey, ...]:
    """Every counter of `layout`'s enabled sources, in order."""
    return tuple((name, key) for name in layout.names for key in SOURCES_BY_NAME[name].counts)


def build_request(config: Config, target: Target, start: int, end: int) -> Request:
    """The one request of a poll (or of a backfill chunk): every enabled source, in order."""
    parts: list[AnalyticsQuery | FieldQuery] = []
    for name in config.sources:
        if name == CONVERSATION_ANALYTICS:
            parts.append(
                AnalyticsQuery(
                    start=start,
                    end=end,
                    phone_numbers=target.phone_numbers,
                    conversation_categories=config.filters.conversation_categories,
                    conversation_types=config.filters.conversation_types,
                    conversation_directions=config.filters.conversation_directions,
                    dimensions=config.dimensions,
                )
            )
            continue
        parts.append(
            source_query(
                SOURCES_BY_NAME[name],
                start,
                end,
                phone_numbers=target.phone_numbers,
                filters=config.source_filters(name),
                dimensions=config.layout.dimensions(name),
            )
        )
    return Request(tuple(parts))


def series_key(config: Config, name: str) -> tuple[object, ...]:
    """What gives source `name`'s label values their meaning: whether it is enabled, its
    dimensions and its filters. Counters carry over a reload only while this stays the same."""
    if name not in config.sources:
        return ("disabled",)
    return (config.layout.dimensions(name), config.source_filters(name))


def evaluate_sources(
    answer: Mapping[str, SourcePoints],
    layout: Layout,
    *,
    now: float,
    delay: float,
    window_start: int,
    previous: CounterStates,
) -> tuple[dict[str, SourceResult], dict[CounterKey, ObservedState]]:
    """Each enabled source's gauges and counters, and the new counter states.

    Every counted value key is one `buckets.evaluate` with its own state (a source missing from
    `answer` is evaluated on no points: its known label sets read 0, its counters hold). A
    value that is shown but never counted (`cost`) takes the counted sibling's bucket and
    label sets, and appears only when the answer carried it.
    """
    results: dict[str, SourceResult] = {}
    states: dict[CounterKey, ObservedState] = {}
    for name in layout.names:
        source = SOURCES_BY_NAME[name]
        points = answer.get(name)
        gauges: dict[str, Mapping] = {}
        totals: dict[str, Mapping] = {}
        bucket_start = 0
        for key in source.counts:
            evaluation = evaluate(
                points.counts.get(key, ()) if points is not None else (),
                now=now,
                delay=delay,
                window_start=window_start,
                previous=previous.get((name, key), ObservedState()),
            )
            states[name, key] = evaluation.observed
            gauges[key] = evaluation.conversations
            totals[key] = evaluation.observed.totals
            bucket_start = evaluation.bucket_start
        if points is not None:
            shown = gauges[source.counts[0]]
            for key, amounts in points.amounts.items():
                gauges[key] = reported_amounts(amounts, bucket_start, shown)
        results[name] = SourceResult(
            bucket_start, MappingProxyType(gauges), MappingProxyType(totals)
        )
    return results, states
