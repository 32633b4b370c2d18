"""The `backfill` subcommand's flags and steps: check the range against the config and the
upstream's limits, read every target's history, write the file (never half of it)."""

from __future__ import annotations

import argparse
import calendar
import contextlib
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from exporter.backfill.history import build_series, fetch_history
from exporter.backfill.openmetrics import write_openmetrics
from exporter.config import Config, parse_duration
from exporter.serve.metrics import layout_labels
from exporter.upstream.client import SplashifyClient
from exporter.upstream.errors import UpstreamError
from exporter.upstream.query import query_window
from exporter.upstream.ratelimit import RequestLimiter
from exporter.vocabulary import HALF_HOUR_SECONDS, HISTORY_SECONDS

log = logging.getLogger("exporter.backfill")

DEFAULT_STEP_SECONDS = 60
MAX_STEP_SECONDS = 300
"""Prometheus looks back 5 minutes for the latest sample of a series (its default
`--query.lookback-delta`): with sparser samples, instant queries would fall into gaps."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RELATIVE = re.compile(r"now(?:\s*-\s*(.+))?")


class UsageError(Exception):
    """A bad flag value: one line, exit 2."""


class FetchFailed(Exception):
    """Reading a target's history failed (after the client's retries): exit 1."""

    def __init__(self, target_name: str, error: UpstreamError) -> None:
        super().__init__(f"target {target_name}: {error.reason}: {error}")
        self.error = error


# -- times and flags -------------------------------------------------------------------------------


def parse_time(text: str, now: float) -> float:
    """`now`, `now-8d` (any duration the config takes), unix seconds, or ISO 8601.

    A date or a date-time without a zone is UTC: `2026-01-05`, `2026-01-05T10:00`,
    `2026-01-05T10:00:00+05:30`.
    """
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        ago = relative.group(1)
        try:
            return now - (parse_duration(ago) if ago else 0.0)
        except ValueError:
            raise UsageError(f"not a time: {text!r} (the part after now- is no duration)") from None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"not a time: {text!r} (use now, now-8d, unix seconds or 2026-01-05T10:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        return float(calendar.timegm(parsed.timetuple()))
    return parsed.timestamp()


def parse_label(text: str, reserved: Sequence[str]) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not _LABEL_NAME.fullmatch(name):
        raise UsageError(f"--label: want NAME=VALUE with a Prometheus label name, got {text!r}")
    if name.startswith("__"):
        raise UsageError(f"--label: {name} is reserved (names starting with __)")
    if name in reserved:
        raise UsageError(f"--label: {name} is one of the exporter's own labels")
    return name, value


def sample_times(start: float, end: float, step: int) -> list[int]:
    """Multiples of `step` in [start, end]: reruns and neighbouring ranges line up."""
    first = math.ceil(start / step) * step
    return list(range(first, math.floor(end) + 1, step))


# -- command line ------------------------------------------------------------------------------


def add_backfill_flags(parser: argparse.ArgumentParser) -> None:
    """The flags only backfill has; the CLI adds those it shares with the exporter."""
    parser.add_argument(
        "--start", required=True, metavar="TIME",
        help="first sample: now-8d, unix seconds, or ISO 8601 such as 2026-01-05T00:00:00Z "
        "(UTC when no zone); at most 365 days back, minus poll.lookback and 30m",
    )
    parser.add_argument(
        "--end", default="now", metavar="TIME",
        help="last sample (default now; never in the future). If Prometheus already scrapes "
        "the exporter, end where that began",
    )
    parser.add_argument(
        "--step", default=f"{DEFAULT_STEP_SECONDS}s", metavar="DURATION",
        help=f"time between samples, whole seconds, at most {MAX_STEP_SECONDS // 60}m "
        f"(default {DEFAULT_STEP_SECONDS}s; use your scrape interval)",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE",
        help="add a label to every series, as Prometheus adds job and instance on a scrape "
        "(repeatable)",
    )
    parser.add_argument(
        "-o", "--output", default="-", metavar="PATH", help="output file (default - : stdout)"
    )


@dataclass(frozen=True, slots=True)
class Plan:
    start: float
    end: float
    step: int
    labels: tuple[tuple[str, str], ...]
    times: tuple[int, ...]


def plan(args: argparse.Namespace, config: Config, now: float) -> Plan:
    """Check the flags against the config and the upstream's limits; raises UsageError."""
    start = parse_time(args.start, now)
    end = parse_time(args.end, now)
    try:
        step_seconds = parse_duration(args.step)
    except ValueError as error:
        raise UsageError(f"--step: {error}") from None
    if not step_seconds.is_integer() or not 1 <= step_seconds <= MAX_STEP_SECONDS:
        raise UsageError(f"--step: whole seconds from 1s to {MAX_STEP_SECONDS // 60}m")
    if end > now:
        raise UsageError("--end: in the future (the upstream has nothing there)")
    if start >= end:
        raise UsageError("--start: must be before --end")
    oldest = now - HISTORY_SECONDS + config.poll.lookback + HALF_HOUR_SECONDS
    if start < oldest:
        raise UsageError(
            "--start: too old; the upstream keeps 365 days and a sample needs poll.lookback "
            f"before it, so the oldest is {_iso(math.ceil(oldest))}"
        )
    reserved = layout_labels(config.layout)
    labels = tuple(parse_label(text, reserved) for text in args.label)
    names = [name for name, _ in labels]
    if len(set(names)) != len(names):
        raise UsageError("--label: a label name given twice")
    step = int(step_seconds)
    times = tuple(sample_times(start, end, step))
    if not times:
        raise UsageError("--start/--end: no sample time falls between them at this --step")
    return Plan(start, end, step, labels, times)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(config: Config, the_plan: Plan, out_path: str) -> tuple[int, int]:
    """Fetch, replay and write; (series, samples). Raises FetchFailed before writing anything."""
    limiter = RequestLimiter(
        config.splashify.max_concurrency, config.splashify.requests_per_second
    )
    client = SplashifyClient(config.splashify, limiter, limits=config.limits)
    times = the_plan.times
    # The oldest sample needs its whole lookback window; the newest sees buckets up to its end.
    fetch_start = query_window(times[0], config.poll.lookback)[0]
    fetch_end = query_window(times[-1], config.poll.lookback)[1]
    targets = []
    for target in config.targets:
        log.info("reading %s from %s to %s", target.name, _iso(fetch_start), _iso(fetch_end))
        try:
            history = fetch_history(client, config, target, fetch_start, fetch_end)
        except UpstreamError as error:
            raise FetchFailed(target.name, error) from error
        targets.append(build_series(history, config.poll, times))
    if out_path == "-":
        return write_openmetrics(sys.stdout, targets, times, config.layout, the_plan.labels)
    partial = out_path + ".partial"
    try:
        with open(partial, "w", encoding="utf-8") as out:
            counts = write_openmetrics(out, targets, times, config.layout, the_plan.labels)
        os.replace(partial, out_path)
    except BaseException:  # a full disk, Ctrl-C: leave no half-written file behind
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    return counts


def run_backfill(args: argparse.Namespace, config: Config) -> None:
    """Plan, fetch and write for `config` (this shard's targets), as the flags in `args` say.

    Raises UsageError for a bad flag or an unwritable output, FetchFailed when a target's
    history cannot be read; nothing is written then.
    """
    if not config.targets:
        log.warning("shard %s owns no target: the output holds no series", config.shard)
    the_plan = plan(args, config, time.time())
    try:
        series, samples = run(config, the_plan, args.output)
    except OSError as error:
        raise UsageError(f"--output: cannot write {args.output}: {error.strerror}") from None
    log.info(
        "wrote %d samples of %d series (%d targets, %s to %s, every %ds) to %s",
        samples,
        series,
        len(config.targets),
        _iso(the_plan.times[0]),
        _iso(the_plan.times[-1]),
        the_plan.step,
        "stdout" if args.output == "-" else args.output,
    )
    if args.output != "-":
        log.info(
            "next: promtool tsdb create-blocks-from openmetrics %s <prometheus data dir>",
            args.output,
        )
