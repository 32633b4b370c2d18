"""The config rules of the hostile-upstream work: limits, the timeout rule, the key's length."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, LimitsConfig, parse_config

KEY = "pk_live_0123456789"


def parse(**sections: object):
    raw: dict = {"splashify": {"api_key": KEY}, "targets": [{"waba_id": "1"}]}
    for name, section in sections.items():
        if name == "splashify":
            raw["splashify"].update(section)  # type: ignore[arg-type]
        else:
            raw[name] = section
    return parse_config(raw, {})


def error(**sections: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(**sections)
    return str(caught.value)


def test_limits_default_to_the_documented_values() -> None:
    assert parse().limits == LimitsConfig(max_series_per_target=50_000, max_response_bytes=64 << 20)
    assert parse(limits=None).limits == LimitsConfig()


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("2048", 2048),
        ("64MiB", 64 << 20),
        ("64 MiB", 64 << 20),
        ("10MB", 10_000_000),
        ("512KiB", 512 << 10),
        ("1GiB", 1 << 30),
        ("3KB", 3000),
        ("4096B", 4096),
    ],
)
def test_max_response_bytes_takes_bytes_or_a_size(value: object, size: int) -> None:
    assert parse(limits={"max_response_bytes": value}).limits.max_response_bytes == size


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_response_bytes": "64XB"},
         'limits.max_response_bytes: not a size: "64XB" (bytes, or e.g. 64MiB, 10MB)'),
        ({"max_response_bytes": "64mib"},
         'limits.max_response_bytes: not a size: "64mib" (bytes, or e.g. 64MiB, 10MB)'),
        ({"max_response_bytes": 1.5},
         "limits.max_response_bytes: not a size: 1.5 (bytes, or e.g. 64MiB, 10MB)"),
        ({"max_response_bytes": True},
         "limits.max_response_bytes: not a size: true (bytes, or e.g. 64MiB, 10MB)"),
        ({"max_response_bytes": 100}, "limits.max_response_bytes: must be at least 1KiB, got 100"),
        ({"max_series_per_target": 0}, "limits.max_series_per_target: must be at least 1, got 0"),
        ({"max_series_per_target": "many"},
         'limits.max_series_per_target: expected an integer, got "many"'),
        ({"max_series": 10},
         "unknown key limits.max_series (one of max_series_per_target, max_response_bytes)"),
    ],
)
def test_bad_limits_are_one_line_naming_the_place(limits: dict, message: str) -> None:
    assert error(limits=limits) == message


def test_the_timeout_follows_prometheus_scrape_timeout_rule() -> None:
    # Unset: the shorter of 10s and the interval.
    assert parse(poll={"interval": "5s", "lookback": "6h"}).splashify.timeout == 5
    assert parse(poll={"interval": "1m"}).splashify.timeout == 10
    # Set: up to the interval, equal included.
    assert parse(splashify={"timeout": "5s"}, poll={"interval": "5s"}).splashify.timeout == 5
    assert error(splashify={"timeout": "6s"}, poll={"interval": "5s"}) == (
        "splashify.timeout: must not be longer than poll.interval (5s), "
        "or one request could outlast a whole poll cycle"
    )


@pytest.mark.parametrize("key", ["k", "a", "1234567", "${K}"])
def test_a_key_shorter_than_8_characters_is_refused(key: str) -> None:
    raw = {"splashify": {"api_key": key}, "targets": [{"waba_id": "1"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"K": "x1y2z3"})
    message = str(caught.value)
    assert message == (
        "splashify.api_key: too short for an API key: at least 8 characters (value not shown)"
    )
    assert "\n" not in message


def test_a_key_of_8_characters_is_taken() -> None:
    assert parse(splashify={"api_key": "12345678"}).splashify.api_key.reveal() == "12345678"
