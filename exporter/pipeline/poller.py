"""One target's poll: ask the client, parse, apply the bucket logic, swap in a snapshot.

A `TargetPoller` is run by the scheduler, never twice at once for the same target
(`max_instances=1`). A reload may reconfigure or retire it while a poll is in flight: that
poll then writes nothing (a small lock guards the hand-over). A failure keeps the last good
data: only `poll_success` and the duration change.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import cast

from exporter.config import Config, Target
from exporter.pipeline.buckets import (
    LabelValues,
    ObservedState,
    fresh_state,
    latest_complete_bucket,
)
from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot
from exporter.pipeline.sources import (
    CounterKey,
    CounterStates,
    build_request,
    counter_keys,
    evaluate_sources,
    series_key,
)
from exporter.pipeline.status import PollTrace, TargetStatus, after_poll
from exporter.upstream.client import Cancelled, SplashifyClient
from exporter.upstream.errors import (
    INTERNAL_REASON,
    AuthError,
    PermissionDenied,
    RateLimited,
    UpstreamError,
)
from exporter.upstream.parse import parse_sources
from exporter.upstream.query import Request, query_window
from exporter.vocabulary import CONVERSATION_ANALYTICS, SOURCES

log = logging.getLogger(__name__)

MAX_PAUSE_SECONDS = 3600.0
"""A rate-limit pause never lasts longer than this, whatever the upstream's headers say."""

POLL_BUDGET_SHARE = 0.8
"""A poll, retries included, may take this share of the interval, so it never runs into the next."""


def same_series(old: Config, new: Config) -> bool:
    """Whether label values keep their meaning from `old` to `new` (dimensions and filters,
    and the same sources, each with the same dimensions and filters)."""
    return (old.dimensions, old.filters) == (new.dimensions, new.filters) and all(
        series_key(old, source.name) == series_key(new, source.name) for source in SOURCES
    )


def build_query(config: Config, target: Target, start: int, end: int) -> Request:
    """One request for every enabled source (sources.build_request)."""
    return build_request(config, target, start, end)


class TargetPoller:
    def __init__(
        self,
        target: Target,
        config: Config,
        client: SplashifyClient,
        store: SnapshotStore,
        count_error: Callable[[str, str], None],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        observed: CounterStates | None = None,
        save: Callable[[Target, Config, CounterStates], bool] | None = None,
    ) -> None:
        self.target = target
        self._config = config
        self._client = client
        self._store = store
        self._count_error = count_error
        """Called with (target name, reason) for every failed poll."""
        self._clock = clock
        self._monotonic = monotonic
        self._observed: dict[CounterKey, ObservedState] = dict(observed or {})
        """The counters' states by (source, value key), some perhaps restored from a saved
        file; a counter without one is fresh, and starts at the first attempt that needs it
        (see `buckets.fresh_state`)."""
        self._save = save
        """Called with (target, config, states) after each successful poll, before its
        snapshot is served, so that what a scraper saw can be restored after a restart."""
        self._waba_id = target.waba_id or ""
        self._last_error_reason: str | None = None
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._generation = 0
        """Bumped when a reload changes what the series mean (dimensions, filters)."""
        self.retired = False
        self.status = TargetStatus()
        """Replaced, never changed, after every poll that counted: read it without a lock."""

    def reconfigure(self, config: Config, client: SplashifyClient) -> None:
        """Take a reloaded config for the same target, keeping what was counted.

        The counter's memory is keyed by label values: the counters of a source whose
        dimensions or filters changed (or that was disabled) no longer describe the same series
        and start afresh; the other sources' carry on. A poll in flight then finishes for
        nothing: its answer was asked for under the old config.
        """
        with self._lock:
            if not same_series(self._config, config):
                old = self._config
                self._observed = {
                    key: state
                    for key, state in self._observed.items()
                    if series_key(old, key[0]) == series_key(config, key[0])
                }
                self._generation += 1
            self._config = config
            self._client = client

    def retire(self) -> None:
        """The target was removed or redefined: a poll still in flight must write nothing."""
        with self._lock:
            self.retired = True

    def _current(self, generation: int) -> bool:
        return not self.retired and generation == self._generation

    def _void(self) -> bool | None:
        """What a poll overtaken by a reload returns: False if retired, None to repeat it."""
        return False if self.retired else None

    def poll(self) -> bool:
        """Poll once; True on success. Never raises: a failure is recorded, not propagated.

        A poll whose config was replaced (new dimensions or filters) while it ran is repeated
        at once with the new one, so that a reload never leaves a target without data.
        """
        while True:
            outcome = self._poll_once()
            if outcome is not None:
                return outcome

    def _poll_once(self) -> bool | None:
        """One attempt; None when a reload superseded it."""
        with self._lock:
            if self.retired:
                return False
            # Everything this poll uses is taken once, so that a reload halfway through cannot
            # mix the old question with the new way of reading the answer.
            config, client, generation = self._config, self._client, self._generation
            previous = dict(self._observed)
        now = self._clock()
        missing = [key for key in counter_keys(config.layout) if key not in previous]
        if missing:
            # Fresh counters: the buckets complete at their first attempt are not theirs to
            # count.
            fresh = fresh_state(latest_complete_bucket(now, config.poll.delay))
            previous.update(dict.fromkeys(missing, fresh))
            with self._lock:
                if self._current(generation):
                    for key in missing:
                        self._observed.setdefault(key, fresh)
        started = self._monotonic()
        if started < self._paused_until:
            # The upstream said when it lets us back in; asking earlier only extends the ban.
            log.debug(
                "target %s paused for %.0fs more (rate limited)",
                self.target.name,
                self._paused_until - started,
            )
            return False
        window_start, window_end = query_window(now, config.poll.lookback)
        query = build_query(config, self.target, window_start, window_end)
        deadline = started + config.poll.interval * POLL_BUDGET_SHARE
        trace = PollTrace()
        try:
            body = client.fetch(self.target, query, deadline, on_attempt=trace.attempt)
            answer = parse_sources(
                body,
                config.layout,
                window=(window_start, window_end),
                waba_id=self.target.waba_id,
                max_series=config.limits.max_series_per_target,
            )
            results, states = evaluate_sources(
                answer.sources,
                config.layout,
                now=now,
                delay=config.poll.delay,
                window_start=window_start,
                previous=previous,
            )
        except Cancelled:
            return False
        except UpstreamError as error:
            if not self._current(generation):
                return self._void()
            self._record_failure(error.reason, str(error), started, config, loud=_is_loud(error))
            paused_until = None
            if isinstance(error, RateLimited) and error.retry_after:
                pause = min(error.retry_after, MAX_PAUSE_SECONDS)
                self._paused_until = started + pause
                paused_until = now + pause
                log.warning(
                    "target %s paused for %.0fs: the upstream asked us to wait",
                    self.target.name,
                    pause,
                )
            self._publish(now, started, trace, (error.reason, str(error)), paused_until)
            return False
        except Exception as error:  # a bug of ours must not stop this target's schedule
            log.exception("poll of target %s failed unexpectedly", self.target.name)
            if self._current(generation):
                self._record_failure(INTERNAL_REASON, repr(error), started, config, loud=False)
                self._publish(now, started, trace, (INTERNAL_REASON, repr(error)))
            return False

        waba_id = self._waba_id
        if self.target.customer_id is not None and answer.waba_id:
            waba_id = answer.waba_id
        # conversation_analytics keeps the snapshot fields it always had; the bucket is the
        # same for every source.
        conversations = results.pop(CONVERSATION_ANALYTICS, None)
        bucket_start = next((r.bucket_start for r in results.values()), None)
        snapshot = TargetSnapshot(
            target_name=self.target.name,
            waba_id=waba_id,
            poll_success=True,
            poll_duration=self._monotonic() - started,
            last_success=self._clock(),
            bucket_start=conversations.bucket_start if conversations else bucket_start,
            conversations=cast(
                "Mapping[LabelValues, int]",
                conversations.gauges["conversation"] if conversations else {},
            ),
            observed=conversations.totals["conversation"] if conversations else {},
            dimensions=config.dimensions,
            sources=MappingProxyType(results),
            layout=config.layout,
        )
        with self._lock:
            if not self._current(generation):
                return self._void()
            self._observed = states
            self._waba_id = waba_id
        if self._save is not None:
            self._save(self.target, config, states)
        if not self._store.put(snapshot, accept=lambda: self._current(generation)):
            return self._void()
        if self._last_error_reason is not None:
            log.info(
                "target %s recovered (was failing: %s)", self.target.name, self._last_error_reason
            )
            self._last_error_reason = None
        log.debug(
            "polled %s: %s, bucket %s",
            self.target.name,
            ", ".join(
                f"{len(next(iter(points.counts.values()), ()))} {name} points"
                for name, points in answer.sources.items()
            ),
            snapshot.bucket_start,
        )
        self._publish(now, started, trace)
        return True

    def _publish(
        self,
        start: float,
        started: float,
        trace: PollTrace,
        error: tuple[str, str] | None = None,
        paused_until: float | None = None,
    ) -> None:
        """A new status for the poll that began at `start` (wall) / `started` (monotonic)."""
        self.status = after_poll(
            self.status,
            start=start,
            end=self._clock(),
            duration=self._monotonic() - started,
            attempts=trace.attempts,
            error=error,
            paused_until=paused_until,
        )

    def _record_failure(
        self, reason: str, message: str, started: float, config: Config, *, loud: bool
    ) -> None:
        self._count_error(self.target.name, reason)
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
                dimensions=config.dimensions,
                layout=config.layout,
            )
        else:
            failed = dataclasses.replace(previous, poll_success=False, poll_duration=duration)
        self._store.put(failed, accept=lambda: not self.retired)


def _is_loud(error: UpstreamError) -> bool:
    """Auth and permission failures need a human: they never heal by waiting."""
    return isinstance(error, AuthError | PermissionDenied)
