"""Immutable per-target results, and the store that swaps them in atomically.

A poll builds a new `TargetSnapshot` and hands it to `SnapshotStore.put()`; a scrape takes
`SnapshotStore.current()` once and reads only that view, so it never sees half a poll, nor
snapshots whose label sets do not match the dimensions it labels them with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.pipeline.buckets import LabelValues
from exporter.vocabulary import Layout


@dataclass(frozen=True, slots=True)
class SourceResult:
    """What one poll made of one source beside conversation_analytics (pricing, messages)."""

    bucket_start: int
    """Start of the bucket the gauges report (the same rule, and so the same bucket, as
    conversations)."""
    gauges: Mapping[str, Mapping[LabelValues, float]]
    """Per value key (`volume`, `sent`, ... and `cost` when the answer carried it): the
    reported bucket, zero-filled over the label sets of the lookback window."""
    totals: Mapping[str, Mapping[LabelValues, int]]
    """Per counted value key: the observed counter."""


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """Everything /metrics shows for one target, as of its last poll."""

    target_name: str
    waba_id: str
    """Configured for a WABA target; for a customer target, the id the upstream answered with
    ("" until it first answered)."""
    poll_success: bool
    poll_duration: float
    last_success: float | None = None
    """Wall-clock time the last successful poll finished."""
    bucket_start: int | None = None
    """Start of the bucket `conversations` (and every other source) reports; None until a poll
    succeeded."""
    conversations: Mapping[LabelValues, int] = field(default_factory=dict)
    observed: Mapping[LabelValues, int] = field(default_factory=dict)
    dimensions: tuple[str, ...] = ()
    """The configured dimensions the label values of `conversations` follow."""
    sources: Mapping[str, SourceResult] = field(default_factory=dict)
    """The results of every enabled source but conversation_analytics (whose results are the
    fields above, as before sources existed), by source name; empty until a poll succeeded."""
    layout: Layout | None = None
    """The sources and dimensions the poll ran with; None: conversation_analytics alone, with
    `dimensions`."""

    @property
    def series_layout(self) -> Layout:
        return self.layout if self.layout is not None else Layout.conversations(self.dimensions)


@dataclass(frozen=True, slots=True)
class StoreView:
    """What one scrape reads: the label dimensions and every target's snapshot, together."""

    dimensions: tuple[str, ...]
    snapshots: Mapping[str, TargetSnapshot]
    layout: Layout | None = None
    """The enabled sources with their dimensions; None: conversation_analytics alone."""

    @property
    def series_layout(self) -> Layout:
        return self.layout if self.layout is not None else Layout.conversations(self.dimensions)


class SnapshotStore:
    """target name -> latest snapshot, copy-on-write; readers get a view that never changes."""

    def __init__(self, dimensions: tuple[str, ...], layout: Layout | None = None) -> None:
        self._lock = threading.Lock()
        self._view = StoreView(dimensions, MappingProxyType({}), layout)
        self.on_change: Callable[[], None] = lambda: None
        """Called after every swap, outside the lock (the render cache listens here)."""

    def put(self, snapshot: TargetSnapshot, accept: Callable[[], bool] = lambda: True) -> bool:
        """Swap `snapshot` in, unless `accept()` (asked under the lock) says its poll is void.

        Asking under the lock makes the check and the write one step against `retain()`: a
        poll that a reload retired cannot slip its snapshot in after the reload.
        """
        with self._lock:
            view = self._view
            if (
                snapshot.dimensions != view.dimensions
                or snapshot.series_layout != view.series_layout
                or not accept()
            ):
                # Made by a poll that a reload overtook: its label sets may not fit any more.
                return False
            updated = dict(view.snapshots)
            updated[snapshot.target_name] = snapshot
            self._view = StoreView(view.dimensions, MappingProxyType(updated), view.layout)
        self.on_change()
        return True

    def retain(
        self, target_names: Iterable[str], dimensions: tuple[str, ...], layout: Layout | None = None
    ) -> None:
        """After a reload: keep only these targets' snapshots, under these dimensions (and
        sources)."""
        keep = set(target_names)
        with self._lock:
            kept = {n: s for n, s in self._view.snapshots.items() if n in keep}
            self._view = StoreView(dimensions, MappingProxyType(kept), layout)
        self.on_change()

    def get(self, target_name: str) -> TargetSnapshot | None:
        return self._view.snapshots.get(target_name)

    def current(self) -> StoreView:
        """A consistent view of every target, safe to read without a lock."""
        return self._view
