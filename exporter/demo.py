"""`--demo`: the built-in simulated Splashify API on loopback, and a config pointing at it."""

from __future__ import annotations

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

DEMO_POLL_INTERVAL = 30.0
"""Faster than the default 5m so that a newcomer sees polls happen; the simulator has no budget."""

# Recent buckets are revised upward for a while after they end, as Meta's are; with the default
# poll.delay of 30m no provisional count ever reaches /metrics, which is what the delay is for.
DEMO_LATE_SECONDS = 1800.0
DEMO_LATE_FRACTION = 0.15


def start_demo_simulator() -> Simulator:
    return Simulator(late_seconds=DEMO_LATE_SECONDS, late_fraction=DEMO_LATE_FRACTION).start()


def demo_config(simulator: Simulator, listen_address: ListenAddress) -> Config:
    """Every demo account as a target: the WABAs by id, the partner customer by customer id."""
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
    )
