import threading
import time

import pytest

from exporter.upstream.ratelimit import RequestLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_slots_are_spaced_one_interval_apart() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(4)] == [0, 0.25, 0.5, 0.75]


def test_an_idle_bucket_does_not_save_up_a_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, clock=clock, sleep=clock.sleep)
    bucket.reserve()
    clock.now += 60
    assert bucket.reserve() == 0
    assert bucket.reserve() == 0.5


def test_acquire_never_exceeds_the_rate_in_any_window() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(100):
        bucket.acquire()
        times.append(clock.now)
    for i, started in enumerate(times):
        in_one_second = [t for t in times[i:] if t < started + 1.0]
        assert len(in_one_second) <= 10


def test_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_limiter_holds_the_concurrency_ceiling_across_threads() -> None:
    limiter = RequestLimiter(max_concurrency=3, requests_per_second=1000)
    lock = threading.Lock()
    in_flight = peak = 0

    def work() -> None:
        nonlocal in_flight, peak
        with limiter.request():
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.02)
            with lock:
                in_flight -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 3
