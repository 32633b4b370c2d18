"""A poller against the simulator over real HTTP, with one fake clock shared by both sides.

Expected values are computed independently from what the simulator recorded: for every
request, the points it answered; for the counter, per bucket and label set the highest count
any poll saw once the bucket was complete, summed.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.pipeline.buckets import latest_complete_bucket
from exporter.pipeline.poller import TargetPoller
from exporter.pipeline.snapshot import SnapshotStore
from exporter.serve.selfmetrics import SelfMetrics
from exporter.simulator import Fault, Simulator
from exporter.upstream.client import SplashifyClient
from exporter.upstream.ratelimit import RequestLimiter
from exporter.vocabulary import DIMENSIONS_BY_NAME
from tests.conftest import CUSTOMER_ACCOUNTS, TEST_API_KEY, WABA_ACCOUNTS, expected_observed

DIMS = ("CONVERSATION_CATEGORY", "CONVERSATION_TYPE", "COUNTRY")
KEYS = [DIMENSIONS_BY_NAME[d].point_key for d in DIMS]
WABA = WABA_ACCOUNTS[0]


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    # An afternoon in India, when every demo account is busy.
    return Clock(datetime(2026, 6, 10, 9, 47, 12, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(api_key=TEST_API_KEY, clock=clock) as simulator:
        yield simulator


class Harness:
    def __init__(
        self,
        sim: Simulator,
        clock: Clock,
        target: Target,
        delay: float = 1800,
        monotonic: Clock | None = None,
    ) -> None:
        self.sim = sim
        self.config = Config(
            splashify=SplashifyConfig(
                api_key=Secret(TEST_API_KEY), base_url=sim.url, max_retries=0
            ),
            targets=(target,),
            poll=PollConfig(interval=300, lookback=6 * 3600, delay=delay),
            dimensions=DIMS,
        )
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self.metrics.track_targets([target.name])
        self.store = SnapshotStore(DIMS)
        self.client = SplashifyClient(
            self.config.splashify, RequestLimiter(4, 1000), on_response=self.metrics.count_response
        )
        self.poller = TargetPoller(
            target, self.config, self.client, self.store, self.metrics.count_error, clock=clock,
            monotonic=monotonic or time.monotonic,
        )
        self.target = target

    def snapshot(self):
        return self.store.get(self.target.name)

    def errors(self, reason: str) -> float:
        return self.registry.get_sample_value(
            "whatsapp_exporter_poll_errors_total",
            {"waba_name": self.target.name, "reason": reason},
        )

    def answered(self) -> list:
        return [r for r in self.sim.requests if r.status == 200]

    def expected_bucket(self, request, bucket: int) -> dict[tuple[str, ...], int]:
        counts: dict[tuple[str, ...], int] = {}
        for point in self.sim.expected_points(request.account_waba_id, request.query, request.time):
            if point["start"] == bucket:
                labels = tuple(point.get(k, "") for k in KEYS)
                counts[labels] = counts.get(labels, 0) + point["conversation"]
        return counts

    def labels_in_window(self, request) -> set[tuple[str, ...]]:
        return {
            tuple(point.get(k, "") for k in KEYS)
            for point in self.sim.expected_points(
                request.account_waba_id, request.query, request.time
            )
        }

    def expected_observed(self) -> dict[tuple[str, ...], int]:
        return expected_observed(self.sim, self.answered(), self.config.poll.delay, KEYS)


def test_a_poll_reports_the_simulators_counts(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    assert harness.poller.poll() is True
    snapshot = harness.snapshot()
    (request,) = harness.answered()
    assert snapshot.poll_success and snapshot.waba_id == WABA.waba_id
    assert snapshot.bucket_start == latest_complete_bucket(clock.now, 1800)
    expected = harness.expected_bucket(request, snapshot.bucket_start)
    assert sum(expected.values()) > 0, "the test needs a busy bucket"
    nonzero = {labels: n for labels, n in snapshot.conversations.items() if n}
    assert nonzero == expected
    assert set(snapshot.conversations) == harness.labels_in_window(request)
    assert snapshot.observed == harness.expected_observed()
    assert snapshot.last_success == clock.now


def test_a_quiet_bucket_reads_zero_for_label_sets_seen_in_the_window(
    sim: Simulator, clock: Clock
) -> None:
    clock.now = datetime(2026, 6, 10, 22, 47, tzinfo=timezone.utc).timestamp()  # IST night
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    assert harness.poller.poll()
    (request,) = harness.answered()
    conversations = harness.snapshot().conversations
    zeros = {labels for labels, n in conversations.items() if n == 0}
    assert zeros, "at night some label sets of the window are quiet in the reported bucket"
    assert set(conversations) == harness.labels_in_window(request)
    assert not zeros & set(harness.expected_bucket(request, harness.snapshot().bucket_start))


def test_the_customer_route_labels_series_with_the_answered_waba_id(
    sim: Simulator, clock: Clock
) -> None:
    account = CUSTOMER_ACCOUNTS[0]
    harness = Harness(sim, clock, Target(name="globex", customer_id=account.customer_id))
    assert harness.poller.poll()
    assert harness.snapshot().waba_id == account.waba_id


def test_a_failure_keeps_the_last_good_data(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    harness.poller.poll()
    good = harness.snapshot()
    sim.set_fault(Fault.status(502))
    clock.now += 300
    assert harness.poller.poll() is False
    failed = harness.snapshot()
    assert not failed.poll_success
    assert failed.conversations == good.conversations
    assert failed.observed == good.observed
    assert failed.bucket_start == good.bucket_start
    assert failed.last_success == good.last_success
    assert harness.errors("upstream") == 1


def test_a_failure_before_any_success(sim: Simulator, clock: Clock) -> None:
    account = CUSTOMER_ACCOUNTS[0]
    harness = Harness(sim, clock, Target(name="globex", customer_id=account.customer_id))
    sim.set_fault(Fault.unauthorized())
    assert harness.poller.poll() is False
    snapshot = harness.snapshot()
    assert (snapshot.poll_success, snapshot.waba_id, snapshot.bucket_start) == (False, "", None)
    assert snapshot.conversations == {} and snapshot.last_success is None
    assert harness.errors("auth") == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.malformed_json(), "bad_response"),
        (Fault.forbidden(), "permission"),
        (Fault.rate_limited(), "rate_limited"),
        (Fault.down(), "connection"),
        (Fault.graph_error(100), "bad_request"),
    ],
)
def test_each_failure_is_counted_with_its_reason(
    sim: Simulator, clock: Clock, fault: Fault, reason: str
) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    sim.set_fault(fault)
    assert harness.poller.poll() is False
    assert harness.errors(reason) == 1


def test_nothing_is_lost_across_an_outage(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    assert harness.poller.poll()
    sim.set_fault(Fault.status(503))
    for _ in range(8):  # two hours of failed polls
        clock.now += 900
        assert not harness.poller.poll()
    sim.clear_faults()
    clock.now += 900
    assert harness.poller.poll()
    observed = harness.snapshot().observed
    assert observed == harness.expected_observed()
    # The four buckets that completed during the outage are in the counter.
    first, last = harness.answered()[0], harness.answered()[-1]
    missed = range(
        latest_complete_bucket(first.time, 1800) + 1800,
        latest_complete_bucket(last.time, 1800) + 1800,
        1800,
    )
    assert len(missed) == 5
    assert all(sum(harness.expected_bucket(last, b).values()) > 0 for b in missed)


def test_revisions_add_their_difference(clock: Clock) -> None:
    # Buckets younger than an hour report only half their final count; with no delay the
    # exporter counts them at once and must add the rest when they are revised.
    with Simulator(api_key=TEST_API_KEY, clock=clock, late_seconds=3600, late_fraction=0.5) as sim:
        harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id), delay=0)
        assert harness.poller.poll()
        first = dict(harness.snapshot().observed)
        for _ in range(6):
            clock.now += 600
            assert harness.poller.poll()
        final = harness.snapshot().observed
        assert final == harness.expected_observed()
        assert sum(final.values()) > sum(first.values())
        # The oldest buckets were final from the start: revisions came only from recent ones.
        bucket = latest_complete_bucket(harness.answered()[0].time, 0)
        early = harness.expected_bucket(harness.answered()[0], bucket)
        late = harness.expected_bucket(harness.answered()[-1], bucket)
        assert sum(late.values()) > sum(early.values())


def test_a_reload_during_a_poll_never_mixes_old_and_new_dimensions(
    sim: Simulator, clock: Clock
) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    sim.set_fault(Fault.slow(2), times=1)  # far longer than the 0.2 s below, even on a busy CI
    polling = threading.Thread(target=harness.poller.poll)
    polling.start()
    time.sleep(0.2)  # the poll is waiting for its (old-dimension) answer
    new_config = dataclasses.replace(harness.config, dimensions=("COUNTRY",))
    harness.store.retain([], ("COUNTRY",))
    harness.poller.reconfigure(new_config, harness.client)
    polling.join()
    snapshot = harness.snapshot()
    # The superseded poll was repeated at once with the new dimensions, and only that counted.
    assert snapshot.dimensions == ("COUNTRY",)
    assert {len(labels) for labels in snapshot.observed} == {1}
    assert [r.query.dimensions for r in harness.answered()] == [DIMS, ("COUNTRY",)]


def test_a_retired_poller_writes_nothing(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    sim.set_fault(Fault.slow(2), times=1)  # far longer than the 0.2 s below, even on a busy CI
    polling = threading.Thread(target=harness.poller.poll)
    polling.start()
    time.sleep(0.2)
    harness.poller.retire()
    harness.store.retain([], DIMS)
    polling.join()
    assert harness.snapshot() is None
    assert harness.poller.poll() is False and len(sim.requests) == 1


def test_a_rate_limited_target_pauses_for_as_long_as_asked_and_at_most_an_hour(
    sim: Simulator, clock: Clock
) -> None:
    monotonic = Clock(1000.0)
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id), monotonic=monotonic)
    sim.set_fault(Fault.rate_limited(retry_after="7200"), times=1)
    assert harness.poller.poll() is False
    assert harness.errors("rate_limited") == 1
    for elapsed in (1, 1800, 3599):  # paused: no request goes out
        monotonic.now = 1000.0 + elapsed
        assert harness.poller.poll() is False
    assert len(sim.requests) == 1
    monotonic.now = 1000.0 + 3600  # capped at an hour, not the 2h asked for
    assert harness.poller.poll() is True
    assert len(sim.requests) == 2


def test_a_fresh_poller_counts_from_its_first_attempt(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    sim.set_fault(Fault.status(503))
    assert harness.poller.poll() is False
    (first_attempt,) = sim.requests
    sim.clear_faults()
    clock.now += 3600  # two buckets complete while the first polls fail
    assert harness.poller.poll()
    observed = harness.snapshot().observed
    assert observed == expected_observed(sim, harness.answered(), 1800, KEYS, first=first_attempt)
    # Those two completed after the process started: they are counted, the rest of the window
    # is history this counter leaves alone.
    (answer,) = harness.answered()
    start = latest_complete_bucket(first_attempt.time, 1800)
    since = sum(
        sum(harness.expected_bucket(answer, bucket).values())
        for bucket in (start + 1800, start + 3600)
    )
    assert since > 0 and sum(observed.values()) == since


def test_a_reload_keeps_the_counter_unless_the_series_change(sim: Simulator, clock: Clock) -> None:
    harness = Harness(sim, clock, Target(name="acme", waba_id=WABA.waba_id))
    assert harness.poller.poll()
    clock.now += 3600
    assert harness.poller.poll()
    counted = dict(harness.snapshot().observed)
    assert sum(counted.values()) > 0
    slower = dataclasses.replace(
        harness.config, poll=dataclasses.replace(harness.config.poll, interval=600)
    )
    harness.poller.reconfigure(slower, harness.client)
    clock.now += 60  # no bucket completes
    assert harness.poller.poll()
    assert harness.snapshot().observed == counted
    # New dimensions: the old counts mean nothing for the new series; a fresh counter starts,
    # which counts none of the window's history.
    fewer = dataclasses.replace(slower, dimensions=("COUNTRY",))
    harness.store.retain([], ("COUNTRY",))
    harness.poller.reconfigure(fewer, harness.client)
    assert harness.poller.poll()
    observed = harness.snapshot().observed
    assert observed and set(observed.values()) == {0}
