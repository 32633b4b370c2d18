"""The schedule: one APScheduler job per target, every `poll.interval`.

The first round starts at once (so /ready turns 200 as soon as every target was tried), a job
never overlaps itself (`max_instances=1`: a slow poll makes the next one wait, not pile up), and
runs missed while the process was busy are coalesced into one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.poller import TargetPoller

# APScheduler logs every run at INFO; a poll's outcome is logged by the poller instead.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _poll_unless_stopping(poller: TargetPoller, stopping: threading.Event) -> None:
    # Jobs already queued in the worker pool still run after shutdown(wait=False); they must
    # not start a request then.
    if not stopping.is_set():
        poller.poll()


def start_scheduler(
    pollers: Sequence[TargetPoller], interval: float, workers: int, stopping: threading.Event
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=workers)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": max(1, int(interval)),
        },
        timezone=timezone.utc,
    )
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
    trigger = IntervalTrigger(seconds=interval, timezone=timezone.utc)
    for name, poller in wanted.items():
        job = scheduler.get_job(name)
        if job is None:
            scheduler.add_job(
                _poll_unless_stopping,
                trigger,
                args=(poller, stopping),
                id=name,
                name=f"poll {name}",
                next_run_time=datetime.now(timezone.utc),
            )
        elif job.trigger.interval.total_seconds() != interval:
            job.reschedule(trigger)
        if job is not None and name in poll_now:
            job.modify(next_run_time=datetime.now(timezone.utc))
