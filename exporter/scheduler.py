"""The schedule: one APScheduler job per target, every `poll.interval`.

The first round starts at once (so /ready turns 200 as soon as every target was tried), a job
never overlaps itself (`max_instances=1`: a slow poll makes the next one wait, not pile up), and
runs missed while the process was busy are coalesced into one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.poller import TargetPoller

# APScheduler logs every run at INFO; a poll's outcome is logged by the poller instead.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


def start_scheduler(
    pollers: Sequence[TargetPoller], interval: float, workers: int
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
    first_round = datetime.now(timezone.utc)
    for poller in pollers:
        scheduler.add_job(
            poller.poll,
            IntervalTrigger(seconds=interval, timezone=timezone.utc),
            id=poller.target.name,
            name=f"poll {poller.target.name}",
            next_run_time=first_round,
        )
    scheduler.start()
    return scheduler
