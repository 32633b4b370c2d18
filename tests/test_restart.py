"""Restarts on a fake clock: the exporter (its real wiring: restore, poll, save) and the
simulator share one clock, so hours pass between two processes in a moment.

"A process" is an `Exporter` with its own state file object; it ends when the file is closed
(a kill is tests/test_persistence_process.py). Expected values come from what the simulator
answered (tests/conftest.py's `expected_observed`), not from exporter/pipeline/buckets.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.pipeline.buckets import latest_complete_bucket
from exporter.pipeline.persistence import open_state_file
from exporter.simulator import Simulator
from exporter.vocabulary import DIMENSIONS_BY_NAME
from tests.conftest import TEST_API_KEY, WABA_ACCOUNTS, expected_observed

DIMS = ("CONVERSATION_CATEGORY", "COUNTRY", "PHONE")
KEYS = [DIMENSIONS_BY_NAME[d].point_key for d in DIMS]
ACCOUNTS = WABA_ACCOUNTS[:2]
H = 1800


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    # An afternoon in India, when the demo accounts are busy.
    return Clock(datetime(2026, 6, 10, 9, 47, 12, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(api_key=TEST_API_KEY, clock=clock) as simulator:
        yield simulator


def make_config(sim: Simulator, dimensions: tuple[str, ...] = DIMS) -> Config:
    return Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url, max_retries=0),
        targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in ACCOUNTS),
        poll=PollConfig(interval=300, lookback=6 * 3600, delay=1800, stale_after=10**9),
        dimensions=dimensions,
    )


class Process:
    """One exporter process: its Exporter, and its state file when it has one."""

    def __init__(self, config: Config, clock: Clock, path: Path | None) -> None:
        self.state_file = None if path is None else open_state_file(str(path), clock=clock)
        self.exporter = Exporter(config, clock=clock, state_file=self.state_file)

    def poll(self) -> None:
        assert self.exporter.poll_all_once()

    def observed(self, name: str) -> dict[tuple[str, ...], int]:
        snapshot = self.exporter.store.get(name)
        return dict(snapshot.observed)

    def bucket(self, name: str) -> int:
        return self.exporter.store.get(name).bucket_start

    def restored(self) -> float:
        """How many targets went on from the file, as the self-metric says."""
        return self.exporter.registry.get_sample_value(
            "whatsapp_exporter_persistence_restored_targets"
        )

    def end(self) -> None:
        if self.state_file is not None:
            self.state_file.close()


def answered(sim: Simulator, waba_id: str) -> list:
    return [r for r in sim.requests_for(waba_id) if r.status == 200]


def bucket_sum(sim: Simulator, request, bucket: int) -> int:
    return sum(
        p["conversation"]
        for p in sim.expected_points(request.account_waba_id, request.query, request.time)
        if p["start"] == bucket
    )


def run_until_restart(sim: Simulator, clock: Clock, path: Path | None) -> Process:
    first = Process(make_config(sim), clock, path)
    for _ in range(7):  # half an hour of polls; a bucket completes meanwhile
        first.poll()
        clock.now += 300
    first.end()
    return first


def test_a_restart_with_the_file_goes_on_exactly(sim: Simulator, clock: Clock, tmp_path) -> None:
    path = tmp_path / "state.db"
    before = run_until_restart(sim, clock, path)
    last_before = {a.name: before.observed(a.name) for a in ACCOUNTS}
    reported_before = {a.name: before.bucket(a.name) for a in ACCOUNTS}
    assert any(sum(v.values()) for v in last_before.values()), "a bucket completed"

    clock.now += 3600  # down for an hour: two buckets complete meanwhile
    after = Process(make_config(sim), clock, path)
    after.poll()
    for account in ACCOUNTS:
        observed = after.observed(account.name)
        requests = answered(sim, account.waba_id)
        # As if one process had polled all along: the counter went on, and each bucket that
        # completed while it was down is in it once.
        assert observed == expected_observed(sim, requests, 1800, KEYS)
        assert all(observed[labels] >= n for labels, n in last_before[account.name].items()), (
            "no reset"
        )
        down = range(reported_before[account.name] + H, after.bucket(account.name) + H, H)
        assert len(down) == 2
        gained = sum(observed.values()) - sum(last_before[account.name].values())
        assert gained == sum(bucket_sum(sim, requests[-1], b) for b in down) > 0
    # Polled again before the next bucket completes: nothing is counted a second time.
    counted = {a.name: after.observed(a.name) for a in ACCOUNTS}
    clock.now += 120
    after.poll()
    assert {a.name: after.observed(a.name) for a in ACCOUNTS} == counted
    after.end()


def test_a_restart_without_the_file_misses_only_the_downtime(
    sim: Simulator, clock: Clock
) -> None:
    run_until_restart(sim, clock, None)
    clock.now += 3600
    after = Process(make_config(sim), clock, None)
    after.poll()
    for account in ACCOUNTS:
        # A fresh counter: nothing of the window's history is added (Prometheus sees a reset
        # to 0, so increase() adds nothing), and the downtime's buckets are what is missing.
        assert set(after.observed(account.name).values()) == {0}
    clock.now += 1800  # one bucket completes after the start: counted in full
    after.poll()
    for account in ACCOUNTS:
        requests = answered(sim, account.waba_id)
        assert sum(after.observed(account.name).values()) == bucket_sum(
            sim, requests[-1], after.bucket(account.name)
        )


def test_a_restart_longer_than_the_window_goes_on_without_counting_twice(
    sim: Simulator, clock: Clock, tmp_path
) -> None:
    path = tmp_path / "state.db"
    before = run_until_restart(sim, clock, path)
    last_before = {a.name: sum(before.observed(a.name).values()) for a in ACCOUNTS}
    reported_before = {a.name: before.bucket(a.name) for a in ACCOUNTS}
    clock.now += 8 * 3600  # longer than lookback - delay - 30m (5h)
    after = Process(make_config(sim), clock, path)
    after.poll()
    for account in ACCOUNTS:
        (request,) = answered(sim, account.waba_id)[-1:]
        window_start = request.query.start
        reported = latest_complete_bucket(clock.now, 1800)
        # The counter goes on; of the buckets that completed while it was down, those still in
        # the window are counted once, the older ones are lost.
        readable = range(max(reported_before[account.name] + H, window_start), reported + H, H)
        assert reported_before[account.name] + H < window_start, "some were lost"
        gained = sum(after.observed(account.name).values()) - last_before[account.name]
        assert gained == sum(bucket_sum(sim, request, b) for b in readable)
    after.end()


def test_a_state_saved_under_other_dimensions_is_not_applied(
    sim: Simulator, clock: Clock, tmp_path
) -> None:
    path = tmp_path / "state.db"
    run_until_restart(sim, clock, path)
    other = make_config(sim, dimensions=("COUNTRY",))
    after = Process(other, clock, path)
    assert after.restored() == 0
    after.poll()
    for account in ACCOUNTS:
        observed = after.observed(account.name)
        assert observed and {len(labels) for labels in observed} == {1}
        assert set(observed.values()) == {0}, "a fresh counter, not the old one relabelled"
    after.end()
    # Saved again under the new dimensions, it is applied to them after the next restart.
    clock.now += 1800
    again = Process(other, clock, path)
    assert again.restored() == len(ACCOUNTS)
    again.poll()
    assert any(sum(again.observed(a.name).values()) for a in ACCOUNTS)
    again.end()


def test_a_target_removed_by_a_reload_loses_its_saved_state(
    sim: Simulator, clock: Clock, tmp_path
) -> None:
    path = tmp_path / "state.db"
    process = Process(make_config(sim), clock, path)
    for _ in range(7):
        process.poll()
        clock.now += 300
    config = make_config(sim)
    kept, removed = config.targets
    process.exporter.reload(dataclasses.replace(config, targets=(kept,)))
    process.end()
    # Back in the config after a restart, the removed target starts afresh; the kept one goes on.
    after = Process(config, clock, path)
    assert after.restored() == 1
    after.poll()
    assert set(after.observed(removed.name).values()) == {0}
    assert sum(after.observed(kept.name).values()) > 0
    after.end()
