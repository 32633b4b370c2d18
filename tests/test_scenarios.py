"""Demo scenarios: the simulator's campaign knob, and `--demo.scenario`."""

from __future__ import annotations

import argparse
import calendar

import pytest

from exporter.demo import DEMO_SCENARIOS, SPIKE_EXTRA_PER_HALF_HOUR, demo_campaigns
from exporter.simulator import DEMO_ACCOUNTS, Simulator, answer_points
from exporter.simulator.traffic import Campaign, combos, final_count
from exporter.upstream.query import AnalyticsQuery
from exporter.vocabulary import HALF_HOUR_SECONDS
from tests.conftest import run_exporter

ACME, GLOBEX = DEMO_ACCOUNTS[0], DEMO_ACCOUNTS[1]
NOW = calendar.timegm((2025, 3, 12, 10, 47, 0))
BUCKET = NOW - NOW % HALF_HOUR_SECONDS - HALF_HOUR_SECONDS  # complete at NOW
CAMPAIGN = Campaign(ACME.waba_id, start=BUCKET, end=BUCKET + HALF_HOUR_SECONDS,
                    extra_per_half_hour=500.0)


def by_category(account, bucket: int, campaigns=()) -> dict[str, int]:
    query = AnalyticsQuery(start=bucket, end=bucket + HALF_HOUR_SECONDS,
                           dimensions=("CONVERSATION_CATEGORY", "CONVERSATION_DIRECTION"))
    counts: dict[str, int] = {}
    for point in answer_points(account, query, NOW, campaigns=campaigns):
        key = f"{point['conversation_category']}/{point['conversation_direction']}"
        counts[key] = counts.get(key, 0) + int(point["conversation"])
    return counts


def test_a_campaign_adds_business_initiated_marketing_to_its_buckets_only() -> None:
    before, after = by_category(ACME, BUCKET), by_category(ACME, BUCKET, (CAMPAIGN,))
    added = after["MARKETING/BUSINESS_INITIATED"] - before["MARKETING/BUSINESS_INITIATED"]
    carriers = [c for c in combos(ACME)
                if (c.conversation_category, c.conversation_direction)
                == ("MARKETING", "BUSINESS_INITIATED")]
    assert 500 - len(carriers) < added <= 500 + len(carriers)  # rounding, per combo
    assert {k: v for k, v in after.items() if k != "MARKETING/BUSINESS_INITIATED"} == {
        k: v for k, v in before.items() if k != "MARKETING/BUSINESS_INITIATED"
    }
    # Not before it started, not after it ended, not on another account.
    for bucket in (BUCKET - HALF_HOUR_SECONDS, BUCKET + HALF_HOUR_SECONDS):
        for combo in combos(ACME):
            assert final_count(ACME, combo, bucket, (CAMPAIGN,)) == final_count(ACME, combo, bucket)
    assert by_category(GLOBEX, BUCKET, (CAMPAIGN,)) == by_category(GLOBEX, BUCKET)


def test_an_open_ended_campaign_never_stops() -> None:
    forever = Campaign(ACME.waba_id, start=BUCKET, end=None, extra_per_half_hour=500.0)
    later = BUCKET + 100 * HALF_HOUR_SECONDS
    assert forever.covers(ACME, later) and not forever.covers(ACME, BUCKET - HALF_HOUR_SECONDS)


def test_the_simulator_serves_its_campaigns() -> None:
    query = AnalyticsQuery(start=BUCKET, end=BUCKET + HALF_HOUR_SECONDS)
    with Simulator(clock=lambda: NOW, campaigns=[CAMPAIGN]) as sim:
        assert sim.expected_points(ACME.waba_id, query, NOW) == answer_points(
            ACME, query, NOW, campaigns=(CAMPAIGN,)
        )
    with Simulator(clock=lambda: NOW) as plain:
        assert plain.campaigns == ()


def test_demo_scenarios() -> None:
    assert demo_campaigns("steady", NOW) == ()
    (spike,) = demo_campaigns("marketing-spike", NOW)
    assert spike.waba_id == ACME.waba_id
    assert spike.extra_per_half_hour == SPIKE_EXTRA_PER_HALF_HOUR
    # It covers the bucket the exporter reports from the start (1 to 1.5 hours back).
    assert spike.covers(ACME, BUCKET - HALF_HOUR_SECONDS)
    assert spike.start % HALF_HOUR_SECONDS == 0
    with pytest.raises(ValueError, match="unknown demo scenario"):
        demo_campaigns("tsunami", NOW)


def test_the_cli_offers_every_demo_scenario() -> None:
    from exporter.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for each in (parser, commands.choices["backfill"]):
        (action,) = [a for a in each._actions if a.dest == "demo_scenario"]
        assert tuple(action.choices) == DEMO_SCENARIOS and action.default == DEMO_SCENARIOS[0]


def test_demo_scenario_needs_demo(tmp_path) -> None:
    result = run_exporter("--demo.scenario", "marketing-spike", "--once",
                          "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "--demo.scenario: only with --demo" in result.stderr


def test_demo_once_with_the_spike() -> None:
    result = run_exporter("--demo", "--demo.scenario", "marketing-spike", "--once")
    assert result.returncode == 0, result.stderr
    acme_marketing = sum(
        float(line.rsplit(" ", 1)[1])
        for line in result.stdout.splitlines()
        if line.startswith("whatsapp_conversations{")
        and 'waba_name="acme-india"' in line
        and 'conversation_category="MARKETING"' in line
    )
    assert acme_marketing >= SPIKE_EXTRA_PER_HALF_HOUR - 10


def marketing_messages(account, start: int, end: int, as_of: float, campaigns=()) -> dict:
    """Marketing messages per half hour, as `waba:whatsapp_marketing_messages:sum` sums them."""
    from exporter.simulator.pricing import pricing_points
    from exporter.upstream.query import source_query
    from exporter.vocabulary import PRICING_ANALYTICS, SOURCES_BY_NAME

    query = source_query(SOURCES_BY_NAME[PRICING_ANALYTICS], start, end,
                         dimensions=("PRICING_CATEGORY",))
    counts: dict[int, int] = {}
    for point in pricing_points(account, query, as_of, campaigns=campaigns):
        if point["pricing_category"] in ("MARKETING", "MARKETING_LITE"):
            counts[point["start"]] = counts.get(point["start"], 0) + int(point["volume"])
    return counts


def test_the_message_spike_rule_fires_in_the_spike_scenario_only() -> None:
    # The alert's rule (prometheus/recording_rules.yml) applied to a week of demo traffic: every
    # half hour against the same half hour a week earlier, with the floor of 100.
    week = 7 * 86400
    end = BUCKET + HALF_HOUR_SECONDS
    start = end - 2 * week
    campaigns = demo_campaigns("marketing-spike", NOW)
    for account in DEMO_ACCOUNTS:
        for scenario in ("steady", "marketing-spike"):
            chosen = campaigns if scenario == "marketing-spike" else ()
            counts = marketing_messages(account, start, end, NOW, chosen)
            spiking = {b for b in range(start + week, end, HALF_HOUR_SECONDS)
                       if counts.get(b, 0) > max(3 * counts.get(b - week, 0), 100)}
            if scenario == "marketing-spike" and account == ACME:
                assert BUCKET in spiking  # the bucket the exporter reports at NOW
            else:
                assert not spiking, (account.name, scenario, sorted(spiking)[:3])


def test_the_delivery_rule_stays_silent_on_demo_traffic() -> None:
    from exporter.simulator.pricing import message_points
    from exporter.upstream.query import source_query
    from exporter.vocabulary import MESSAGE_ANALYTICS, SOURCES_BY_NAME

    end = BUCKET + HALF_HOUR_SECONDS
    query = source_query(SOURCES_BY_NAME[MESSAGE_ANALYTICS], end - 86400, end)
    for account in DEMO_ACCOUNTS:
        spike = demo_campaigns("marketing-spike", NOW)
        points = message_points(account, query, NOW, campaigns=spike)
        assert len(points) > 40  # a quiet half hour with nothing sent is left out
        assert any(p["sent"] >= 100 for p in points)
        assert all(p["delivered"] / p["sent"] >= 0.9 for p in points if p["sent"] >= 100)
