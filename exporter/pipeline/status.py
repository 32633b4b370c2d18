"""What each target's poller is doing, as immutable values the serving side reads without locks.

A poller publishes a new `TargetStatus` after every poll that counted (one that a reload
voided, or that a shutdown cancelled, publishes nothing); the status page and the targets API
read `TargetPoller.status` whenever they like. The schedule's next run comes from the scheduler
(`scheduled_runs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from apscheduler.schedulers.base import BaseScheduler


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target's polling, as of its last poll. Times are unix seconds (wall clock)."""

    last_poll_start: float | None = None
    """None until a poll ended."""
    last_poll_end: float | None = None
    last_poll_duration: float | None = None
    """Seconds, retries and back-offs included."""
    last_poll_attempts: int = 0
    """Requests the last poll sent (1 + its retries; 0 if it failed before sending one)."""
    last_poll_ok: bool | None = None
    last_error_reason: str | None = None
    """The reason of the latest failed poll (kept after a recovery, as history)."""
    last_error: str | None = None
    """Its message, as the upstream's answer or the client put it."""
    last_error_time: float | None = None
    """When that failed poll ended."""
    failing_since: float | None = None
    """Start of the first poll of the current run of failures; None while the target is ok."""
    consecutive_failures: int = 0
    paused_until: float | None = None
    """Until when the upstream asked us not to call (a rate limit's Retry-After or usage
    headers); polls before then are skipped."""


@dataclass(slots=True)
class PollTrace:
    """Counts one poll's requests (handed to the client as its `on_attempt`)."""

    attempts: int = 0

    def attempt(self) -> None:
        self.attempts += 1


def after_poll(
    previous: TargetStatus,
    *,
    start: float,
    end: float,
    duration: float,
    attempts: int,
    error: tuple[str, str] | None = None,
    paused_until: float | None = None,
) -> TargetStatus:
    """The status after a poll that ran from `start` to `end` (wall clock); `error` is
    (reason, message) for a failed poll; `paused_until` a pause that poll asked for."""
    polled = replace(
        previous,
        last_poll_start=start,
        last_poll_end=end,
        last_poll_duration=duration,
        last_poll_attempts=attempts,
        last_poll_ok=error is None,
        paused_until=paused_until if paused_until is not None else previous.paused_until,
    )
    if error is None:
        return replace(polled, failing_since=None, consecutive_failures=0)
    reason, message = error
    return replace(
        polled,
        last_error_reason=reason,
        last_error=message,
        last_error_time=end,
        failing_since=previous.failing_since if previous.failing_since is not None else start,
        consecutive_failures=previous.consecutive_failures + 1,
    )


def scheduled_runs(scheduler: BaseScheduler | None) -> Mapping[str, float]:
    """Target name -> when its next poll is due (unix seconds), as the scheduler has it.

    Empty without a scheduler (`--once`); a job without a next run (paused) is left out.
    """
    if scheduler is None:
        return {}
    runs: dict[str, float] = {}
    for job in scheduler.get_jobs():
        when: datetime | None = getattr(job, "next_run_time", None)
        if when is not None:
            runs[job.id] = when.astimezone(timezone.utc).timestamp()
    return runs
