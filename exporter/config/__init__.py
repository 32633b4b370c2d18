"""The config: read once at start (and on reload) into typed, frozen objects.

`model` holds the objects every other stage reads; `build` turns a YAML file into them, with
`yamlfile` (strict YAML), `expand` (`${VAR}`) and `values` (one parser per kind of value).
"""

from exporter.config.build import load_config, parse_config
from exporter.config.model import (
    Config,
    ConfigError,
    Filters,
    LimitsConfig,
    ListenAddress,
    MessagesConfig,
    MessagesFilters,
    PollConfig,
    PricingConfig,
    PricingFilters,
    Secret,
    Shard,
    SplashifyConfig,
    Target,
    WebConfig,
)
from exporter.config.values import parse_duration, parse_listen_address

__all__ = [
    "Config",
    "ConfigError",
    "Filters",
    "LimitsConfig",
    "ListenAddress",
    "MessagesConfig",
    "MessagesFilters",
    "PollConfig",
    "PricingConfig",
    "PricingFilters",
    "Secret",
    "Shard",
    "SplashifyConfig",
    "Target",
    "WebConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen_address",
]
