"""`--demo`: a config that points at the simulator, with every demo account as a target."""

from __future__ import annotations

import time

from exporter.config import ListenAddress
from exporter.demo import DEMO_POLL_INTERVAL, demo_config, start_demo_simulator
from exporter.simulator import DEMO_ACCOUNTS
from exporter.upstream.client import SplashifyClient
from exporter.upstream.ratelimit import RequestLimiter


def test_the_demo_config_targets_every_account_by_its_route() -> None:
    simulator = start_demo_simulator()
    try:
        config = demo_config(simulator, ListenAddress("127.0.0.1", 0))
        assert config.splashify.base_url == simulator.url
        assert config.splashify.api_key.reveal() == simulator.api_key
        assert config.poll.interval == DEMO_POLL_INTERVAL
        assert config.web.listen_address == ListenAddress("127.0.0.1", 0)
        assert [t.name for t in config.targets] == [a.name for a in DEMO_ACCOUNTS]
        for target, account in zip(config.targets, DEMO_ACCOUNTS, strict=True):
            if account.customer_id:
                assert (target.customer_id, target.waba_id) == (account.customer_id, None)
            else:
                assert (target.waba_id, target.customer_id) == (account.waba_id, None)
        assert any(t.customer_id for t in config.targets), "the demo shows both routes"
    finally:
        simulator.stop()


def test_the_demo_key_is_accepted_by_the_simulator() -> None:
    from exporter.pipeline.poller import build_query

    simulator = start_demo_simulator()
    try:
        config = demo_config(simulator, ListenAddress("127.0.0.1", 0))
        client = SplashifyClient(config.splashify, RequestLimiter(1, 100))
        target = config.targets[0]
        now = int(time.time()) // 1800 * 1800
        body = client.fetch(target, build_query(config, target, now - 3 * 3600, now), 1e12)
        assert isinstance(body, dict) and body["id"] == DEMO_ACCOUNTS[0].waba_id
        assert body["conversation_analytics"]["data"][0]["data_points"]
    finally:
        simulator.stop()
