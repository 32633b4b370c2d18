"""A hostile but possible upstream, against the exporter wired as it runs (in process).

Each test arms one of the simulator's hostile faults for one target while a healthy target goes
on beside it, and checks what must hold: the bad answer fails its own target alone, with the
reason the README promises, logged once; the target keeps its last good data; everything
else (the other target, /metrics in both formats, the collector behind `--once` and `name[]`,
readiness) goes on.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from exporter.app import Exporter
from exporter.config import Config, LimitsConfig, PollConfig, Secret, SplashifyConfig, Target
from exporter.serve.render import OPENMETRICS, TEXT
from exporter.simulator import Fault, Simulator
from exporter.upstream.client import SplashifyClient
from exporter.upstream.errors import BadResponse, LimitExceeded, Timeout
from exporter.upstream.parse import parse_answer
from exporter.upstream.query import AnalyticsQuery, query_window
from exporter.upstream.ratelimit import RequestLimiter
from tests.conftest import TEST_API_KEY, WABA_ACCOUNTS, parse_metrics

HEALTHY, HOSTILE = WABA_ACCOUNTS[0], WABA_ACCOUNTS[1]
YEAR_3000 = 32503680000  # 3000-01-01T00:00:00Z, on a half-hour boundary


def make_exporter(
    sim: Simulator,
    *,
    limits: LimitsConfig = LimitsConfig(),  # noqa: B008 - frozen
    **splashify: object,
) -> Exporter:
    settings: dict[str, object] = {"max_retries": 0, "timeout": 5.0, **splashify}
    config = Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url, **settings),
        targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in (HEALTHY, HOSTILE)),
        poll=PollConfig(interval=60, stale_after=3600),
        limits=limits,
    )
    return Exporter(config)


def poller(exporter: Exporter, account) -> object:
    return next(p for p in exporter.pollers if p.target.name == account.name)


def expositions(exporter: Exporter) -> dict[str, dict]:
    """Every way the metrics leave the process, each read back by prometheus-client's parser
    of its format: the collector (`--once`, `name[]`) and the cached body in both formats."""
    exporter.cache.refresh()
    read = {"collector": parse_metrics(exporter.exposition().decode())}
    for fmt, parser in ((TEXT, parse_metrics), (OPENMETRICS, parse_openmetrics)):
        pieces, _ = exporter.cache.body(fmt, gzip=True)
        read[fmt] = parser(gzip.decompress(b"".join(pieces)).decode())
    return read


def parse_openmetrics(text: str) -> dict:
    return {family.name: family for family in openmetrics_families(text)}


def sample(families: dict, name: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def data(families: dict, account) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in families["whatsapp_conversations"].samples
        if s.labels["waba_name"] == account.name
    }


def assert_isolated(exporter: Exporter, before: dict, reason: str) -> None:
    """The hostile target failed with `reason` and kept its data; the healthy one is fine."""
    for where, families in expositions(exporter).items():
        assert sample(families, "whatsapp_exporter_poll_success", waba_name=HEALTHY.name) == 1
        assert sample(families, "whatsapp_exporter_poll_success", waba_name=HOSTILE.name) == 0
        errors = {
            r: sample(
                families, "whatsapp_exporter_poll_errors_total", waba_name=HOSTILE.name, reason=r
            )
            for r in ("bad_response", "limit_exceeded", "timeout", "internal")
        }
        assert errors[reason] >= 1, (where, errors)
        assert {r for r, n in errors.items() if n} == {reason}, (where, errors)
        assert data(families, HOSTILE) == before[where], where
        assert data(families, HEALTHY), where
    assert exporter.is_ready()


def warnings_about(caplog: pytest.LogCaptureFixture, account) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.levelno >= logging.WARNING and f"target {account.name}" in r.getMessage()
    ]


def good_first(exporter: Exporter) -> dict:
    assert exporter.poll_all_once()
    return {where: data(families, HOSTILE) for where, families in expositions(exporter).items()}


# -- label values ------------------------------------------------------------------------------

ODD_LABELS = ["\ud800", "a\udfffb", ["a", "b"], {"a": 1}, True, False, 7, 1.5, "9" * 257]


@pytest.mark.parametrize("value", ODD_LABELS, ids=repr)
def test_an_odd_label_value_fails_only_its_own_target(
    simulator: Simulator, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(simulator)
    before = good_first(exporter)
    simulator.set_fault(Fault.label("phone_number", value), waba_id=HOSTILE.waba_id)
    caplog.set_level(logging.WARNING)
    assert not exporter.poll_all_once()
    assert not exporter.poll_all_once()
    assert_isolated(exporter, before, "bad_response")
    (line,) = warnings_about(caplog, HOSTILE)  # once per change of reason
    assert "bad_response" in line.getMessage() and line.exc_info is None
    line.getMessage().encode("utf-8")  # the log line itself is text


def test_label_text_up_to_256_characters_is_a_label_value(simulator: Simulator) -> None:
    exporter = make_exporter(simulator)
    for value in ("9" * 256, "Ünïcødé ☎", 'quote " backslash \\ newline \n'):
        simulator.set_fault(Fault.label("phone_number", value), waba_id=HOSTILE.waba_id)
        assert exporter.poll_all_once()
        for families in expositions(exporter).values():
            assert sample(families, "whatsapp_conversations", phone_number=value) == 1


# -- a slow answer -----------------------------------------------------------------------------


def client(sim: Simulator, codes: list[str], **settings: object) -> SplashifyClient:
    config = SplashifyConfig(
        api_key=Secret(TEST_API_KEY), base_url=sim.url, max_retries=0, **settings
    )
    limits = LimitsConfig(max_response_bytes=1 << 20)
    return SplashifyClient(
        config,
        RequestLimiter(1, 1000),
        on_response=lambda target, code: codes.append(code),
        limits=limits,
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
    )


def window_query() -> AnalyticsQuery:
    start, end = query_window(time.time(), 6 * 3600)
    return AnalyticsQuery(start=start, end=end, dimensions=("COUNTRY", "PHONE"))


TARGET = Target(name=HOSTILE.name, waba_id=HOSTILE.waba_id)


def hung_up_early(sim: Simulator, dripped: int) -> bool:
    """Whether the client hung up while the answer was still trickling (before the first
    `dripped` bytes were through), rather than waiting for it to end."""
    deadline = time.monotonic() + 30
    while not sim.drips:  # the simulator notices at its next write
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ((sent, _),) = sim.drips
    return sent < dripped


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_an_answer_that_trickles_in_times_out_as_a_whole(
    simulator: Simulator, headers: bool
) -> None:
    # A byte every 0.3 s never lets a single read time out; the attempt's 1 s budget must.
    # (Forty bytes, then the rest at once: without the bound, the fetch would succeed.)
    simulator.set_fault(Fault.drip(0.3, headers=headers, limit=40), waba_id=HOSTILE.waba_id)
    codes: list[str] = []
    with pytest.raises(Timeout, match="no complete answer within 1s"):
        client(simulator, codes, timeout=1.0).fetch(TARGET, window_query(), time.monotonic() + 60)
    assert codes == (["error"] if headers else ["200"])
    assert hung_up_early(simulator, 40)


def test_a_drip_frees_its_request_slot_and_fails_its_poll(simulator: Simulator) -> None:
    exporter = make_exporter(simulator, max_concurrency=1, timeout=2.0)
    assert exporter.poll_all_once()
    simulator.set_fault(Fault.drip(0.3, limit=60), waba_id=HOSTILE.waba_id)
    outcome: list[bool] = []
    dripping = threading.Thread(target=lambda: outcome.append(poller(exporter, HOSTILE).poll()))
    dripping.start()
    deadline = time.monotonic() + 20
    while not any(r.fault == "drip" for r in simulator.requests_for(HOSTILE.waba_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The only request slot is the drip's until its budget is spent; then this poll gets it.
    assert poller(exporter, HEALTHY).poll()
    dripping.join()
    assert outcome == [False]
    assert hung_up_early(simulator, 60)
    families = expositions(exporter)["collector"]
    assert sample(families, "whatsapp_exporter_poll_success", waba_name=HOSTILE.name) == 0
    assert sample(
        families, "whatsapp_exporter_poll_errors_total", waba_name=HOSTILE.name, reason="timeout"
    ) == 1


# -- size limits -------------------------------------------------------------------------------


def test_a_gzip_bomb_is_limit_exceeded(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(simulator, limits=LimitsConfig(max_response_bytes=1 << 20))
    before = good_first(exporter)
    simulator.set_fault(Fault.gzip_bomb(64 << 20), waba_id=HOSTILE.waba_id)
    caplog.set_level(logging.WARNING)
    assert not exporter.poll_all_once()
    assert not exporter.poll_all_once()
    assert_isolated(exporter, before, "limit_exceeded")
    (line,) = warnings_about(caplog, HOSTILE)
    assert "limits.max_response_bytes" in line.getMessage()
    assert "1 MiB" in line.getMessage()


def test_an_uncompressed_answer_over_the_limit_is_limit_exceeded(simulator: Simulator) -> None:
    simulator.set_fault(Fault.cardinality(20_000), waba_id=HOSTILE.waba_id)  # about 3 MB
    with pytest.raises(LimitExceeded, match="larger than 1 MiB"):
        client(simulator, []).fetch(TARGET, window_query(), time.monotonic() + 60)


def test_more_label_sets_than_the_limit_is_limit_exceeded(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(simulator, limits=LimitsConfig(max_series_per_target=200))
    simulator.set_fault(Fault.cardinality(200), waba_id=HOSTILE.waba_id)
    before = good_first(exporter)  # exactly the limit is fine
    assert len(before["collector"]) == 200
    simulator.set_fault(Fault.cardinality(201), waba_id=HOSTILE.waba_id)
    caplog.set_level(logging.WARNING)
    assert not exporter.poll_all_once()
    assert not exporter.poll_all_once()
    assert_isolated(exporter, before, "limit_exceeded")
    (line,) = warnings_about(caplog, HOSTILE)
    assert "more than 200 label sets" in line.getMessage()
    assert "limits.max_series_per_target" in line.getMessage()


# -- numbers, times and nesting -----------------------------------------------------------------


def _point(start: int) -> dict[str, object]:
    return {"start": start, "end": start + 1800, "conversation": 3, "phone_number": "1"}


def _window_start() -> int:
    return query_window(time.time(), 6 * 3600)[0]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.extra_points(_point(YEAR_3000)),
        Fault.extra_points(_point(1800 * 10**30)),
        Fault.extra_points(_point(-1800)),
        # A day ahead of the clock (of the collection: tests run later, never a day later).
        Fault.extra_points(_point((int(time.time()) // 1800 + 48) * 1800)),
        Fault.extra_points(_point(_window_start() - 1800)),  # before the window
        Fault.extra_points({**_point(_window_start()), "conversation": 1e300}),
        Fault.raw_body(b"[" * 100_000),
        Fault.raw_body(b'{"conversation_analytics": {"data_points": [' * 5_000),
        Fault.raw_body(b'{"id": ' + b"9" * 5000 + b"}"),
        Fault.raw_body(b'{"id": "1", "conversation_analytics": NaN}'),
        Fault.raw_body(b'{"id": "\xed\xa0\x80"}'),  # a surrogate in UTF-8 bytes
        Fault.raw_body(b"\xff\xfe\x00garbage"),
        Fault.raw_body(b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}),
        Fault.raw_body(gzip.compress(b'{"id": "1"}' * 100)[:-12], {"Content-Encoding": "gzip"}),
        Fault.raw_body(b"{}", {"Content-Encoding": "br"}),
    ],
    ids=[
        "year-3000", "start-1800e30", "negative-start", "tomorrow", "before-window",
        "count-1e300", "nested-lists", "nested-objects", "5000-digit-id", "nan", "surrogate-bytes",
        "not-utf8", "corrupt-gzip", "truncated-gzip", "unasked-encoding",
    ],
)
def test_malformed_numbers_times_and_bodies_are_bad_responses(
    simulator: Simulator, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(simulator)
    before = good_first(exporter)
    simulator.set_fault(fault, waba_id=HOSTILE.waba_id)
    caplog.set_level(logging.WARNING)
    assert not exporter.poll_all_once()
    assert not exporter.poll_all_once()
    assert_isolated(exporter, before, "bad_response")
    (line,) = warnings_about(caplog, HOSTILE)  # logged once, and not as a crash of ours
    assert line.exc_info is None
    assert not any(r.exc_info for r in caplog.records)


# -- redirects and ids -------------------------------------------------------------------------


def test_a_redirect_to_another_host_is_counted_and_not_followed(simulator: Simulator) -> None:
    with Simulator(api_key=TEST_API_KEY) as elsewhere:
        exporter = make_exporter(simulator)
        before = good_first(exporter)
        path = f"/api/v25.0/{HOSTILE.waba_id}"
        simulator.set_fault(Fault.redirect(elsewhere.url + path), waba_id=HOSTILE.waba_id)
        assert not exporter.poll_all_once()
        assert elsewhere.requests == []
    assert_isolated(exporter, before, "bad_response")
    families = expositions(exporter)["collector"]
    assert sample(
        families, "whatsapp_exporter_api_requests_total", waba_name=HOSTILE.name, code="302"
    ) == 1


def test_a_redirect_to_another_wabas_path_is_not_followed(simulator: Simulator) -> None:
    exporter = make_exporter(simulator)
    before = good_first(exporter)
    healthy_requests = len(simulator.requests_for(HEALTHY.waba_id))
    other = f"{simulator.url}/api/v25.0/{HEALTHY.waba_id}"
    simulator.set_fault(Fault.redirect(other, status=307), waba_id=HOSTILE.waba_id)
    assert not poller(exporter, HOSTILE).poll()
    assert len(simulator.requests_for(HEALTHY.waba_id)) == healthy_requests
    assert poller(exporter, HEALTHY).poll()
    assert_isolated(exporter, before, "bad_response")


def test_an_answer_for_another_waba_is_refused(simulator: Simulator) -> None:
    exporter = make_exporter(simulator)
    before = good_first(exporter)
    simulator.set_fault(Fault.wrong_id(HEALTHY.waba_id), waba_id=HOSTILE.waba_id)
    assert not exporter.poll_all_once()
    assert_isolated(exporter, before, "bad_response")
    body = client(simulator, []).fetch(TARGET, window_query(), time.monotonic() + 60)
    with pytest.raises(BadResponse, match=f"not for {HOSTILE.waba_id}"):
        parse_answer(body, ("COUNTRY",), waba_id=HOSTILE.waba_id)


def test_the_customer_route_takes_the_wabas_id_from_the_answer(simulator: Simulator) -> None:
    from tests.conftest import CUSTOMER_ACCOUNTS

    account = CUSTOMER_ACCOUNTS[0]
    config = Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=simulator.url),
        targets=(Target(name="customer", customer_id=account.customer_id),),
        poll=PollConfig(interval=60),
    )
    exporter = Exporter(config)
    assert exporter.poll_all_once()
    families = expositions(exporter)["collector"]
    assert sample(families, "whatsapp_exporter_poll_success", waba_id=account.waba_id) == 1


# -- rate limits -------------------------------------------------------------------------------


def test_a_rate_limit_without_retry_after_waits_at_least_a_second(simulator: Simulator) -> None:
    simulator.set_fault(Fault.rate_limited(), waba_id=HOSTILE.waba_id, times=2)
    sleeps: list[float] = []
    config = SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=simulator.url, max_retries=2)
    rate_limited = SplashifyClient(
        config, RequestLimiter(1, 1000), sleep=sleeps.append, jitter=lambda: 0.0
    )
    body = rate_limited.fetch(TARGET, window_query(), time.monotonic() + 60)
    assert isinstance(body, dict) and json.dumps(body)
    assert sleeps == [1.0, 2.0]  # full jitter would have drawn 0 here
