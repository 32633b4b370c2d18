"""`whatsapp-exporter backfill`: past data as OpenMetrics text with timestamps, for Prometheus.

The live exporter serves, at any time t, what its last poll made of the lookback window. The
backfill replays that for past times. It reads each target's HALF_HOUR history once (in chunks of
a day, through the same client, query builder and parser as a poll), then, for every step t of
the requested range, does what a poll at t does with that data: the same `query_window`, the
same `buckets.evaluate`. It writes the result stamped t. A backfilled sample therefore means
what a live one means:
`whatsapp_conversations` at t is the bucket the live exporter reports at t (the same half hour
of the week a week later, so `offset 1w` compares like with like),
`whatsapp_conversations_bucket_start_timestamp_seconds` is that bucket's start, and
`whatsapp_conversations_observed_total` counts from the start of the backfill as if an exporter
had been started then. Names, HELP texts and labels come from the collector's table. With
`--label job=... --label instance=...` (what Prometheus adds on a scrape) the backfilled and
the live series are the same series.

Two differences remain, both because the upstream cannot tell the past as it was. Counts are
today's settled numbers, not the provisional ones a live poll saw. A label set that first showed
up in a bucket still in progress at t reads 0 from t on, where the live exporter showed it only
once the provisional count did.

The output lists every metric family once. Within a family, series follow each other, and each
series has its samples in time order. It ends with `# EOF`. That is what
`promtool tsdb create-blocks-from openmetrics` reads.
"""

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
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TextIO

from exporter.buckets import (
    Evaluation,
    LabelValues,
    ObservedState,
    evaluate,
    latest_complete_bucket,
)
from exporter.client import SplashifyClient
from exporter.collector import METRICS, TARGET_LABELS
from exporter.config import (
    Config,
    ConfigError,
    PollConfig,
    Target,
    WebConfig,
    load_config,
    parse_duration,
)
from exporter.errors import UpstreamError
from exporter.parse import parse_answer
from exporter.poller import build_query
from exporter.query import query_window
from exporter.ratelimit import RequestLimiter
from exporter.sharding import add_shard_flag, shard_config, shard_from_flag
from exporter.vocabulary import DIMENSIONS_BY_NAME, HALF_HOUR_SECONDS, HISTORY_SECONDS, DataPoint

log = logging.getLogger("exporter.backfill")

EXIT_OK, EXIT_FETCH_FAILED, EXIT_USAGE = 0, 1, 2

CHUNK_SECONDS = 86400
"""History is read a day per request: a few thousand points per answer."""
FETCH_BUDGET_SECONDS = 300.0
"""How long one request may take, retries included."""
DEFAULT_STEP_SECONDS = 60
MAX_STEP_SECONDS = 300
"""Prometheus looks back 5 minutes for the latest sample of a series (its default
`--query.lookback-delta`): with sparser samples, instant queries would fall into gaps."""

CONVERSATIONS = "whatsapp_conversations"
BUCKET_START = "whatsapp_conversations_bucket_start_timestamp_seconds"
OBSERVED = "whatsapp_conversations_observed"
FAMILIES = (CONVERSATIONS, BUCKET_START, OBSERVED)
"""The data metrics, as the collector names them. The exporter's own metrics (poll success,
durations, requests) describe a running process, and a backfill has none to describe."""

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


# -- reading the history ---------------------------------------------------------------------------


@dataclass(slots=True)
class History:
    """One target's points from the oldest window a step needs up to `end`."""

    target: Target
    waba_id: str
    points: list[DataPoint] = field(default_factory=list)


def fetch_history(
    client: SplashifyClient, config: Config, target: Target, start: int, end: int
) -> History:
    """Every HALF_HOUR point of `target` from bucket `start` until `end`, a day per request.

    Chunks meet on bucket boundaries, so no bucket comes twice. Raises `UpstreamError`.
    """
    history = History(target, target.waba_id or "")
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + CHUNK_SECONDS, end)
        query = build_query(config, target, chunk_start, chunk_end)
        body = client.fetch(target, query, time.monotonic() + FETCH_BUDGET_SECONDS)
        answer = parse_answer(
            body,
            config.dimensions,
            window=(chunk_start, chunk_end),
            waba_id=target.waba_id,
            max_series=config.limits.max_series_per_target,
        )
        if target.customer_id is not None and answer.waba_id:
            history.waba_id = answer.waba_id
        history.points.extend(answer.points)
        chunk_start = chunk_end
    return history


def replay(
    points: Sequence[DataPoint], poll: PollConfig, times: Sequence[int]
) -> Iterator[Evaluation]:
    """What a poll at each of `times` (ascending) makes of `points`, as the live poller does.

    A poll at t sees the buckets of `query_window(t)` that started before the window's end.
    Between two times that see the same buckets and report the same bucket, nothing can change,
    so the evaluation is reused (the same object).
    """
    by_bucket: dict[int, list[DataPoint]] = {}
    for point in points:
        by_bucket.setdefault(point.start, []).append(point)
    state = ObservedState()
    key: tuple[int, int, int] | None = None
    evaluation: Evaluation | None = None
    for t in times:
        window_start, window_end = query_window(t, poll.lookback)
        first = -(-window_start // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS
        stop = -(-window_end // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS  # buckets before it
        reported = latest_complete_bucket(t, poll.delay)
        if (window_start, stop, reported) != key or evaluation is None:
            key = (window_start, stop, reported)
            seen = [p for b in range(first, stop, HALF_HOUR_SECONDS) for p in by_bucket.get(b, ())]
            evaluation = evaluate(
                seen, now=t, delay=poll.delay, window_start=window_start, previous=state
            )
            state = evaluation.observed
        yield evaluation


# -- series ------------------------------------------------------------------------------------


class _Series:
    """One series as a step function over sample indices: (first index, value) at each change.

    NaN marks "absent from here on". A year of one-minute steps holds one change per half hour.
    """

    __slots__ = ("starts", "values")

    def __init__(self) -> None:
        self.starts = array("q")
        self.values = array("d")

    def set(self, index: int, value: float) -> None:
        if self.values and (
            self.values[-1] == value or (math.isnan(value) and math.isnan(self.values[-1]))
        ):
            return
        self.starts.append(index)
        self.values.append(value)

    def runs(self, count: int) -> Iterator[tuple[int, int, float]]:
        """(first index, end index, value) of each run that has a value."""
        for i, (first, value) in enumerate(zip(self.starts, self.values, strict=True)):
            end = self.starts[i + 1] if i + 1 < len(self.starts) else count
            if not math.isnan(value):
                yield first, end, value


@dataclass(slots=True)
class TargetSeries:
    target_name: str
    waba_id: str
    families: dict[str, dict[LabelValues, _Series]]


def _family_values(evaluation: Evaluation) -> dict[str, Mapping[LabelValues, float]]:
    return {
        CONVERSATIONS: evaluation.conversations,
        BUCKET_START: {(): evaluation.bucket_start},
        OBSERVED: evaluation.observed.totals,
    }


def build_series(history: History, poll: PollConfig, times: Sequence[int]) -> TargetSeries:
    families: dict[str, dict[LabelValues, _Series]] = {name: {} for name in FAMILIES}
    previous: Evaluation | None = None
    present: dict[str, set[LabelValues]] = {name: set() for name in FAMILIES}
    for index, evaluation in enumerate(replay(history.points, poll, times)):
        if evaluation is previous:
            continue
        previous = evaluation
        for name, values in _family_values(evaluation).items():
            series = families[name]
            for labels, value in values.items():
                series.setdefault(labels, _Series()).set(index, float(value))
            for gone in present[name] - values.keys():
                series[gone].set(index, math.nan)
            present[name] = set(values)
    return TargetSeries(history.target.name, history.waba_id, families)


# -- OpenMetrics text --------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def write_openmetrics(
    out: TextIO,
    targets: Sequence[TargetSeries],
    times: Sequence[int],
    dimension_labels: Sequence[str],
    extra_labels: Sequence[tuple[str, str]],
) -> tuple[int, int]:
    """Write every family, series by series, samples in time order; (series, samples) written."""
    specs = {spec.name: spec for spec in METRICS}
    extra = "".join(f',{name}="{_escape(value)}"' for name, value in extra_labels)
    stamps = [str(t) for t in times]
    series_count = samples = 0
    for name in FAMILIES:
        spec = specs[name]
        kind = "counter" if name == OBSERVED else "gauge"
        sample_name = name + "_total" if kind == "counter" else name
        label_names = TARGET_LABELS + (tuple(dimension_labels) if spec.per_series else ())
        out.write(f"# HELP {name} {_escape(spec.documentation)}\n# TYPE {name} {kind}\n")
        for target in targets:
            for labels, series in sorted(target.families[name].items()):
                values = (target.waba_id, target.target_name, *labels)
                pairs = ",".join(
                    f'{n}="{_escape(v)}"' for n, v in zip(label_names, values, strict=True)
                )
                prefix = f"{sample_name}{{{pairs}{extra}}} "
                wrote = False
                for first, end, value in series.runs(len(times)):
                    text = prefix + _number(value) + " "
                    out.writelines(text + stamps[i] + "\n" for i in range(first, end))
                    samples += end - first
                    wrote = True
                series_count += wrote
    out.write("# EOF\n")
    return series_count, samples


# -- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from exporter.demo import DEMO_SCENARIOS

    parser = argparse.ArgumentParser(
        prog="whatsapp-exporter backfill",
        description="Write past conversation data as OpenMetrics text with timestamps, for "
        "`promtool tsdb create-blocks-from openmetrics`. Each sample is what the live exporter "
        "serves at that time.",
        epilog="Example: whatsapp-exporter backfill --config config.yaml --start now-8d "
        "--label job=whatsapp-exporter --label instance=exporter:9477 -o history.om && "
        "promtool tsdb create-blocks-from openmetrics history.om /var/lib/prometheus/metrics2",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("WHATSAPP_EXPORTER_CONFIG", "config.yaml"),
        help="YAML config file, as for the exporter (default: $WHATSAPP_EXPORTER_CONFIG or "
        "config.yaml)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="read the built-in simulated API instead"
    )
    parser.add_argument(
        "--demo.scenario", dest="demo_scenario", choices=DEMO_SCENARIOS, default="steady",
        help="traffic of the simulated API (with --demo; default steady)",
    )
    parser.add_argument(
        "--start", required=True, metavar="TIME",
        help="first sample: now-8d, unix seconds, or ISO 8601 such as 2026-01-05T00:00:00Z "
        "(UTC when no zone); at most 365 days back, minus poll.lookback",
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
    add_shard_flag(parser, "read")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


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
    reserved = TARGET_LABELS + tuple(DIMENSIONS_BY_NAME[d].label for d in config.dimensions)
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
    dimension_labels = [DIMENSIONS_BY_NAME[d].label for d in config.dimensions]
    if out_path == "-":
        return write_openmetrics(sys.stdout, targets, times, dimension_labels, the_plan.labels)
    partial = out_path + ".partial"
    try:
        with open(partial, "w", encoding="utf-8") as out:
            counts = write_openmetrics(out, targets, times, dimension_labels, the_plan.labels)
        os.replace(partial, out_path)
    except BaseException:  # a full disk, Ctrl-C: leave no half-written file behind
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.demo_scenario != "steady" and not args.demo:
        return _fail("--demo.scenario: only with --demo")
    try:
        shard_override = shard_from_flag(args.shard)
    except ValueError as error:
        return _fail(str(error))
    simulator = None
    try:
        if args.demo:
            from exporter.demo import demo_config, start_demo_simulator

            simulator = start_demo_simulator(args.demo_scenario)
            config = demo_config(simulator, WebConfig().listen_address)
        else:
            try:
                config = load_config(args.config)
            except ConfigError as error:
                return _fail(f"config error: {error}")
        from exporter.logs import configure_logging

        configure_logging(args.log_level, "text", [config.splashify.api_key.reveal()])
        # A replica's history holds its own targets, under its own `instance` label.
        config = shard_config(config, config.shard if shard_override is None else shard_override)
        if not config.targets:
            log.warning("shard %s owns no target: the output holds no series", config.shard)
        try:
            the_plan = plan(args, config, time.time())
        except UsageError as error:
            return _fail(str(error))
        try:
            series, samples = run(config, the_plan, args.output)
        except FetchFailed as failure:
            print(f"whatsapp-exporter backfill: {failure}; nothing written", file=sys.stderr)
            return EXIT_FETCH_FAILED
        except OSError as error:
            return _fail(f"--output: cannot write {args.output}: {error.strerror}")
        except KeyboardInterrupt:
            return 130
    finally:
        if simulator is not None:
            simulator.stop()
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
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"whatsapp-exporter backfill: {message}", file=sys.stderr)
    return EXIT_USAGE
