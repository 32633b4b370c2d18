"""The status page and /api/v1/targets, against the simulator: a healthy, a failing, a paused
and a stale target, with a name and an upstream error that try to smuggle in markup."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from exporter import __version__
from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.pipeline.buckets import latest_complete_bucket
from exporter.pipeline.status import TargetStatus, after_poll
from exporter.serve.statuspage import format_duration, render_status_page
from exporter.serve.targets_api import render_targets_json
from exporter.simulator import DEMO_ACCOUNTS, Fault, Simulator
from tests.conftest import TEST_API_KEY, parse_metrics
from tests.pagedom import read_page

ACME, GLOBEX, KOPI, GULF = DEMO_ACCOUNTS
assert GULF.customer_id is not None

XSS_NAME = '<script>document.documentElement.setAttribute("data-xss", "name")</script>'
XSS_MESSAGE = (
    "<img src=x onerror=\"document.documentElement.setAttribute('data-xss', 'error')\"> "
    "Request to WhatsApp failed"
)
HEALTHY, FAILING, PAUSED, STALE = "acme-india", XSS_NAME, "kopi-nusantara", "gulf-retail"
DATA_FAMILIES = (
    "whatsapp_conversations",
    "whatsapp_conversations_bucket_start_timestamp_seconds",
    "whatsapp_conversations_observed",
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def config_for(sim: Simulator) -> Config:
    return Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url, max_retries=1),
        targets=(
            Target(name=HEALTHY, waba_id=ACME.waba_id),
            Target(name=FAILING, waba_id=GLOBEX.waba_id),
            Target(name=PAUSED, waba_id=KOPI.waba_id),
            Target(name=STALE, customer_id=GULF.customer_id),
        ),
        poll=PollConfig(interval=300, stale_after=3600),
    )


@pytest.fixture(scope="module")
def four_states():
    """(exporter, t0, t1, t2): polled at t0, t1 = t0 + 3700 s and t2 = t1 + 60 s."""
    t0 = float(int(datetime.now(timezone.utc).timestamp()) - 8 * 3600)
    clock = Clock(t0)
    with Simulator(api_key=TEST_API_KEY, clock=clock) as sim:
        exporter = Exporter(config_for(sim), clock=clock)
        pollers = {p.target.name: p for p in exporter.pollers}
        sim.set_fault(
            Fault.status(502, {"success": False, "message": XSS_MESSAGE}), waba_id=GLOBEX.waba_id
        )
        assert not exporter.poll_all_once(), "the failing target fails"
        clock.now = t1 = t0 + 3700  # past stale_after since every success of t0
        sim.set_fault(Fault.status(500), waba_id=GULF.waba_id)
        for name in (HEALTHY, FAILING, PAUSED, STALE):
            pollers[name].poll()
        clock.now = t2 = t1 + 60
        sim.set_fault(Fault.rate_limited(retry_after="600"), waba_id=KOPI.waba_id, times=1)
        assert not pollers[PAUSED].poll()
        assert pollers[HEALTHY].poll()
        exporter.cache.refresh()
        clock.now = t2 + 1
        yield exporter, t0, t1, t2


def served_series(exporter: Exporter, name: str) -> int:
    families = parse_metrics(exporter.exposition().decode())
    return sum(
        1
        for family in DATA_FAMILIES
        for sample in families[family].samples
        if sample.labels["waba_name"] == name
    )


def test_the_page_shows_each_target_state(four_states) -> None:
    exporter, t0, t1, t2 = four_states
    page = render_status_page(exporter.status_view()).decode()
    rows = read_page(page).rows
    assert {name: row.state for name, row in rows.items()} == {
        HEALTHY: "ok",
        FAILING: "failing",
        PAUSED: "paused",
        STALE: "stale",
    }
    for row in rows.values():
        assert row.cells["State"] == row.state

    healthy = rows[HEALTHY].cells
    bucket = latest_complete_bucket(t2, exporter.config.poll.delay)
    assert healthy["Last error"] == "none"
    assert healthy["ID"] == f"WABA {ACME.waba_id}"
    assert healthy["Route"] == f"GET /api/v25.0/{ACME.waba_id}"
    assert healthy["Last poll"].startswith(utc(t2)) and "1 attempt" in healthy["Last poll"]
    assert healthy["Series"] == str(served_series(exporter, HEALTHY)) != "0"
    assert healthy["Bucket reported"].startswith(utc(bucket))
    assert f"{format_duration(t2 + 1 - bucket)} old" in healthy["Bucket reported"]
    assert healthy["Next poll"] == "not scheduled"  # polled by hand: no scheduler
    assert healthy["Paused until"] == "not paused"

    failing = rows[FAILING].cells
    assert failing["Target"] == XSS_NAME, "the name, as text"
    assert failing["Last error"].startswith(f"upstream: HTTP 502: {XSS_MESSAGE}")
    assert f"failing since {utc(t0)}" in failing["Last error"]
    assert "2 polls in a row" in failing["Last error"]
    assert "2 attempts" in failing["Last poll"], "max_retries 1: one retry of a 502"
    assert failing["Series"] == "0" and failing["Bucket reported"] == "none yet"

    paused = rows[PAUSED].cells
    assert paused["Paused until"].startswith(utc(t2 + 600))
    assert paused["Last error"].startswith("rate_limited: HTTP 429")
    assert paused["Series"] == str(served_series(exporter, PAUSED)) != "0"

    stale = rows[STALE].cells
    assert stale["ID"] == f"customer {GULF.customer_id} WABA {GULF.waba_id}"
    assert (
        stale["Route"]
        == f"GET /api/v1/partner/customers/{GULF.customer_id}/whatsapp/analytics/conversations"
    )
    assert stale["Series"] == "0" == str(served_series(exporter, STALE))
    assert stale["Bucket reported"].startswith(utc(latest_complete_bucket(t0, 1800)))
    assert "not served (stale)" in stale["Bucket reported"]
    assert f"failing since {utc(t1)}" in stale["Last error"]

    assert "4 target(s): 1 ok, 1 failing, 1 paused, 1 stale" in page
    assert f"version {__version__}" in page
    assert "every 5m, lookback 6h, delay 30m, stale after 1h" in page
    assert "0/1 (4 target(s) here)" in page
    for path in ("metrics", "healthz", "ready", "api/v1/targets"):
        assert f'href="{path}"' in page


def test_markup_from_config_and_upstream_is_text(four_states) -> None:
    exporter, *_ = four_states
    page = render_status_page(exporter.status_view()).decode()
    parsed = read_page(page)
    assert parsed.scripts == 0 and "<script" not in page and "<img" not in page
    assert all("onerror" not in attributes for _, attributes in parsed.elements)
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=" in page
    assert TEST_API_KEY not in page


def test_the_json_has_the_same_facts(four_states) -> None:
    exporter, t0, t1, t2 = four_states
    text = render_targets_json(exporter.status_view()).decode()
    assert TEST_API_KEY not in text
    document = json.loads(text)
    assert document["status"] == "success"
    targets = {t["name"]: t for t in document["data"]["activeTargets"]}
    assert list(targets) == [HEALTHY, FAILING, PAUSED, STALE]

    healthy = targets[HEALTHY]
    bucket = latest_complete_bucket(t2, 1800)
    assert healthy["labels"] == {"waba_id": ACME.waba_id, "waba_name": HEALTHY}
    assert (healthy["state"], healthy["health"], healthy["lastError"]) == ("ok", "up", "")
    assert healthy["lastPoll"] == rfc3339(t2) and healthy["lastPollAttempts"] == 1
    assert healthy["series"] == served_series(exporter, HEALTHY)
    assert healthy["bucketStart"] == rfc3339(bucket)
    assert healthy["bucketAgeSeconds"] == t2 + 1 - bucket
    assert healthy["route"] == f"/api/v25.0/{ACME.waba_id}"
    assert healthy["nextPoll"] is None and healthy["pausedUntil"] is None
    assert healthy["lastFailure"] is None and healthy["failingSince"] is None

    failing = targets[FAILING]
    assert (failing["state"], failing["health"]) == ("failing", "down")
    assert failing["lastErrorReason"] == "upstream"
    assert failing["lastError"] == f"HTTP 502: {XSS_MESSAGE}"
    assert failing["failingSince"] == rfc3339(t0) and failing["consecutiveFailures"] == 2
    assert failing["lastPollAttempts"] == 2
    assert failing["series"] == 0 and failing["bucketStart"] is None
    assert failing["lastSuccess"] is None and failing["labels"]["waba_id"] == GLOBEX.waba_id

    paused = targets[PAUSED]
    assert (paused["state"], paused["health"]) == ("paused", "down")
    assert paused["pausedUntil"] == rfc3339(t2 + 600)
    assert paused["lastErrorReason"] == "rate_limited"
    assert paused["lastSuccess"] == rfc3339(t1)

    stale = targets[STALE]
    assert (stale["state"], stale["health"]) == ("stale", "down")
    assert stale["customerId"] == GULF.customer_id and stale["wabaId"] is None
    assert stale["labels"]["waba_id"] == GULF.waba_id, "the id the upstream answered with"
    assert stale["series"] == 0 and stale["lastSuccess"] == rfc3339(t0)
    assert stale["lastFailure"]["reason"] == "upstream"
    assert stale["lastFailure"]["time"] == rfc3339(t1)

    exporter_info = document["data"]["exporter"]
    assert exporter_info["version"] == __version__
    assert exporter_info["uptimeSeconds"] == t2 + 1 - t0
    config = exporter_info["config"]
    assert (config["interval"], config["lookback"], config["delay"]) == (300, 21600, 1800)
    assert config["shard"] == {"index": 0, "total": 1}
    assert "api_key" not in config


def test_before_the_first_poll_every_target_is_never_polled() -> None:
    with Simulator(api_key=TEST_API_KEY) as sim:
        exporter = Exporter(config_for(sim))
        view = exporter.status_view()
    rows = read_page(render_status_page(view).decode()).rows
    assert {row.state for row in rows.values()} == {"never polled"}
    assert rows[HEALTHY].cells["Last poll"] == "not yet"
    targets = json.loads(render_targets_json(view))["data"]["activeTargets"]
    assert {(t["state"], t["health"], t["lastPoll"]) for t in targets} == {
        ("never polled", "unknown", None)
    }


def test_a_run_of_failures_and_its_recovery() -> None:
    status = TargetStatus()
    status = after_poll(status, start=10, end=11, duration=1, attempts=1)
    assert status.last_poll_ok and status.failing_since is None
    status = after_poll(status, start=20, end=22, duration=2, attempts=3, error=("timeout", "slow"))
    status = after_poll(status, start=30, end=31, duration=1, attempts=1, error=("upstream", "x"))
    assert (status.failing_since, status.consecutive_failures) == (20, 2)
    assert (status.last_error_reason, status.last_error, status.last_error_time) == (
        "upstream",
        "x",
        31,
    )
    status = after_poll(status, start=40, end=41, duration=1, attempts=1, paused_until=100)
    assert status.last_poll_ok and status.failing_since is None and status.consecutive_failures == 0
    assert status.last_error_reason == "upstream", "kept as the last failure"
    assert status.paused_until == 100
    assert after_poll(status, start=50, end=51, duration=1, attempts=1).paused_until == 100


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.0218, "0.022s"),
        (45, "45s"),
        (90, "1m30s"),
        (300, "5m"),
        (3599.6, "1h"),
        (3658, "1h1m"),
        (5400, "1h30m"),
        (90061, "1d1h"),
        (-120, "-2m"),
        (float("inf"), "?"),
    ],
)
def test_durations_read_short(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
