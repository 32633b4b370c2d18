"""`/api/v1/targets`: the status page's facts as JSON, shaped like Prometheus's targets API.

Prometheus answers `{"status": "success", "data": {"activeTargets": [...]}}` with, per target,
`labels`, `health` ("up", "down" or "unknown": how the last scrape went), `lastError` ("" when
the last scrape succeeded), `lastScrape` (when it began, RFC 3339) and `lastScrapeDuration`
(seconds). This
document keeps that envelope and those meanings, with polls in place of scrapes
(`lastPoll`, `lastPollDuration`), and adds what only this exporter knows: the state of the
status page, the reported bucket, the next poll and a rate-limit pause. `data.exporter` holds
the version, the uptime and the effective config (never the key). Times are RFC 3339 in UTC
(`null` when there is none), durations are seconds. A pure function of a `StatusView`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from exporter.serve.statuspage import (
    NEVER_POLLED,
    StatusView,
    TargetRow,
    optional_sections,
    route,
    safe_base_url,
    series_served,
    target_state,
)


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _health(row: TargetRow, state: str) -> str:
    if state == NEVER_POLLED or row.status.last_poll_ok is None:
        return "unknown"
    return "up" if row.status.last_poll_ok else "down"


def _target(row: TargetRow, view: StatusView) -> dict[str, object]:
    config, now, status, snapshot = view.config, view.now, row.status, row.snapshot
    state = target_state(row, now, config.poll.stale_after)
    waba_id = row.target.waba_id or (snapshot.waba_id if snapshot is not None else "") or ""
    failed_last = status.last_poll_ok is False
    bucket = snapshot.bucket_start if snapshot is not None else None
    paused = status.paused_until if status.paused_until and status.paused_until > now else None
    return {
        "labels": {"waba_id": waba_id, "waba_name": row.target.name},
        "name": row.target.name,
        "wabaId": row.target.waba_id,
        "customerId": row.target.customer_id,
        "route": route(config, row.target),
        "state": state,
        "health": _health(row, state),
        "lastPoll": rfc3339(status.last_poll_start),
        "lastPollEnd": rfc3339(status.last_poll_end),
        "lastPollDuration": status.last_poll_duration,
        "lastPollAttempts": status.last_poll_attempts,
        "lastError": (status.last_error or "") if failed_last else "",
        "lastErrorReason": (status.last_error_reason or "") if failed_last else "",
        "failingSince": rfc3339(status.failing_since),
        "consecutiveFailures": status.consecutive_failures,
        "lastFailure": None
        if status.last_error_reason is None
        else {
            "reason": status.last_error_reason,
            "error": status.last_error or "",
            "time": rfc3339(status.last_error_time),
        },
        "lastSuccess": rfc3339(snapshot.last_success if snapshot is not None else None),
        "series": series_served(row, now, config.poll.stale_after),
        "bucketStart": rfc3339(bucket),
        "bucketAgeSeconds": None if bucket is None else now - bucket,
        "nextPoll": rfc3339(row.next_poll),
        "pausedUntil": rfc3339(paused),
        "pollInterval": config.poll.interval,
        "pollTimeout": config.splashify.timeout,
    }


def _config(view: StatusView) -> dict[str, object]:
    config = view.config
    splashify, poll = config.splashify, config.poll
    document: dict[str, object] = {
        "base_url": safe_base_url(splashify.base_url),
        "api_version": splashify.api_version,
        "timeout": splashify.timeout,
        "max_retries": splashify.max_retries,
        "max_concurrency": splashify.max_concurrency,
        "requests_per_second": splashify.requests_per_second,
        "interval": poll.interval,
        "lookback": poll.lookback,
        "delay": poll.delay,
        "stale_after": poll.stale_after,
        "dimensions": list(config.dimensions),
        "filters": {
            f.name: list(getattr(config.filters, f.name))
            for f in dataclasses.fields(config.filters)
        },
        "shard": {"index": config.shard.index, "total": config.shard.total},
    }
    document.update(optional_sections(config))
    return document


def targets_document(view: StatusView) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "activeTargets": [_target(row, view) for row in view.targets],
            "exporter": {
                "version": view.version,
                "startTime": rfc3339(view.started),
                "uptimeSeconds": view.now - view.started,
                "time": rfc3339(view.now),
                "config": _config(view),
            },
        },
    }


def render_targets_json(view: StatusView) -> bytes:
    # default=str: a config value of a type JSON lacks (a future config block) still renders.
    return json.dumps(targets_document(view), default=str, allow_nan=False).encode()
