"""Meta's usage headers: the parser (pure, total), what the simulator sends, and the gauges."""

from __future__ import annotations

import json
import math
import time

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.simulator import DEMO_ACCOUNTS, Fault, Simulator
from exporter.upstream.query import AnalyticsQuery, waba_path
from exporter.upstream.usage import (
    APP_HEADER,
    BUSINESS_HEADER,
    MAX_HEADER_CHARS,
    MAX_PERCENT,
    MAX_REGAIN_MINUTES,
    Usage,
    parse_usage,
)
from tests.conftest import TEST_API_KEY, parse_metrics

ACME, GLOBEX = DEMO_ACCOUNTS[0], DEMO_ACCOUNTS[1]

# -- the parser --------------------------------------------------------------------------------


def test_meta_examples() -> None:
    business = {
        ACME.waba_id: [
            {
                "type": "whatsapp_business_management",
                "call_count": 95,
                "total_cputime": 20,
                "total_time": 35,
                "estimated_time_to_regain_access": 7,
            }
        ]
    }
    usage = parse_usage(
        {
            APP_HEADER: '{"call_count": 28, "total_time": 25.5, "total_cputime": 12}',
            BUSINESS_HEADER: json.dumps(business),
        }
    )
    assert usage.percent == {
        ("app", "call_count"): 28.0,
        ("app", "total_cputime"): 12.0,
        ("app", "total_time"): 25.5,
        ("business_use_case", "call_count"): 95.0,
        ("business_use_case", "total_cputime"): 20.0,
        ("business_use_case", "total_time"): 35.0,
    }
    assert usage.regain_access_seconds == 420.0
    assert usage


def test_the_highest_entry_of_the_business_header_counts() -> None:
    business = {
        "1": [{"type": "a", "call_count": 10, "estimated_time_to_regain_access": 0}],
        "2": [{"type": "b", "call_count": 70}, {"type": "c", "call_count": 40}],
        "3": {"call_count": 50, "estimated_time_to_regain_access": 3},  # not wrapped in a list
    }
    usage = parse_usage({BUSINESS_HEADER: json.dumps(business)})
    assert usage.percent == {("business_use_case", "call_count"): 70.0}
    assert usage.regain_access_seconds == 180.0


def test_not_throttled_is_zero_and_silence_is_none() -> None:
    zero = parse_usage({BUSINESS_HEADER: '{"1": [{"estimated_time_to_regain_access": 0}]}'})
    assert zero.regain_access_seconds == 0.0 and zero
    assert parse_usage({APP_HEADER: '{"call_count": 3}'}).regain_access_seconds is None
    assert not parse_usage({})
    assert parse_usage({}) == Usage()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not json",
        "[]",
        "null",
        '"call_count"',
        "[1, 2",
        '{"call_count": true}',
        '{"call_count": "25"}',
        '{"call_count": -1}',
        '{"call_count": NaN}',
        '{"call_count": Infinity}',
        '{"call_count": 1e400}',
        '{"call_count": ' + "9" * 5000 + "}",  # past Python's digit limit
        '{"call_count": ' + str(10**300) + "}",  # an int too big for a float
        '{"call_count": [50]}',
        '{"call_count": {"x": 50}}',
        '{"call_count": ' + str(MAX_PERCENT + 1) + "}",
        "[" * 100000 + "]" * 100000,
        "[" * 8000 + "]" * 8000,  # within the length limit, too deep for the decoder
        '{"call_count": 5, "pad": "' + "x" * MAX_HEADER_CHARS + '"}',  # too long a header
        "\ud800",
    ],
)
def test_junk_gives_nothing(value: str) -> None:
    for header in (APP_HEADER, BUSINESS_HEADER):
        wrapped = value if header == APP_HEADER else value.replace("{", '{"1": [{', 1) + "]}"
        assert not parse_usage({header: value})
        assert parse_usage({header: wrapped}).percent == {}


def test_one_bad_field_leaves_the_others() -> None:
    usage = parse_usage(
        {APP_HEADER: '{"call_count": "lots", "total_cputime": 12, "total_time": null}'}
    )
    assert usage.percent == {("app", "total_cputime"): 12.0}
    week = MAX_REGAIN_MINUTES
    too_long = parse_usage({APP_HEADER: f'{{"estimated_time_to_regain_access": {week + 1}}}'})
    assert too_long.regain_access_seconds is None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "call_count",
                    "total_cputime",
                    "total_time",
                    "estimated_time_to_regain_access",
                    "1",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _header_value(draw_json: object) -> str:
    return json.dumps(draw_json, allow_nan=True)


@given(
    st.dictionaries(
        st.sampled_from([APP_HEADER, BUSINESS_HEADER, "Other"]),
        st.one_of(st.text(max_size=200), JSON.map(_header_value)),
        max_size=3,
    )
)
def test_any_header_values_give_valid_numbers_or_nothing(headers: dict[str, str]) -> None:
    usage = parse_usage(headers)
    for (usage_type, measure), percent in usage.percent.items():
        assert usage_type in ("app", "business_use_case")
        assert measure in ("call_count", "total_cputime", "total_time")
        assert type(percent) is float and math.isfinite(percent) and 0 <= percent <= MAX_PERCENT
    seconds = usage.regain_access_seconds
    if seconds is not None:
        assert type(seconds) is float and 0 <= seconds <= MAX_REGAIN_MINUTES * 60


# -- what the simulator sends ------------------------------------------------------------------


def _get(sim: Simulator, waba_id: str = ACME.waba_id, key: str = TEST_API_KEY) -> requests.Response:
    from exporter.upstream.query import build_fields

    now = int(time.time()) - 60
    query = AnalyticsQuery(start=now - 3600, end=now)
    return requests.get(
        sim.url + waba_path("v25.0", waba_id),
        params={"fields": build_fields(query)},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_the_simulator_counts_calls_against_the_hourly_budget(simulator: Simulator) -> None:
    for _ in range(4):
        usage = parse_usage(_get(simulator).headers)
    # 4 calls of the 200 an hour a WABA may make: 2 %; the app's budget spans all 4 accounts.
    assert usage.percent[("business_use_case", "call_count")] == 2
    assert usage.percent[("app", "call_count")] == 4 * 100 // (200 * len(DEMO_ACCOUNTS))
    assert usage.regain_access_seconds == 0
    assert set(usage.percent) == {
        (t, m)
        for t in ("app", "business_use_case")
        for m in ("call_count", "total_cputime", "total_time")
    }
    other = parse_usage(_get(simulator, GLOBEX.waba_id).headers)
    assert other.percent[("business_use_case", "call_count")] == 0  # 1 call: its own budget


def test_faults_push_usage_up_and_refusals_carry_none(simulator: Simulator) -> None:
    calm = parse_usage(_get(simulator).headers).percent
    simulator.set_fault(Fault.slow(0.01), times=1)
    slow = parse_usage(_get(simulator).headers).percent
    assert (
        slow[("business_use_case", "total_time")] >= calm[("business_use_case", "total_time")] + 50
    )
    simulator.set_fault(Fault.status(502), times=1)
    failed = parse_usage(_get(simulator).headers).percent
    assert failed[("business_use_case", "total_cputime")] >= 20
    simulator.set_fault(Fault.graph_error(80007, regain_minutes=12), times=1)
    throttled = parse_usage(_get(simulator).headers)
    assert throttled.percent[("business_use_case", "call_count")] >= 100
    assert throttled.regain_access_seconds == 720
    simulator.set_fault(Fault.graph_error(4), times=1)
    app_limited = parse_usage(_get(simulator).headers)
    assert app_limited.percent[("app", "call_count")] >= 100
    assert app_limited.percent[("business_use_case", "call_count")] < 100
    assert not parse_usage(_get(simulator, key="wrong-key").headers), "401: never reached Meta"


# -- the gauges --------------------------------------------------------------------------------


def _usage_samples(exporter: Exporter) -> dict[tuple[str, ...], float]:
    families = parse_metrics(exporter.exposition().decode())
    samples = {
        (s.labels["waba_name"], s.labels["type"], s.labels["measure"]): s.value
        for s in families["whatsapp_exporter_api_usage_percent"].samples
    }
    for s in families["whatsapp_exporter_api_regain_access_seconds"].samples:
        samples[(s.labels["waba_name"], "regain")] = s.value
    return samples


def test_usage_becomes_gauges_per_target(simulator: Simulator) -> None:
    config = Config(
        splashify=SplashifyConfig(
            api_key=Secret(TEST_API_KEY), base_url=simulator.url, max_retries=0
        ),
        targets=(Target(name="acme", waba_id=ACME.waba_id), Target("globex", GLOBEX.waba_id)),
        poll=PollConfig(interval=300),
    )
    exporter = Exporter(config)
    assert exporter.poll_all_once()
    for _ in range(3):
        exporter.pollers[0].poll()
    exporter.cache.refresh()
    samples = _usage_samples(exporter)
    # Read back independently: what the simulator's last answer to each said.
    assert samples[("acme", "business_use_case", "call_count")] == 4 * 100 // 200
    assert samples[("globex", "business_use_case", "call_count")] == 0
    assert samples[("acme", "regain")] == 0 and samples[("globex", "regain")] == 0

    simulator.set_fault(
        Fault.rate_limited(retry_after="900", regain_minutes=15), waba_id=GLOBEX.waba_id
    )
    assert not exporter.pollers[1].poll()
    exporter.cache.refresh()
    samples = _usage_samples(exporter)
    assert samples[("globex", "business_use_case", "call_count")] == 100
    assert 0 < samples[("globex", "regain")] <= 900, "counts down from 15 minutes"
    assert samples[("acme", "regain")] == 0

    # A removed target's usage series go with it.
    exporter.reload(
        Config(splashify=config.splashify, targets=config.targets[:1], poll=config.poll)
    )
    assert {key[0] for key in _usage_samples(exporter)} == {"acme"}
