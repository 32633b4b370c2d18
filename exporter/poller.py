"""One target's poll: ask the client, parse, apply the bucket logic, swap in a snapshot.

A `TargetPoller` is run by the scheduler, never twice at once for the same target
(`max_instances=1`), so its own state (the observed counter, the customer's WABA id) needs no
lock. A failure keeps the last good data: only `poll_success` and the duration change.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from exporter.buckets import ObservedState, evaluate
from exporter.client import Cancelled, SplashifyClient
from exporter.config import Config, Target
from exporter.errors import (
    INTERNAL_REASON,
    AuthError,
    PermissionDenied,
    RateLimited,
    UpstreamError,
)
from exporter.parse import parse_answer
from exporter.query import AnalyticsQuery, query_window
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import SnapshotStore, TargetSnapshot

log = logging.getLogger(__name__)

POLL_BUDGET_SHARE = 0.8
"""A poll, retries included, may take this share of the interval, so it never runs into the next."""


def build_query(config: Config, target: Target, start: int, end: int) -> AnalyticsQuery:
    return AnalyticsQuery(
        start=start,
        end=end,
        phone_numbers=target.phone_numbers,
        conversation_categories=config.filters.conversation_categories,
        conversation_types=config.filters.conversation_types,
        conversation_directions=config.filters.conversation_directions,
        dimensions=config.dimensions,
    )


class TargetPoller:
    def __init__(
        self,
        target: Target,
        config: Config,
        client: SplashifyClient,
        store: SnapshotStore,
        metrics: SelfMetrics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._config = config
        self._client = client
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._observed = ObservedState()
        self._waba_id = target.waba_id or ""
        self._last_error_reason: str | None = None
        self._paused_until = 0.0

    def reconfigure(self, config: Config, client: SplashifyClient) -> None:
        """Take a reloaded config for the same target, keeping what was counted.

        The counter's memory is keyed by label values: if the dimensions or filters changed,
        it no longer describes the same series and starts afresh.
        """
        old = self._config
        if (old.dimensions, old.filters) != (config.dimensions, config.filters):
            self._observed = ObservedState()
        self._config = config
        self._client = client

    def poll(self) -> bool:
        """Poll once; True on success. Never raises: a failure is recorded, not propagated."""
        now = self._clock()
        started = self._monotonic()
        if started < self._paused_until:
            # The upstream said when it lets us back in; asking earlier only extends the ban.
            log.debug(
                "target %s paused for %.0fs more (rate limited)",
                self.target.name,
                self._paused_until - started,
            )
            return False
        window_start, window_end = query_window(now, self._config.poll.lookback)
        query = build_query(self._config, self.target, window_start, window_end)
        deadline = started + self._config.poll.interval * POLL_BUDGET_SHARE
        try:
            body = self._client.fetch(self.target, query, deadline)
            answer = parse_answer(body, self._config.dimensions)
            evaluation = evaluate(
                answer.points,
                now=now,
                delay=self._config.poll.delay,
                window_start=window_start,
                previous=self._observed,
            )
        except Cancelled:
            return False
        except UpstreamError as error:
            self._record_failure(error.reason, str(error), started, loud=_is_loud(error))
            if isinstance(error, RateLimited) and error.retry_after:
                self._paused_until = started + error.retry_after
                log.warning(
                    "target %s paused for %.0fs: the upstream asked us to wait",
                    self.target.name,
                    error.retry_after,
                )
            return False
        except Exception as error:  # a bug of ours must not stop this target's schedule
            log.exception("poll of target %s failed unexpectedly", self.target.name)
            self._record_failure(INTERNAL_REASON, repr(error), started, loud=False)
            return False

        self._observed = evaluation.observed
        if self.target.customer_id is not None and answer.waba_id:
            self._waba_id = answer.waba_id
        if self._last_error_reason is not None:
            log.info(
                "target %s recovered (was failing: %s)", self.target.name, self._last_error_reason
            )
            self._last_error_reason = None
        self._store.put(
            TargetSnapshot(
                target_name=self.target.name,
                waba_id=self._waba_id,
                poll_success=True,
                poll_duration=self._monotonic() - started,
                last_success=self._clock(),
                bucket_start=evaluation.bucket_start,
                conversations=evaluation.conversations,
                observed=evaluation.observed.totals,
                dimensions=self._config.dimensions,
            )
        )
        log.debug(
            "polled %s: %d points, bucket %d",
            self.target.name,
            len(answer.points),
            evaluation.bucket_start,
        )
        return True

    def _record_failure(self, reason: str, message: str, started: float, *, loud: bool) -> None:
        self._metrics.count_error(self.target.name, reason)
        # Log once per change of reason; repeats are visible in poll_errors_total.
        if reason != self._last_error_reason:
            level = logging.ERROR if loud else logging.WARNING
            log.log(level, "poll of target %s failed (%s): %s", self.target.name, reason, message)
        else:
            log.debug("poll of target %s failed again (%s): %s", self.target.name, reason, message)
        self._last_error_reason = reason
        duration = self._monotonic() - started
        previous = self._store.get(self.target.name)
        if previous is None:
            failed = TargetSnapshot(
                self.target.name,
                self._waba_id,
                False,
                duration,
                dimensions=self._config.dimensions,
            )
        else:
            failed = dataclasses.replace(previous, poll_success=False, poll_duration=duration)
        self._store.put(failed)


def _is_loud(error: UpstreamError) -> bool:
    """Auth and permission failures need a human: they never heal by waiting."""
    return isinstance(error, AuthError | PermissionDenied)
