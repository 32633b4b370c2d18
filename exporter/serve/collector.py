"""The custom collector: fresh metric families from the current snapshots on every scrape.

This is where the proxied metrics are named. Nothing here calls the upstream, and nothing
keeps label sets between scrapes: a series exists exactly as long as a snapshot holds it.

Sample output (dimensions CONVERSATION_CATEGORY and COUNTRY enabled)::

    # HELP whatsapp_conversations Conversations in the latest complete half-hour bucket ...
    # TYPE whatsapp_conversations gauge
    whatsapp_conversations{waba_id="1153",waba_name="acme",conversation_category="MARKETING",
                           country="IN"} 42.0
    whatsapp_conversations{waba_id="1153",waba_name="acme",conversation_category="SERVICE",
                           country="KW"} 0.0
    # TYPE whatsapp_conversations_bucket_start_timestamp_seconds gauge
    whatsapp_conversations_bucket_start_timestamp_seconds{waba_id="1153",waba_name="acme"} 1.76e+09
    # TYPE whatsapp_conversations_observed_total counter
    whatsapp_conversations_observed_total{waba_id="1153",waba_name="acme",
                                          conversation_category="MARKETING",country="IN"} 1234.0
    # TYPE whatsapp_exporter_poll_success gauge
    whatsapp_exporter_poll_success{waba_id="1153",waba_name="acme"} 1.0

(label sets wrapped here for width; one line each on /metrics)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.pipeline.snapshot import SnapshotStore, StoreView, TargetSnapshot
from exporter.serve.metrics import METRICS, family_labels, is_served

log = logging.getLogger(__name__)


def is_stale(snapshot: TargetSnapshot, now: float, stale_after: float) -> bool:
    """True when the target's data is too old to serve (or it never succeeded)."""
    return snapshot.last_success is None or now - snapshot.last_success > stale_after


def fresh_targets(view: StoreView, now: float, stale_after: float) -> list[str]:
    """The targets whose data may be served, in store order."""
    return [name for name, s in view.snapshots.items() if not is_stale(s, now, stale_after)]


def _text(value: object) -> bool:
    """Whether an exposition can carry `value` as a label value (UTF-8 encodable text)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def exposable(snapshot: TargetSnapshot) -> bool:
    """Whether every label value of `snapshot` is text an exposition can encode.

    The parser lets no other value in; this is the last line, so that the exposition of
    everyone (which prometheus-client encodes in one piece) cannot fail on one target.
    """
    series: list[Iterable[tuple[str, ...]]] = [snapshot.conversations, snapshot.observed]
    for result in snapshot.sources.values():
        series += [*result.gauges.values(), *result.totals.values()]
    return all(map(_text, (snapshot.waba_id, snapshot.target_name))) and all(
        _text(value) for label_sets in series for labels in label_sets for value in labels
    )


class ConversationCollector(Collector):
    """Yields the METRICS table for every target in the store."""

    def __init__(
        self,
        store: SnapshotStore,
        stale_after: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.stale_after = stale_after
        """Replaced on reload; a plain attribute read once per scrape."""
        self._clock = clock
        self._checked: dict[str, tuple[TargetSnapshot, bool]] = {}

    def _exposable(self, snapshot: TargetSnapshot) -> bool:
        """`exposable()`, checked once per snapshot (identity), warned about once."""
        checked = self._checked.get(snapshot.target_name)
        if checked is not None and checked[0] is snapshot:
            return checked[1]
        ok = exposable(snapshot)
        if not ok and (checked is None or checked[1]):
            log.warning(
                "target %s holds a label value that is not text; left out", snapshot.target_name
            )
        self._checked[snapshot.target_name] = (snapshot, ok)
        return ok

    def describe(self) -> Iterator[Metric]:
        # Lets the registry check names at registration and serve `name[]` filters
        # without reading snapshots.
        layout = self._store.current().series_layout
        for spec in METRICS:
            if is_served(spec, layout):
                yield spec.family(
                    spec.name, spec.documentation, labels=family_labels(spec, layout)
                )

    def collect(self) -> Iterator[Metric]:
        view = self._store.current()  # one consistent view for the whole scrape
        fresh = set(fresh_targets(view, self._clock(), self.stale_after))
        layout = view.series_layout
        shown = {name: s for name, s in view.snapshots.items() if self._exposable(s)}
        self._checked = {n: c for n, c in self._checked.items() if n in view.snapshots}
        for spec in METRICS:
            if not is_served(spec, layout):
                continue
            family = spec.family(spec.name, spec.documentation, labels=family_labels(spec, layout))
            for name, snapshot in shown.items():
                if spec.data and name not in fresh:
                    continue
                target = (snapshot.waba_id, snapshot.target_name)
                for labels, value in spec.samples(snapshot):
                    family.add_metric(target + labels, value)
            yield family
