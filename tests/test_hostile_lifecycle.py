"""The process against a hostile upstream and a hostile host: a bad answer never blinds the other
targets, and nothing (a blocked config read, a slow poll, a clock step) stops the process from
being stopped, reloaded or polling on."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
import yaml

from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.pipeline.clockstep import ClockStepWatcher
from exporter.pipeline.scheduler import PollScheduler, spread_trigger
from exporter.simulator import Fault, Simulator
from tests.conftest import TEST_API_KEY, WABA_ACCOUNTS, config_dict, parse_metrics, run_exporter

HEALTHY, HOSTILE = WABA_ACCOUNTS[0], WABA_ACCOUNTS[1]


def two_targets(sim: Simulator) -> dict:
    return config_dict(
        sim, targets=[{"waba_id": a.waba_id, "name": a.name} for a in (HEALTHY, HOSTILE)]
    )


def value(families: dict, name: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_a_lone_surrogate_in_one_answer_stops_nothing_for_the_others(
    simulator: Simulator, start_exporter, tmp_path: Path
) -> None:
    simulator.set_fault(Fault.label("phone_number", "\ud800"), waba_id=HOSTILE.waba_id)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(two_targets(simulator)))
    exporter = start_exporter("--config", str(path), "--web.enable-lifecycle")
    exporter.wait_ready()  # /ready turns 200
    families = exporter.scrape()
    assert value(families, "whatsapp_exporter_poll_success", waba_name=HEALTHY.name) == 1
    assert value(families, "whatsapp_exporter_poll_success", waba_name=HOSTILE.name) == 0
    assert value(
        families, "whatsapp_exporter_poll_errors_total", waba_name=HOSTILE.name,
        reason="bad_response",
    ) >= 1
    assert value(families, "whatsapp_conversations", waba_name=HEALTHY.name) is not None
    # The other ways out of the process: a name[] filter, gzip, OpenMetrics.
    filtered = exporter.get("/metrics", params={"name[]": "whatsapp_exporter_poll_success"})
    assert filtered.status_code == 200
    assert value(parse_metrics(filtered.text), "whatsapp_exporter_poll_success",
                 waba_name=HEALTHY.name) == 1
    assert exporter.get("/metrics", headers={"Accept-Encoding": "gzip"}).status_code == 200
    openmetrics = exporter.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.status_code == 200 and openmetrics.text.endswith("# EOF\n")
    # A reload, both ways, re-renders everything: the process stays, and so does the data.
    exporter.process.send_signal(signal.SIGHUP)
    assert requests.post(exporter.url + "/-/reload", timeout=10).status_code == 200
    assert exporter.process.poll() is None
    exporter.wait_for(
        lambda f: value(f, "whatsapp_exporter_config_last_reload_successful") == 1
        and value(f, "whatsapp_exporter_poll_success", waba_name=HEALTHY.name) == 1,
        "the reloads to succeed",
    )
    assert "Traceback" not in exporter.output()

    once = run_exporter("--config", str(path), "--once")
    assert once.returncode == 1  # one target failed
    assert "Traceback" not in once.stderr
    families = parse_metrics(once.stdout)
    assert value(families, "whatsapp_exporter_poll_success", waba_name=HEALTHY.name) == 1
    assert "bad_response" in once.stderr


def test_sigterm_stops_the_process_while_a_reload_blocks_reading_the_config(
    simulator: Simulator, start_exporter, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(two_targets(simulator)))
    exporter = start_exporter("--config", str(path))
    exporter.wait_ready()
    # A FIFO with no writer: opening it for reading blocks, as a hung network mount would.
    path.unlink()
    os.mkfifo(path)
    try:
        exporter.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # let the reload reach the read
        exporter.process.send_signal(signal.SIGTERM)
        assert exporter.process.wait(10) == 0
    finally:
        # Whatever happened, the reader must not stay blocked past the test.
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)


def exporter_for(sim: Simulator, workers: int, phones: bool = False) -> Config:
    return Config(
        splashify=SplashifyConfig(
            api_key=Secret(TEST_API_KEY), base_url=sim.url, max_concurrency=workers,
            max_retries=0,
        ),
        targets=tuple(
            Target(
                name=a.name, waba_id=a.waba_id,
                phone_numbers=a.phone_numbers if phones else (),
            )
            for a in (HEALTHY, HOSTILE)
        ),
        poll=PollConfig(interval=600, lookback=6 * 3600, stale_after=3600),
    )


def test_a_reload_that_raises_max_concurrency_polls_with_more_workers(
    simulator: Simulator,
) -> None:
    simulator.set_fault(Fault.slow(1.5))
    exporter = Exporter(exporter_for(simulator, workers=1))
    exporter.start_polling()
    try:
        deadline = time.monotonic() + 30
        while len([r for r in simulator.requests if r.status]) < 2:  # the first round, one by one
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first = simulator.requests
        assert first[1].time >= first[0].answered  # one worker: the second waited
        simulator.clear_requests()
        # New phone numbers: new pollers, polled at once, both, with two workers now.
        exporter.reload(exporter_for(simulator, workers=2, phones=True))
        while len([r for r in simulator.requests if r.status]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        a, b = sorted(simulator.requests, key=lambda r: r.time)[:2]
        assert b.time < a.answered  # the two requests were in flight together
    finally:
        exporter.stop()


# -- the wall clock steps back ------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_watcher_reports_a_step_back_and_nothing_else() -> None:
    wall, monotonic = Clock(1_000_000.0), Clock(50.0)
    steps: list[float] = []
    watcher = ClockStepWatcher(steps.append, wall=wall, monotonic=monotonic)
    for _ in range(3):  # both clocks run on together
        wall.now += 1
        monotonic.now += 1
        assert watcher.check() is None
    wall.now += 1.5  # a slew, not a step
    assert watcher.check() is None
    wall.now += 3600  # a step forward needs nothing
    assert watcher.check() is None
    wall.now -= 3600  # NTP steps back an hour
    assert watcher.check() == -3600
    assert steps == [-3600]


def test_a_step_back_reschedules_every_poll_from_the_new_time() -> None:
    ran = threading.Event()
    scheduler = PollScheduler(workers=1, interval=60)
    scheduler.start()
    try:
        now = datetime.now(timezone.utc)
        job = scheduler.add_job(ran.set, spread_trigger("acme", 60), id="acme")
        # What a step back of an hour leaves: the next run an hour further away than it was.
        job.modify(next_run_time=now + timedelta(hours=1))
        scheduler.reschedule_from_now()
        next_run = scheduler.get_job("acme").next_run_time
        assert next_run <= datetime.now(timezone.utc) + timedelta(seconds=60)
    finally:
        scheduler.shutdown(wait=False)


def test_the_exporter_reschedules_its_polls_on_a_step_back(simulator: Simulator) -> None:
    exporter = Exporter(exporter_for(simulator, workers=2))
    exporter.start_polling()
    try:
        scheduler = exporter._scheduler
        assert scheduler is not None
        for job in scheduler.get_jobs():
            job.modify(next_run_time=datetime.now(timezone.utc) + timedelta(hours=1))
        exporter._clock_stepped_back(-3600.0)
        limit = datetime.now(timezone.utc) + timedelta(seconds=600)
        assert all(job.next_run_time <= limit for job in scheduler.get_jobs())
    finally:
        exporter.stop()
