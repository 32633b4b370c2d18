"""The real APScheduler with stand-in pollers: timing of runs, overlap, and stop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from exporter.config import Target
from exporter.scheduler import start_scheduler


@dataclass
class SlowPoller:
    target: Target
    duration: float
    starts: list[float] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self) -> bool:
        with self.lock:
            self.starts.append(time.monotonic())
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.duration)
        with self.lock:
            self.running -= 1
        return True


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_first_round_starts_at_once_not_after_one_interval() -> None:
    pollers = [SlowPoller(Target(name=f"t{i}", waba_id=str(i)), duration=0) for i in range(3)]
    stopping = threading.Event()
    scheduler = start_scheduler(pollers, interval=60.0, workers=2, stopping=stopping)
    try:
        # Far less than the 60s interval: these runs are the first round, not the second.
        assert wait_until(lambda: all(p.starts for p in pollers), timeout=20)
    finally:
        stopping.set()
        scheduler.shutdown(wait=True)
    assert [len(p.starts) for p in pollers] == [1, 1, 1]


def test_a_slow_poll_is_never_overlapped_by_its_next_run() -> None:
    poller = SlowPoller(Target(name="t", waba_id="1"), duration=1.2)
    stopping = threading.Event()
    scheduler = start_scheduler([poller], interval=0.3, workers=4, stopping=stopping)
    try:
        assert wait_until(lambda: len(poller.starts) >= 3, timeout=20)
    finally:
        stopping.set()
        scheduler.shutdown(wait=True)
    # Four workers were free, and runs fell due every 0.3s while each poll took 1.2s.
    assert poller.most_at_once == 1


def test_no_poll_starts_once_stopping_is_set() -> None:
    poller = SlowPoller(Target(name="t", waba_id="1"), duration=0.0)
    stopping = threading.Event()
    stopping.set()
    scheduler = start_scheduler([poller], interval=1.0, workers=1, stopping=stopping)
    time.sleep(0.5)
    scheduler.shutdown(wait=True)
    assert poller.starts == []
