"""The fault matrix: one real exporter process, one target per upstream fault, all at once.

Every row's fault is armed for its own target while two healthy targets go on. For each row:
the process stays up, the healthy targets stay exact, the failing target keeps serving its last
good data with poll_success 0, the right reason is counted; after recovery the observed counter
has lost no bucket (it equals what the simulator's answers add up to).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exporter.simulator import DEMO_ACCOUNTS, Fault, Simulator
from exporter.vocabulary import DIMENSIONS
from tests.conftest import TEST_API_KEY, expected_observed, write_config

POINT_KEYS = [d.point_key for d in DIMENSIONS]
LABELS = [d.label for d in DIMENSIONS]

LIMITS = {"max_series_per_target": 1000, "max_response_bytes": "2MiB"}

# (row name, fault, reason counted, poll_success while armed)
ROWS: list[tuple[str, Fault, str | None]] = [
    ("timeout", Fault.slow(2), "timeout"),
    ("http-500", Fault.status(500), "upstream"),
    ("http-502", Fault.status(502), "upstream"),
    ("http-429", Fault.rate_limited(), "rate_limited"),
    ("http-429-retry-after", Fault.rate_limited(retry_after="1"), "rate_limited"),
    *[
        (f"graph-{code}", Fault.graph_error(code), "rate_limited")
        for code in (4, 17, 32, 613, 80007, 130429)
    ],
    ("truncated-json", Fault.malformed_json(), "bad_response"),
    ("missing-key", Fault.missing_key(), None),  # "no data" upstream-style: not an error
    ("http-401", Fault.unauthorized(), "auth"),
    ("http-403", Fault.forbidden(), "permission"),
    ("http-404", Fault.not_found(), "not_found"),
    ("down", Fault.down(), "connection"),
    # A hostile upstream (exporter/simulator/faults.py); limits below.
    ("surrogate-label", Fault.label("phone_number", "\ud800"), "bad_response"),
    ("list-label", Fault.label("country", ["KW", "AE"]), "bad_response"),
    ("drip-feed", Fault.drip(0.2), "timeout"),
    ("gzip-bomb", Fault.gzip_bomb(8 << 20), "limit_exceeded"),
    ("cardinality", Fault.cardinality(LIMITS["max_series_per_target"] + 1), "limit_exceeded"),
    ("year-3000-point", Fault.extra_points(
        {"start": 32503680000, "end": 32503681800, "conversation": 1}), "bad_response"),
    ("deep-nesting", Fault.raw_body(b"[" * 100_000), "bad_response"),
    ("redirect", Fault.redirect("http://127.0.0.1:9/elsewhere"), "bad_response"),
    ("id-mismatch", Fault.wrong_id("1"), "bad_response"),
]
HEALTHY = ["healthy-a", "healthy-b"]
DOWN_POLLS = 3  # the `down` row stays down for this many failed polls before recovery


def accounts() -> list:
    names = [row[0] for row in ROWS] + HEALTHY
    return [
        dataclasses.replace(
            DEMO_ACCOUNTS[i % len(DEMO_ACCOUNTS)],
            waba_id=str(900000000000000 + i),
            name=name,
            customer_id=None,
        )
        for i, name in enumerate(names)
    ]


def per_target(families, name: str, waba_name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.get(label, "") for label in LABELS): s.value
        for s in families[name].samples
        if s.labels["waba_name"] == waba_name
    }


def value(families, name: str, **labels: str) -> float | None:
    for sample in families[name.removesuffix("_total")].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


@pytest.fixture
def matrix_simulator():
    with Simulator(api_key=TEST_API_KEY, accounts=accounts()) as sim:
        yield sim


def test_fault_matrix(matrix_simulator: Simulator, start_exporter, tmp_path: Path) -> None:
    sim = matrix_simulator
    by_name = {a.name: a for a in sim.accounts}
    config = {
        "splashify": {
            "base_url": sim.url,
            "api_key": "${TEST_SPLASHIFY_KEY}",
            "timeout": "0.5s",
            "max_concurrency": 24,
            "requests_per_second": 200,
        },
        "poll": {"interval": "4s"},
        "limits": LIMITS,
        "targets": [{"waba_id": a.waba_id, "name": a.name} for a in sim.accounts],
    }
    exporter = start_exporter(
        "--config", str(write_config(tmp_path / "c.yaml", config)), "--log-level", "debug"
    )
    exporter.wait_ready()
    everyone = [a.name for a in sim.accounts]

    def all_up(f):
        return all(value(f, "whatsapp_exporter_poll_success", waba_name=n) == 1 for n in everyone)

    baseline = exporter.wait_for(all_up, "every first poll to succeed")

    for name, fault, _ in ROWS:
        sim.set_fault(fault, waba_id=by_name[name].waba_id)

    def failing(families) -> bool:
        return all(
            value(families, "whatsapp_exporter_poll_success", waba_name=name) == 0
            and value(
                families, "whatsapp_exporter_poll_errors_total", waba_name=name, reason=reason
            )
            >= (DOWN_POLLS if name == "down" else 1)
            for name, _, reason in ROWS
            if reason is not None
        )

    during = exporter.wait_for(failing, "every faulty target to fail with its reason")
    observations = {}
    for name, _, reason in ROWS:
        success = value(during, "whatsapp_exporter_poll_success", waba_name=name)
        gauge_then = per_target(baseline, "whatsapp_conversations", name)
        gauge_now = per_target(during, "whatsapp_conversations", name)
        if reason is None:
            # An answer without the key means "no data": every known label set reads 0.
            assert success == 1
            assert gauge_now and set(gauge_now) == set(gauge_then)
            assert set(gauge_now.values()) == {0.0}
        else:
            # The last good data is still served, unchanged.
            assert gauge_now == gauge_then, name
            other = sum(
                value(during, "whatsapp_exporter_poll_errors_total", waba_name=name, reason=r)
                for r in ("auth", "permission", "not_found", "bad_request", "internal")
            )
            assert other == 0 or reason in ("auth", "permission", "not_found")
        observations[name] = (success, reason)
    for name in HEALTHY:
        assert value(during, "whatsapp_exporter_poll_success", waba_name=name) == 1
    # Transient faults were retried within the poll budget (more attempts than failed polls);
    # permanent ones were not (one attempt per failed poll).
    retried = {
        "timeout": "error",
        "http-500": "500",
        "http-502": "502",
        "http-429": "429",
        "http-429-retry-after": "429",
        "down": "error",
    }
    for name, code in retried.items():
        attempts = value(during, "whatsapp_exporter_api_requests_total", waba_name=name, code=code)
        failures = value(
            during,
            "whatsapp_exporter_poll_errors_total",
            waba_name=name,
            reason=dict((r[0], r[2]) for r in ROWS)[name],
        )
        assert attempts > failures, (name, attempts, failures)
    # A redirect is counted by its status, and not followed (so it is never retried either).
    assert value(during, "whatsapp_exporter_api_requests_total", waba_name="redirect",
                 code="302") >= 1
    permanent = {"http-401": "401", "http-403": "403", "http-404": "404"}

    def one_attempt_per_failed_poll(families) -> bool:
        return all(
            value(families, "whatsapp_exporter_api_requests_total", waba_name=name, code=code)
            == value(
                families,
                "whatsapp_exporter_poll_errors_total",
                waba_name=name,
                reason=dict((r[0], r[2]) for r in ROWS)[name],
            )
            for name, code in permanent.items()
        )

    # The attempt and the failed poll are counted a moment apart, and a scrape may fall between
    # them (then it shows one attempt more); polls go on, so wait for a scrape between polls.
    exporter.wait_for(one_attempt_per_failed_poll, "one attempt per failed poll (401/403/404)")

    sim.clear_faults()
    after = exporter.wait_for(all_up, "every target to recover")

    # Nothing lost: each counter equals the fold of every answer that was applied.
    for account in sim.accounts:
        last_success = value(
            after, "whatsapp_exporter_last_success_timestamp_seconds", waba_name=account.name
        )
        # The answers the exporter applied: healthy ones (a `slow` answer came after the client
        # gave up; a `missing_key` one holds no points) up to the success on show. Chosen by the
        # fault each request took, not by when the faults were armed: an answer just after the
        # clear is applied, and may be the only one that saw a bucket complete.
        answered = [
            r
            for r in sim.requests_for(account.waba_id)
            if r.status == 200 and r.fault is None and r.time <= last_success
        ]
        expected = expected_observed(sim, answered, 1800, POINT_KEYS)
        assert per_target(after, "whatsapp_conversations_observed", account.name) == expected
        assert expected, account.name  # every label set of the window has a counter series

    # The key never shows, after a run full of faults (debug logging on).
    for text in (exporter.output(), exporter.scrape_text(), exporter.get("/").text):
        assert TEST_API_KEY not in text
    assert exporter.process.poll() is None
    print("\nfault matrix:", {k: v for k, v in observations.items()})
