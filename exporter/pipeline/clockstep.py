"""Notice when the wall clock steps back (NTP, a VM restored from a snapshot, a manual fix).

The scheduler keeps wall-clock run times. When the clock steps back by an hour, every next run
is an hour further away than it should be, and polling would pause for that long. The watcher
compares the wall clock with the monotonic clock once a second; when the wall clock lost more
than `tolerance` against it, `on_step` is called with the step (negative seconds), and the
exporter reschedules every poll from the new time. Steps forward need nothing: the runs they
skip are due at once, coalesced into one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STEP_TOLERANCE_SECONDS = 2.0
"""Smaller corrections (NTP slewing, a busy machine) are not steps."""


class ClockStepWatcher:
    def __init__(
        self,
        on_step: Callable[[float], object],
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        tolerance: float = STEP_TOLERANCE_SECONDS,
        period: float = 1.0,
    ) -> None:
        self._on_step = on_step
        self._wall = wall
        self._monotonic = monotonic
        self._tolerance = tolerance
        self._period = period
        self._offset = wall() - monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> float | None:
        """Compare the clocks once; the step when the wall clock went back, else None."""
        offset = self._wall() - self._monotonic()
        step = offset - self._offset
        self._offset = offset
        if step < -self._tolerance:
            self._on_step(step)
            return step
        return None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="clock-step", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.check()
            except Exception:  # a bug here must not end the watch
                log.exception("handling a wall-clock step failed")
