"""Conversation-only users see exactly what they saw before sources existed.

The golden files were written by the exporter as it was before `sources:` (at a fixed clock, with
the simulator's deterministic traffic): the request blob, and every line of the conversation
families on /metrics in both formats. The default config must still produce them byte for byte,
and enabling the other sources must not change one of those lines.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.pipeline.poller import build_query
from exporter.serve.render import OPENMETRICS, TEXT
from exporter.simulator import DEMO_ACCOUNTS, Simulator
from exporter.upstream.query import build_fields, query_window
from exporter.vocabulary import SOURCES
from tests.conftest import TEST_API_KEY

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_767_262_020.0
"""2026-01-01 10:07 UTC: the reported bucket is 09:00 (delay 30m)."""
CONVERSATION_FAMILIES = (
    "whatsapp_conversations",
    "whatsapp_conversations_bucket_start_timestamp_seconds",
    "whatsapp_conversations_observed",
)


def default_config(sim: Simulator) -> Config:
    targets = tuple(
        Target(name=a.name, customer_id=a.customer_id)
        if a.customer_id
        else Target(name=a.name, waba_id=a.waba_id)
        for a in DEMO_ACCOUNTS
    )
    return Config(
        splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url),
        targets=targets,
        poll=PollConfig(interval=60.0),
    )


def conversation_lines(body: bytes) -> str:
    """The HELP, TYPE and sample lines of the conversation families, in their order."""
    kept = []
    for line in body.decode().splitlines(keepends=True):
        words = line.split(" ", 3)
        name = words[2] if line.startswith("#") and len(words) > 2 else line.split("{")[0]
        name = name.split(" ")[0].removesuffix("_total")
        if name in CONVERSATION_FAMILIES:
            kept.append(line)
    return "".join(kept)


def render(config: Config) -> dict[str, str]:
    exporter = Exporter(config, clock=lambda: NOW)
    assert exporter.poll_all_once()
    out = {}
    for fmt in (TEXT, OPENMETRICS):
        pieces, _ = exporter.cache.body(fmt, gzip=False)
        out[fmt] = conversation_lines(b"".join(pieces))
    out["registry"] = conversation_lines(exporter.exposition())
    return out


@pytest.fixture
def fixed_simulator():
    with Simulator(api_key=TEST_API_KEY, clock=lambda: NOW) as sim:
        yield sim


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") and not path.exists():
        path.write_text(text, encoding="utf-8")  # written once, from the code before sources
    assert text == path.read_text(encoding="utf-8"), name


def test_the_default_config_serves_the_conversation_lines_of_before(fixed_simulator) -> None:
    rendered = render(default_config(fixed_simulator))
    assert rendered[TEXT].count("\n") > 100
    check_golden("conversations.prom", rendered[TEXT])
    check_golden("conversations.openmetrics", rendered[OPENMETRICS])
    assert rendered["registry"] == rendered[TEXT]


def test_other_sources_leave_the_conversation_lines_alone(fixed_simulator) -> None:
    everything = dataclasses.replace(
        default_config(fixed_simulator), sources=tuple(s.name for s in SOURCES)
    )
    rendered = render(everything)
    check_golden("conversations.prom", rendered[TEXT])
    check_golden("conversations.openmetrics", rendered[OPENMETRICS])


def test_the_default_config_serves_no_other_family(fixed_simulator) -> None:
    exporter = Exporter(default_config(fixed_simulator), clock=lambda: NOW)
    assert exporter.poll_all_once()
    pieces, _ = exporter.cache.body(TEXT, gzip=False)
    body = b"".join(pieces).decode()
    assert "whatsapp_pricing" not in body and "whatsapp_messages" not in body
    assert set(fixed_simulator.requests[0].fields) == {"conversation_analytics"}


def test_the_default_config_asks_what_it_asked_before(fixed_simulator) -> None:
    config = default_config(fixed_simulator)
    start, end = query_window(NOW, config.poll.lookback)
    blobs = [build_fields(build_query(config, target, start, end)) for target in config.targets]
    check_golden("conversation_requests.txt", "\n".join(blobs) + "\n")
