"""The status page at `/`: what every target is doing, for a person with a browser.

`render_status_page` is a pure function of a `StatusView` (taken by `Exporter.status_view()`):
server-rendered HTML with a little inline CSS, no JavaScript, readable on a phone (below 48em
the table turns into one card per target). Everything that comes from the config or the
upstream (names, ids, error messages) goes through `html.escape`; the API key is never part of
the view. The same facts as JSON are in exporter/serve/targets_api.py.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import math
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from exporter.config import Config, Target
from exporter.pipeline.snapshot import TargetSnapshot
from exporter.pipeline.status import TargetStatus
from exporter.serve.collector import is_stale
from exporter.serve.metrics import DATA_METRICS
from exporter.upstream.query import customer_path, waba_path

OK, FAILING, PAUSED, STALE, NEVER_POLLED = "ok", "failing", "paused", "stale", "never polled"
STATES = (OK, FAILING, PAUSED, STALE, NEVER_POLLED)
"""A target's state, in the order of precedence when several hold (first wins): `paused`
(the upstream asked us to wait, and the time is not up), `stale` (the last success is older
than poll.stale_after, so its data series are not served), `failing` (the last poll failed),
`ok`; `never polled` until a poll ended."""

MESSAGE_CHARS = 500
"""An error message longer than this is cut on the page (the JSON has it whole)."""


@dataclass(frozen=True, slots=True)
class TargetRow:
    """One target, as one page load sees it."""

    target: Target
    status: TargetStatus
    snapshot: TargetSnapshot | None
    """What the store holds for it (None before its first poll)."""
    next_poll: float | None
    """When the scheduler runs its next poll (unix seconds); None when nothing is scheduled."""


@dataclass(frozen=True, slots=True)
class StatusView:
    version: str
    started: float
    """When the process started (unix seconds)."""
    now: float
    config: Config
    targets: tuple[TargetRow, ...]


# -- facts derived from a row (shared with the JSON) -----------------------------------------


def target_state(row: TargetRow, now: float, stale_after: float) -> str:
    status, snapshot = row.status, row.snapshot
    if status.last_poll_end is None and snapshot is None:
        return NEVER_POLLED
    if status.paused_until is not None and status.paused_until > now:
        return PAUSED
    if (
        snapshot is not None
        and snapshot.last_success is not None
        and is_stale(snapshot, now, stale_after)
    ):
        return STALE
    if status.last_poll_ok is not None:
        return OK if status.last_poll_ok else FAILING
    return OK if snapshot is not None and snapshot.poll_success else FAILING


def _count(samples: Iterable[object]) -> int:
    return len(samples) if isinstance(samples, Sized) else sum(1 for _ in samples)


def series_served(row: TargetRow, now: float, stale_after: float) -> int:
    """The data series /metrics serves for the target (every data family; 0 once stale)."""
    snapshot = row.snapshot
    if snapshot is None or is_stale(snapshot, now, stale_after):
        return 0
    return sum(_count(spec.samples(snapshot)) for spec in DATA_METRICS)


def route(config: Config, target: Target) -> str:
    """The request path the target is polled at (base URL not included)."""
    if target.waba_id is not None:
        return waba_path(config.splashify.api_version, target.waba_id)
    return customer_path(str(target.customer_id))


def safe_base_url(url: str) -> str:
    """The base URL without any user:password part."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return ""


def optional_sections(config: Config) -> dict[str, object]:
    """Config blocks that only some versions of the exporter have (`sources`, `limits`), as
    plain values; absent ones are left out."""
    found: dict[str, object] = {}
    for key in ("sources", "limits"):
        value = getattr(config, key, None)
        if value is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            found[key] = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        elif isinstance(value, tuple | list):
            found[key] = [str(v) for v in value]
        else:
            found[key] = str(value)
    return found


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """A short human duration in at most two units, the second rounded: `5m`, `6h`, `1h30m`,
    `45s`, `0.31s`, `2d3h`."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.2g}s" if seconds < 1 else f"{seconds:.1f}s"
    seconds = round(seconds)
    for (unit, size), (small, small_size) in itertools.pairwise(_UNITS):
        if seconds >= size:
            total = round(seconds / small_size)
            big, rest = divmod(total, size // small_size)
            return f"{big}{unit}" + (f"{rest}{small}" if rest else "")
    return f"{seconds}s"


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(timestamp: float, now: float) -> str:
    delta = timestamp - now
    if abs(delta) < 1:
        return "now"
    return f"in {format_duration(delta)}" if delta > 0 else f"{format_duration(-delta)} ago"


# -- the page ----------------------------------------------------------------------------------

_e = html.escape

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
padding:.75rem 1rem;max-width:96rem;color:#1b1b1b;background:#fff;line-height:1.4}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
nav a{margin-right:1rem}.muted{color:#666}.small{font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td{overflow-wrap:break-word}.name{overflow-wrap:anywhere}
th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}
.badge{display:inline-block;padding:0 .45rem;border-radius:.7rem;font-weight:600;
white-space:nowrap}
.state-ok .badge{background:#e3f4e5;color:#1b5e20}
.state-failing td{background:#fdecec}.state-failing .badge{background:#c62828;color:#fff}
.state-stale td{background:#fff1e0}.state-stale .badge{background:#e65100;color:#fff}
.state-paused td{background:#fff8dc}.state-paused .badge{background:#f9a825;color:#000}
.state-never-polled .badge{background:#e0e0e0;color:#333}
.state-failing td:first-child,.state-stale td:first-child{border-left:4px solid #c62828}
.error{color:#b71c1c;word-break:break-word}
dl.config{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}
dl.config dt{font-weight:600}dl.config dd{margin:0;word-break:break-word}
@media (max-width:48em){
table,thead,tbody,tr,td{display:block}thead{display:none}
tr.target{border:1px solid #ccc;border-radius:.4rem;margin:0 0 .75rem;overflow:hidden}
td{border:none;padding:.2rem .6rem;overflow-wrap:anywhere}
td::before{content:attr(data-label);display:block;font-size:.75rem;color:#666}
.state-failing td:first-child,.state-stale td:first-child{border-left:none}
.state-failing,.state-stale{border-left:6px solid #c62828!important}
dl.config{grid-template-columns:1fr}dl.config dd{margin-bottom:.3rem}}
"""

_COLUMNS = (
    "Target",
    "ID",
    "Route",
    "State",
    "Last poll",
    "Last error",
    "Series",
    "Bucket reported",
    "Next poll",
    "Paused until",
)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return '<span class="muted">never</span>'
    return f'{_e(utc(timestamp))} <span class="muted">({_e(relative(timestamp, now))})</span>'


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "\u2026"


def _id_cell(target: Target, snapshot: TargetSnapshot | None) -> str:
    if target.waba_id is not None:
        return f"WABA <code>{_e(target.waba_id)}</code>"
    cell = f"customer <code>{_e(str(target.customer_id))}</code>"
    if snapshot is not None and snapshot.waba_id:
        cell += f'<br><span class="muted small">WABA <code>{_e(snapshot.waba_id)}</code></span>'
    return cell


def _last_poll_cell(status: TargetStatus, now: float) -> str:
    if status.last_poll_end is None or status.last_poll_duration is None:
        return '<span class="muted">not yet</span>'
    attempts = status.last_poll_attempts
    return (
        f"{_when(status.last_poll_start, now)}<br>"
        f'<span class="small">took {_e(format_duration(status.last_poll_duration))}, '
        f"{attempts} attempt{'' if attempts == 1 else 's'}</span>"
    )


def _error_cell(status: TargetStatus, state: str, now: float) -> str:
    if status.last_error_reason is None:
        return '<span class="muted">none</span>'
    text = (
        f'<span class="error"><b>{_e(status.last_error_reason)}</b>: '
        f"{_e(_short(status.last_error or ''))}</span>"
    )
    if status.failing_since is not None and state != OK:
        polls = status.consecutive_failures
        return (
            f'{text}<br><span class="small">failing since {_when(status.failing_since, now)}, '
            f"{polls} poll{'' if polls == 1 else 's'} in a row</span>"
        )
    if status.last_error_time is None:
        return f'<span class="muted">{text}</span>'
    when = _when(status.last_error_time, now)
    return f'<span class="muted small">last failure {when}: {text}</span>'


def _bucket_cell(snapshot: TargetSnapshot | None, state: str, now: float) -> str:
    if snapshot is None or snapshot.bucket_start is None:
        return '<span class="muted">none yet</span>'
    start = snapshot.bucket_start
    age = f"{format_duration(now - start)} old"
    if state == STALE:
        age += ", not served (stale)"
    return f'{_e(utc(start))}<br><span class="muted small">{_e(age)}</span>'


def _row(row: TargetRow, view: StatusView) -> str:
    now, config = view.now, view.config
    state = target_state(row, now, config.poll.stale_after)
    status, snapshot = row.status, row.snapshot
    paused = (
        _when(status.paused_until, now)
        if status.paused_until is not None and status.paused_until > now
        else '<span class="muted">not paused</span>'
    )
    if row.next_poll is None:
        next_poll = '<span class="muted">not scheduled</span>'
    elif (
        state == PAUSED and status.paused_until is not None and row.next_poll < status.paused_until
    ):
        next_poll = (
            f'{_when(row.next_poll, now)}<br><span class="muted small">skipped: paused</span>'
        )
    else:
        next_poll = _when(row.next_poll, now)
    cells = (
        f'<b class="name">{_e(row.target.name)}</b>',
        _id_cell(row.target, snapshot),
        f"<code>GET {_e(route(config, row.target))}</code>",
        f'<span class="badge">{_e(state)}</span>',
        _last_poll_cell(status, now),
        _error_cell(status, state, now),
        str(series_served(row, now, config.poll.stale_after)),
        _bucket_cell(snapshot, state, now),
        next_poll,
        paused,
    )
    tds = "".join(
        f'<td data-label="{_e(label)}">{cell}</td>'
        for label, cell in zip(_COLUMNS, cells, strict=True)
    )
    css_state = state.replace(" ", "-")
    return (
        f'<tr class="target state-{css_state}" data-target="{_e(row.target.name)}" '
        f'data-state="{_e(state)}">{tds}</tr>'
    )


def config_brief(config: Config) -> list[tuple[str, str]]:
    """(what, value) pairs of the effective config; never the key."""
    poll, splashify = config.poll, config.splashify
    filters = [
        f"{f.name}: {', '.join(getattr(config.filters, f.name))}"
        for f in dataclasses.fields(config.filters)
        if getattr(config.filters, f.name)
    ]
    brief = [
        ("Upstream", f"{safe_base_url(splashify.base_url)} (API {splashify.api_version})"),
        (
            "Polling",
            f"every {format_duration(poll.interval)}, lookback {format_duration(poll.lookback)}, "
            f"delay {format_duration(poll.delay)}, stale after {format_duration(poll.stale_after)}",
        ),
        (
            "Requests",
            f"timeout {format_duration(splashify.timeout)}, {splashify.max_retries} retries, "
            f"{splashify.max_concurrency} at once, {splashify.requests_per_second:g} per second",
        ),
        ("Dimensions", ", ".join(config.dimensions) or "none (totals per target)"),
        ("Filters", "; ".join(filters) or "none"),
    ]
    for key, value in optional_sections(config).items():
        if isinstance(value, dict):
            shown = ", ".join(f"{name} {item}" for name, item in value.items())
        elif isinstance(value, list):
            shown = ", ".join(value)
        else:
            shown = str(value)
        brief.append((key.capitalize(), shown))
    brief.append(("Shard", f"{config.shard} ({len(config.targets)} target(s) here)"))
    return brief


def render_status_page(view: StatusView) -> bytes:
    """The whole page, as UTF-8 bytes."""
    stale_after = view.config.poll.stale_after
    states = [target_state(row, view.now, stale_after) for row in view.targets]
    counts = [f"{states.count(s)} {s}" for s in STATES if states.count(s)]
    not_ok = len(states) - states.count(OK)
    title = "WhatsApp exporter"
    if not_ok:
        title += f": {not_ok} of {len(states)} target(s) not ok"
    rows = "".join(_row(row, view) for row in view.targets)
    head = "".join(f"<th>{_e(c)}</th>" for c in _COLUMNS)
    table = (
        f'<table class="targets"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        if view.targets
        else '<p class="muted">No targets in this replica\'s share of the config.</p>'
    )
    config = "".join(
        f"<dt>{_e(what)}</dt><dd>{_e(value)}</dd>" for what, value in config_brief(view.config)
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        "<header><h1>WhatsApp conversation analytics exporter</h1>"
        f'<p class="muted">version {_e(view.version)} &middot; up '
        f"{_e(format_duration(view.now - view.started))} (since {_e(utc(view.started))}) "
        f"&middot; as of {_e(utc(view.now))}</p>"
        '<nav><a href="metrics">/metrics</a><a href="healthz">/healthz</a>'
        '<a href="ready">/ready</a><a href="api/v1/targets">/api/v1/targets</a></nav></header>'
        f'<main><h2>Targets</h2><p class="summary">{len(states)} target(s): '
        f"{_e(', '.join(counts) or 'none')}</p>{table}"
        f'<h2>Configuration</h2><dl class="config">{config}</dl></main></body></html>\n'
    )
    return page.encode()
