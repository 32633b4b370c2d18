"""The schedule: one APScheduler job per target, every `poll.interval`.

The first round starts at once (so /ready turns 200 as soon as every target was tried). Later
rounds are spread over the interval: each target keeps a fixed phase, from a stable hash of its
name, so 200 targets polled every 5 minutes start about 1.5 s apart instead of all at :00 and
:05 (no thundering herd on the upstream, on the rate limiter, or on the render). A job never
overlaps itself (`max_instances=1`: a slow poll makes the next one wait, not pile up), and runs
missed while the process was busy are coalesced into one.

Two things APScheduler does not do by itself: resize its worker pool (a reload that changes
`splashify.max_concurrency` swaps in a pool of the new size, `PollScheduler.resize`), and follow
the wall clock when it steps back (its run times are wall-clock times, so an NTP step of an hour
back would pause every poll for an hour; `PollScheduler.reschedule_from_now` is called then).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from exporter.pipeline.poller import TargetPoller

log = logging.getLogger(__name__)

# APScheduler logs every run at INFO; a poll's outcome is logged by the poller instead.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def phase_fraction(name: str) -> float:
    """Where in the interval a target's polls fall, in [0, 1): stable across restarts and
    replicas (not Python's salted hash()), and uniform over many names."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_fire(after: float, interval: float, offset: float, *, inclusive: bool) -> float:
    """The first time `offset + k * interval` (unix seconds, k whole) at or after `after`
    (strictly after when not `inclusive`)."""
    k = math.ceil((after - offset) / interval)
    fire = offset + k * interval
    if fire < after or (fire == after and not inclusive):
        fire += interval
    return fire


class SpreadTrigger(BaseTrigger):
    """Every `interval` seconds, at `offset` seconds past each multiple of the interval since
    the epoch. APScheduler's IntervalTrigger counts from the previous run instead, so after a
    first round started at once every target would keep that same phase."""

    def __init__(self, interval: float, offset: float) -> None:
        self.interval = interval
        self.offset = offset

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            seconds = next_fire(_seconds(now), self.interval, self.offset, inclusive=True)
        else:
            # At least half an interval after the previous run: on phase that is exactly one
            # interval; after the first round (started at once, off phase) the second run comes
            # between 0.5 and 1.5 intervals later, never right on its heels.
            seconds = next_fire(
                _seconds(previous_fire_time) + self.interval / 2,
                self.interval,
                self.offset,
                inclusive=True,
            )
        return _EPOCH + timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"SpreadTrigger(interval={self.interval}, offset={self.offset:.3f})"


def _seconds(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


def spread_trigger(name: str, interval: float) -> SpreadTrigger:
    return SpreadTrigger(interval, phase_fraction(name) * interval)


def _poll_unless_stopping(
    poller: TargetPoller, stopping: threading.Event, busy: threading.Lock | None = None
) -> None:
    # Jobs already queued in the worker pool still run after shutdown(wait=False); they must
    # not start a request then.
    if stopping.is_set():
        return
    if busy is None:
        poller.poll()
        return
    # max_instances counts per worker pool: after a resize, the old pool may still be running
    # this target's poll when the new one starts the next. That one is skipped.
    if not busy.acquire(blocking=False):
        log.debug("poll of target %s skipped: the previous one still runs", poller.target.name)
        return
    try:
        poller.poll()
    finally:
        busy.release()


class PollScheduler(BackgroundScheduler):
    """APScheduler's background scheduler, with a worker pool that can be resized."""

    def __init__(self, workers: int, interval: float) -> None:
        self.workers = workers
        self.executor_alias = "default"
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._aliases = itertools.count(1)
        super().__init__(
            executors={self.executor_alias: self._pool},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(interval)),
            },
            timezone=timezone.utc,
        )

    def resize(self, workers: int) -> None:
        """Poll with `workers` threads from now on; polls running in the old pool finish there.

        Every job moves to the new pool before the old one is removed, and the move goes
        through `modify_job`, which waits for the scheduler's lock: the scheduler never looks
        up an executor that is gone.
        """
        if workers == self.workers:
            return
        old_alias, old_pool = self.executor_alias, self._pool
        alias = f"workers-{next(self._aliases)}"
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self.add_executor(self._pool, alias)
        self.executor_alias, self.workers = alias, workers
        for job in self.get_jobs():
            job.modify(executor=alias)
        self.remove_executor(old_alias, shutdown=False)
        old_pool.shutdown(wait=False)
        log.info("polling with %d worker(s) from now on", workers)

    def reschedule_from_now(self) -> None:
        """Give every job its next run after the current wall-clock time (after the clock
        stepped back: the run times it had are then as far ahead as the step)."""
        for job in self.get_jobs():
            job.reschedule(job.trigger)


def start_scheduler(
    pollers: Sequence[TargetPoller], interval: float, workers: int, stopping: threading.Event
) -> PollScheduler:
    scheduler = PollScheduler(workers, interval)
    sync_jobs(scheduler, pollers, interval, stopping)
    scheduler.start()
    return scheduler


def sync_jobs(
    scheduler: BackgroundScheduler,
    pollers: Sequence[TargetPoller],
    interval: float,
    stopping: threading.Event,
    poll_now: Collection[str] = (),
) -> None:
    """One job per poller (id: the target name); at start-up, and again after a reload.

    A new target is polled at once, and so is every target named in `poll_now` (e.g. one
    whose data a reload dropped); any other target whose poller carried over keeps its schedule
    (rescheduled only if the interval changed); a removed target's job goes.
    """
    wanted = {poller.target.name: poller for poller in pollers}
    for job in scheduler.get_jobs():
        if job.id not in wanted or job.args[0] is not wanted[job.id]:
            job.remove()
    for name, poller in wanted.items():
        job = scheduler.get_job(name)
        trigger = spread_trigger(name, interval)
        if job is None:
            scheduler.add_job(
                _poll_unless_stopping,
                trigger,
                args=(poller, stopping, threading.Lock()),
                id=name,
                name=f"poll {name}",
                executor=getattr(scheduler, "executor_alias", "default"),
                next_run_time=datetime.now(timezone.utc),
            )
        elif job.trigger.interval != interval:
            # The next run is the next phase point of the new interval, however soon after the
            # last run: the half-interval gap applies between runs of one interval only.
            job.reschedule(trigger)
        if job is not None and name in poll_now:
            job.modify(next_run_time=datetime.now(timezone.utc))
