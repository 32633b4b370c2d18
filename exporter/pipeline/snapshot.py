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
    """Start of the bucket `conversations` reports; None until a poll succeeded."""
    conversations: Mapping[LabelValues, int] = field(default_factory=dict)
    observed: Mapping[LabelValues, int] = field(default_factory=dict)
    dimensions: tuple[str, ...] = ()
    """The configured dimensions the label values of `conversations` follow."""


@dataclass(frozen=True, slots=True)
class StoreView:
    """What one scrape reads: the label dimensions and every target's snapshot, together."""

    dimensions: tuple[str, ...]
    snapshots: Mapping[str, TargetSnapshot]


class SnapshotStore:
    """target name -> latest snapshot, copy-on-write; readers get a view that never changes."""

    def __init__(self, dimensions: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._view = StoreView(dimensions, MappingProxyType({}))
        self.on_change: Callable[[], None] = lambda: None
        """Called after every swap, outside the lock (the render cache listens here)."""

    def put(self, snapshot: TargetSnapshot, accept: Callable[[], bool] = lambda: True) -> bool:
        """Swap `snapshot` in, unless `accept()` (asked under the lock) says its poll is void.

        Asking under the lock makes the check and the write one step against `retain()`: a
        poll that a reload retired cannot slip its snapshot in after the reload.
        """
        with self._lock:
            if snapshot.dimensions != self._view.dimensions or not accept():
                # Made by a poll that a reload overtook: its label sets may not fit any more.
                return False
            updated = dict(self._view.snapshots)
            updated[snapshot.target_name] = snapshot
            self._view = StoreView(self._view.dimensions, MappingProxyType(updated))
        self.on_change()
        return True

    def retain(self, target_names: Iterable[str], dimensions: tuple[str, ...]) -> None:
        """After a reload: keep only these targets' snapshots, under these dimensions."""
        keep = set(target_names)
        with self._lock:
            kept = {n: s for n, s in self._view.snapshots.items() if n in keep}
            self._view = StoreView(dimensions, MappingProxyType(kept))
        self.on_change()

    def get(self, target_name: str) -> TargetSnapshot | None:
        return self._view.snapshots.get(target_name)

    def current(self) -> StoreView:
        """A consistent view of every target, safe to read without a lock."""
        return self._view
