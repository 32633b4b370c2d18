"""Client-side limits shared by every target: requests in flight and requests per second.

One `RequestLimiter` is shared by all pollers, so 200 targets never burst past
`splashify.max_concurrency` requests at once or `splashify.requests_per_second`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TokenBucket:
    """Hands out one token per 1/rate seconds; a caller that finds none waits its turn.

    Capacity is one token: requests are spaced evenly instead of leaving in a burst, so that no
    one-second window ever holds more than `rate` (+1 at its edge) requests.
    Each caller reserves the next free slot under the lock and sleeps outside it, so waiting
    callers are served in arrival order and nobody spins.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait for it (0 if free now)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_free)
            self._next_free = slot + self._interval
            return slot - now

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


class RequestLimiter:
    """Both limits at once: a slot among `max_concurrency`, then a token."""

    def __init__(
        self,
        max_concurrency: int,
        requests_per_second: float,
        stop: threading.Event | None = None,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrency)
        # Waiting on the stop event lets a shutdown end the wait for a token at once.
        self._bucket = TokenBucket(requests_per_second, sleep=stop.wait if stop else time.sleep)

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._slots:
            self._bucket.acquire()
            yield
