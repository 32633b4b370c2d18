"""Immutable per-target results, and the store that swaps them in atomically.

A poll builds a new `TargetSnapshot` and hands it to `SnapshotStore.put()`; a scrape takes
`SnapshotStore.current()` once and reads only that, so it never sees half a poll.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.buckets import LabelValues


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


class SnapshotStore:
    """target name -> latest snapshot; readers get an immutable view that never changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: Mapping[str, TargetSnapshot] = MappingProxyType({})

    def put(self, snapshot: TargetSnapshot) -> None:
        with self._lock:
            updated = dict(self._snapshots)
            updated[snapshot.target_name] = snapshot
            self._snapshots = MappingProxyType(updated)

    def get(self, target_name: str) -> TargetSnapshot | None:
        return self._snapshots.get(target_name)

    def current(self) -> Mapping[str, TargetSnapshot]:
        """A consistent view of every target (copy-on-write: safe to read without a lock)."""
        return self._snapshots
