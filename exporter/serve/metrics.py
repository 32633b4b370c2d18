"""The one metrics table: every metric the exporter serves, by name, type, HELP and labels.

The collector, the render cache, the self-metrics and backfill all read their names from here;
nothing else in the exporter names a metric. Dashboards and alert rules depend on these names
(tests/golden/metric_surface.txt pins them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.pipeline.buckets import LabelValues
from exporter.pipeline.snapshot import TargetSnapshot
from exporter.upstream.errors import ERROR_REASONS
from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    DIMENSIONS_BY_NAME,
    MESSAGE_ANALYTICS,
    PRICING_ANALYTICS,
    SOURCES,
    Layout,
)

TARGET_LABELS = ("waba_id", "waba_name")
CACHED = (
    " As of the last poll (data is polled in the background and cached); "
    "see whatsapp_exporter_last_success_timestamp_seconds."
)

Samples = Callable[[TargetSnapshot], Iterable[tuple[LabelValues, float]]]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    family: type[GaugeMetricFamily] | type[CounterMetricFamily]
    documentation: str
    per_series: bool
    """True: labelled by target and by every enabled dimension; False: by target only."""
    samples: Samples
    data: bool = False
    """Proxied data: dropped once the target's last success is older than poll.stale_after."""
    source: str | None = CONVERSATION_ANALYTICS
    """The source whose data this is: the family is served only while that source is enabled,
    and a per-series family is labelled by the source's enabled dimensions. None: about the
    target's polls, served whatever the sources."""


def _one(value: float | None) -> list[tuple[LabelValues, float]]:
    return [] if value is None else [((), float(value))]


def _gauge(source: str, key: str) -> Samples:
    """The reported bucket of value `key` of `source` (empty before a poll succeeded, or, for a
    value such as `cost`, when the answers did not carry it)."""

    def samples(s: TargetSnapshot) -> Iterable[tuple[LabelValues, float]]:
        result = s.sources.get(source)
        return result.gauges.get(key, {}).items() if result is not None else ()

    return samples


def _total(source: str, key: str) -> Samples:
    """The observed counter of value `key` of `source`."""

    def samples(s: TargetSnapshot) -> Iterable[tuple[LabelValues, float]]:
        result = s.sources.get(source)
        return result.totals.get(key, {}).items() if result is not None else ()

    return samples


def _bucket(source: str) -> Samples:
    def samples(s: TargetSnapshot) -> Iterable[tuple[LabelValues, float]]:
        result = s.sources.get(source)
        return _one(result.bucket_start if result is not None else None)

    return samples


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "whatsapp_conversations",
        GaugeMetricFamily,
        "Conversations in the latest complete half-hour bucket (the newest that ended at least "
        "poll.delay ago; 0 for label sets seen in the lookback window but not in it)." + CACHED,
        True,
        lambda s: s.conversations.items(),
        data=True,
    ),
    MetricSpec(
        "whatsapp_conversations_bucket_start_timestamp_seconds",
        GaugeMetricFamily,
        "Start (unix seconds) of the half-hour bucket that whatsapp_conversations reports."
        + CACHED,
        False,
        lambda s: _one(s.bucket_start),
        data=True,
    ),
    MetricSpec(
        "whatsapp_conversations_observed",
        CounterMetricFamily,
        "Conversations of every half-hour bucket completed since the exporter started counting "
        "(at its first poll, or where its --persistence.file left off); upward revisions add "
        "their difference." + CACHED,
        True,
        lambda s: s.observed.items(),
        data=True,
    ),
    MetricSpec(
        "whatsapp_pricing_volume",
        GaugeMetricFamily,
        "Messages that pricing_analytics counts (volume) in the latest complete half-hour "
        "bucket (the newest that ended at least poll.delay ago; 0 for label sets seen in the "
        "lookback window but not in it)." + CACHED,
        True,
        _gauge(PRICING_ANALYTICS, "volume"),
        data=True,
        source=PRICING_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_pricing_volume_observed",
        CounterMetricFamily,
        "Messages (pricing_analytics volume) of every half-hour bucket completed since the "
        "exporter started counting (at its first poll, or where its --persistence.file left "
        "off); upward revisions add their difference." + CACHED,
        True,
        _total(PRICING_ANALYTICS, "volume"),
        data=True,
        source=PRICING_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_pricing_cost",
        GaugeMetricFamily,
        "Cost of the messages of whatsapp_pricing_volume's bucket, in the account's currency "
        "as pricing_analytics reports it; only for accounts whose answers carry cost (not "
        "partner-billed ones)." + CACHED,
        True,
        _gauge(PRICING_ANALYTICS, "cost"),
        data=True,
        source=PRICING_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_pricing_bucket_start_timestamp_seconds",
        GaugeMetricFamily,
        "Start (unix seconds) of the half-hour bucket that the whatsapp_pricing gauges report."
        + CACHED,
        False,
        _bucket(PRICING_ANALYTICS),
        data=True,
        source=PRICING_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_messages_sent",
        GaugeMetricFamily,
        "Messages sent (message analytics) in the latest complete half-hour bucket." + CACHED,
        False,
        _gauge(MESSAGE_ANALYTICS, "sent"),
        data=True,
        source=MESSAGE_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_messages_delivered",
        GaugeMetricFamily,
        "Messages delivered (message analytics) in the latest complete half-hour bucket."
        + CACHED,
        False,
        _gauge(MESSAGE_ANALYTICS, "delivered"),
        data=True,
        source=MESSAGE_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_messages_sent_observed",
        CounterMetricFamily,
        "Messages sent (message analytics) in every half-hour bucket completed since the "
        "exporter started counting (at its first poll, or where its --persistence.file left "
        "off); upward revisions add their difference." + CACHED,
        False,
        _total(MESSAGE_ANALYTICS, "sent"),
        data=True,
        source=MESSAGE_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_messages_delivered_observed",
        CounterMetricFamily,
        "Messages delivered (message analytics) in every half-hour bucket completed since the "
        "exporter started counting (at its first poll, or where its --persistence.file left "
        "off); upward revisions add their difference." + CACHED,
        False,
        _total(MESSAGE_ANALYTICS, "delivered"),
        data=True,
        source=MESSAGE_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_messages_bucket_start_timestamp_seconds",
        GaugeMetricFamily,
        "Start (unix seconds) of the half-hour bucket that the whatsapp_messages gauges report."
        + CACHED,
        False,
        _bucket(MESSAGE_ANALYTICS),
        data=True,
        source=MESSAGE_ANALYTICS,
    ),
    MetricSpec(
        "whatsapp_exporter_poll_success",
        GaugeMetricFamily,
        "1 if the target's last poll succeeded, else 0.",
        False,
        lambda s: _one(1.0 if s.poll_success else 0.0),
        source=None,
    ),
    MetricSpec(
        "whatsapp_exporter_last_success_timestamp_seconds",
        GaugeMetricFamily,
        "When the target's last successful poll finished (unix seconds).",
        False,
        lambda s: _one(s.last_success),
        source=None,
    ),
    MetricSpec(
        "whatsapp_exporter_poll_duration_seconds",
        GaugeMetricFamily,
        "How long the target's last poll took, retries included.",
        False,
        lambda s: _one(s.poll_duration),
        source=None,
    ),
)



def series_labels(dimensions: Sequence[str]) -> tuple[str, ...]:
    """The label names of a per-series family when `dimensions` (API names) are enabled."""
    return TARGET_LABELS + tuple(DIMENSIONS_BY_NAME[d].label for d in dimensions)


def labels_of(spec: MetricSpec, dimensions: Sequence[str]) -> tuple[str, ...]:
    """The label names of a conversation_analytics `spec` when `dimensions` (API names) are
    enabled."""
    return series_labels(dimensions) if spec.per_series else TARGET_LABELS


def is_served(spec: MetricSpec, layout: Layout) -> bool:
    """Whether `spec` is on /metrics under `layout` (its source is enabled)."""
    return spec.source is None or layout.enabled(spec.source)


def family_labels(spec: MetricSpec, layout: Layout) -> tuple[str, ...]:
    """The label names of `spec` under `layout`: the target's, then its source's dimensions."""
    if not spec.per_series or spec.source is None:
        return TARGET_LABELS
    return TARGET_LABELS + layout.labels(spec.source)


def layout_labels(layout: Layout) -> tuple[str, ...]:
    """Every label name a data family uses under `layout`, each once."""
    names = dict.fromkeys(TARGET_LABELS)
    for source in SOURCES:
        if layout.enabled(source.name):
            names.update(dict.fromkeys(layout.labels(source.name)))
    return tuple(names)


@dataclass(frozen=True, slots=True)
class SelfMetricSpec:
    """One of the exporter's own metrics (instrumented directly, not read from a snapshot)."""

    name: str
    kind: Literal["counter", "gauge"]
    documentation: str
    labels: tuple[str, ...] = ()


API_REQUESTS = SelfMetricSpec(
    "whatsapp_exporter_api_requests",
    "counter",
    'Requests sent to the Splashify API, by HTTP status (code="error": no response).',
    ("waba_name", "code"),
)
POLL_ERRORS = SelfMetricSpec(
    "whatsapp_exporter_poll_errors",
    "counter",
    "Failed polls, by reason (" + ", ".join(ERROR_REASONS) + ").",
    ("waba_name", "reason"),
)
BUILD_INFO = SelfMetricSpec(
    "whatsapp_exporter_build_info",
    "gauge",
    "Always 1; labels say which exporter and Python are running.",
    ("version", "python_version"),
)
TARGETS = SelfMetricSpec(
    "whatsapp_exporter_targets",
    "gauge",
    "Targets (WABAs and partner customers) in the loaded config.",
)
RELOAD_SUCCESSFUL = SelfMetricSpec(
    "whatsapp_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last config reload succeeded (or none was asked for yet), else 0.",
)
RELOAD_SUCCESS_TIME = SelfMetricSpec(
    "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the config was last loaded successfully (start-up included).",
)
RENDERS = SelfMetricSpec(
    "whatsapp_exporter_renders",
    "counter",
    "Times /metrics was rendered anew (once per poll or burst of polls, not per scrape).",
)
LAST_RENDER_DURATION = SelfMetricSpec(
    "whatsapp_exporter_last_render_duration_seconds",
    "gauge",
    "How long the last render of /metrics took.",
)
API_USAGE = SelfMetricSpec(
    "whatsapp_exporter_api_usage_percent",
    "gauge",
    "Share of the upstream's rate budget spent, in percent (throttled at 100), as the last "
    'answer\'s usage headers said: type="app" (X-App-Usage) or "business_use_case" '
    "(X-Business-Use-Case-Usage, the highest of its entries); measure call_count, total_cputime "
    "or total_time.",
    ("waba_name", "type", "measure"),
)
API_REGAIN_ACCESS = SelfMetricSpec(
    "whatsapp_exporter_api_regain_access_seconds",
    "gauge",
    "Seconds until the upstream lets a throttled target back in, counting down from the "
    "estimated_time_to_regain_access of the last answer's usage headers (0: not throttled).",
    ("waba_name",),
)
PERSISTENCE_LAST_SAVE_SUCCESS = SelfMetricSpec(
    "whatsapp_exporter_persistence_last_save_success",
    "gauge",
    "1 if the last save of the counter state to --persistence.file succeeded, else 0.",
)
PERSISTENCE_LAST_SAVE_TIME = SelfMetricSpec(
    "whatsapp_exporter_persistence_last_save_success_timestamp_seconds",
    "gauge",
    "When the counter state was last saved to --persistence.file (or read at start).",
)
PERSISTENCE_SAVE_FAILURES = SelfMetricSpec(
    "whatsapp_exporter_persistence_save_failures",
    "counter",
    "Saves of the counter state to --persistence.file that failed (disk full, read-only, ...).",
)
PERSISTENCE_RESTORED = SelfMetricSpec(
    "whatsapp_exporter_persistence_restored_targets",
    "gauge",
    "Targets whose counters went on from the state saved in --persistence.file at start.",
)
PERSISTENCE_METRICS: tuple[SelfMetricSpec, ...] = (
    PERSISTENCE_LAST_SAVE_SUCCESS,
    PERSISTENCE_LAST_SAVE_TIME,
    PERSISTENCE_SAVE_FAILURES,
    PERSISTENCE_RESTORED,
)
"""Served only when --persistence.file is given."""
SELF_METRICS: tuple[SelfMetricSpec, ...] = (
    API_REQUESTS,
    API_USAGE,
    API_REGAIN_ACCESS,
    POLL_ERRORS,
    BUILD_INFO,
    TARGETS,
    RELOAD_SUCCESSFUL,
    RELOAD_SUCCESS_TIME,
    RENDERS,
    LAST_RENDER_DURATION,
    *PERSISTENCE_METRICS,
)

DATA_METRICS: tuple[MetricSpec, ...] = tuple(spec for spec in METRICS if spec.data)
"""The families that carry the upstream's data (what backfill writes); the rest describe the
running process."""
