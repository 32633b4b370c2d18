"""The shipped config.example.yaml: it loads, says what it claims, and passes --check-config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from exporter.config import Config, Secret, SplashifyConfig, Target, load_config
from tests.conftest import run_exporter

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
ENV = {"SPLASHIFY_API_KEY": "sk_live_0123456789abcdef"}


def test_the_shipped_example_loads_to_the_defaults_plus_its_example_targets() -> None:
    config = load_config(EXAMPLE, ENV)
    # Every value it shows is a default ("values shown are the defaults unless marked
    # example"); only the targets are an example.
    defaults = Config(
        splashify=SplashifyConfig(api_key=Secret(ENV["SPLASHIFY_API_KEY"])),
        targets=(
            Target(name="acme", waba_id="115344761664057", phone_numbers=("912240289385",)),
            Target(name="globex", customer_id="cus_8f2a"),
        ),
    )
    assert config == defaults
    assert dataclasses.replace(config, targets=()) == dataclasses.replace(defaults, targets=())


def test_the_shipped_example_passes_check_config() -> None:
    result = run_exporter("--config", str(EXAMPLE), "--check-config", env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: 2 target(s) (acme, globex)")
