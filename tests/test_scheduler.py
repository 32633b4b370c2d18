"""The real APScheduler with stand-in pollers: timing of runs, overlap, and stop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from exporter.config import Target
from exporter.pipeline.scheduler import (
    SpreadTrigger,
    next_fire,
    phase_fraction,
    spread_trigger,
    start_scheduler,
)


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


def test_phase_fraction_is_stable_and_spreads_names() -> None:
    # Fixed values: a change of hash would move every target's poll time.
    assert phase_fraction("acme-india") == phase_fraction("acme-india")
    assert 0 <= phase_fraction("") < 1
    fractions = sorted(phase_fraction(f"target-{i}") for i in range(1000))
    # Uniform enough: every tenth of the interval gets between 5% and 15% of the targets.
    for tenth in range(10):
        share = sum(tenth / 10 <= f < (tenth + 1) / 10 for f in fractions) / 1000
        assert 0.05 < share < 0.15, (tenth, share)


@pytest.mark.parametrize(
    ("after", "inclusive", "expected"),
    [
        (1000.0, True, 1210.0),  # offset 10 past each multiple of 300: ..., 910, 1210, 1510
        (1210.0, True, 1210.0),
        (1210.0, False, 1510.0),
        (1210.5, True, 1510.0),
        (909.0, True, 910.0),
        (5.0, True, 10.0),
        (-400.0, True, -290.0),
    ],
)
def test_next_fire(after: float, inclusive: bool, expected: float) -> None:
    assert next_fire(after, 300.0, 10.0, inclusive=inclusive) == expected


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def test_the_trigger_keeps_each_target_on_its_phase() -> None:
    trigger = SpreadTrigger(300.0, 10.0)
    start = 1_700_000_123.0  # 1_700_000_110 is on phase (a multiple of 300, plus 10)
    first = trigger.get_next_fire_time(None, at(start))
    assert first == at(1_700_000_410.0)
    # On phase, the next run is one interval later.
    assert trigger.get_next_fire_time(first, first) == at(1_700_000_710.0)


def test_after_a_first_run_off_phase_the_next_is_half_to_one_and_a_half_intervals_later() -> None:
    trigger = SpreadTrigger(300.0, 10.0)
    for first_run in (1_700_000_000.0, 1_700_000_009.0, 1_700_000_200.0, 1_700_000_305.0):
        second = trigger.get_next_fire_time(at(first_run), at(first_run)).timestamp()
        assert 150 <= second - first_run < 450
        assert (second - 10.0) % 300 == 0


def test_later_rounds_are_spread_over_the_interval() -> None:
    names = [f"waba-{i}" for i in range(200)]
    interval = 300.0
    start = at(1_700_000_000.0)
    starts = []
    for name in names:
        trigger = spread_trigger(name, interval)
        first = trigger.get_next_fire_time(start, start)  # the round after the first
        starts.append(trigger.get_next_fire_time(first, first).timestamp())
    # No herd: no 10-second slot of the interval holds more than 15 of the 200 targets (6.7 on
    # average; a herd at :00 would put all of them in one).
    slots = [sum(int(t % interval) // 10 == slot for t in starts) for slot in range(30)]
    assert max(slots) <= 15, slots
    assert sum(1 for n in slots if n) >= 25, slots  # and it covers the interval
