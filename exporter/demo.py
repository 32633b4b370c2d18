"""`--demo`: the built-in simulated Splashify API on loopback, and a config pointing at it."""

from __future__ import annotations

import time

from exporter.config import (
    Config,
    ListenAddress,
    PollConfig,
    Secret,
    SplashifyConfig,
    Target,
    WebConfig,
)
from exporter.simulator import DEMO_ACCOUNTS, Simulator
from exporter.simulator.traffic import Campaign
from exporter.upstream.query import align_down
from exporter.vocabulary import SOURCES

DEMO_POLL_INTERVAL = 30.0
"""Faster than the default 5m so that a newcomer sees polls happen; the simulator has no budget."""

# Recent buckets are revised upward for a while after they end, as Meta's are; with the default
# poll.delay of 30m no provisional count ever reaches /metrics, which is what the delay is for.
DEMO_LATE_SECONDS = 1800.0
DEMO_LATE_FRACTION = 0.15


DEMO_SCENARIOS = ("steady", "marketing-spike")
"""`--demo.scenario`: `steady` is the everyday traffic; `marketing-spike` adds a campaign to the
first demo account (acme-india) that started 3 hours before the simulator did and lasts 12
hours, so that WhatsAppMarketingConversationSpike fires (given last week's history, e.g. from
`whatsapp-exporter backfill --demo`) while the other accounts stay quiet."""

SPIKE_EXTRA_PER_HALF_HOUR = 1000.0
"""Extra marketing conversations per half hour in the spike: far above the alert's floor and
several times any account's normal marketing volume, at any time of day."""
SPIKE_LEAD_SECONDS = 3 * 3600
SPIKE_LENGTH_SECONDS = 12 * 3600


def demo_campaigns(scenario: str, now: float) -> tuple[Campaign, ...]:
    """The campaigns of a demo scenario, placed relative to `now`."""
    if scenario == "steady":
        return ()
    if scenario == "marketing-spike":
        start = align_down(now) - SPIKE_LEAD_SECONDS
        return (
            Campaign(
                waba_id=DEMO_ACCOUNTS[0].waba_id,
                start=start,
                end=start + SPIKE_LENGTH_SECONDS,
                extra_per_half_hour=SPIKE_EXTRA_PER_HALF_HOUR,
            ),
        )
    raise ValueError(f"unknown demo scenario {scenario!r} (one of {', '.join(DEMO_SCENARIOS)})")


def start_demo_simulator(scenario: str = "steady") -> Simulator:
    return Simulator(
        late_seconds=DEMO_LATE_SECONDS,
        late_fraction=DEMO_LATE_FRACTION,
        campaigns=demo_campaigns(scenario, time.time()),
    ).start()


def demo_config(simulator: Simulator, listen_address: ListenAddress) -> Config:
    """Every demo account as a target: the WABAs by id, the partner customer by customer id;
    every source enabled."""
    targets = tuple(
        Target(name=account.name, customer_id=account.customer_id)
        if account.customer_id
        else Target(name=account.name, waba_id=account.waba_id)
        for account in DEMO_ACCOUNTS
    )
    return Config(
        splashify=SplashifyConfig(api_key=Secret(simulator.api_key), base_url=simulator.url),
        targets=targets,
        poll=PollConfig(interval=DEMO_POLL_INTERVAL),
        web=WebConfig(listen_address=listen_address),
        sources=tuple(source.name for source in SOURCES),
    )
