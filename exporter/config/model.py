"""The config as typed, frozen objects: what every other stage of the exporter reads.

Nothing downstream sees the raw YAML; `exporter.config.build` turns it into these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from exporter.vocabulary import (
    CONVERSATION_ANALYTICS,
    DIMENSIONS,
    MESSAGE_ANALYTICS,
    PRICING_ANALYTICS,
    PRICING_DIMENSIONS,
    Layout,
)


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(Exception):
    """A config problem, as one line: `<place>: <what is wrong>`."""

    def __init__(self, place: str, message: str) -> None:
        super().__init__(f"{place}: {message}" if place else message)
        self.place = place
        self.message = message


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


DEFAULT_TIMEOUT_SECONDS = 10.0
"""`splashify.timeout` when unset, unless `poll.interval` is shorter (Prometheus's
`scrape_timeout` rule)."""


@dataclass(frozen=True, slots=True)
class SplashifyConfig:
    api_key: Secret = field(repr=False)
    base_url: str = "https://api.splashifypro.com"
    api_version: str = "v25.0"
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = 4
    max_concurrency: int = 8
    requests_per_second: float = 10.0


@dataclass(frozen=True, slots=True)
class PollConfig:
    interval: float = 300.0
    lookback: float = 6 * 3600.0
    delay: float = 1800.0
    stale_after: float = 3600.0
    """A target's data series are dropped once its last success is older than this."""


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """How much one answer may bring; beyond it, the poll fails with `limit_exceeded`."""

    max_series_per_target: int = 50_000
    """Label sets in one answer (as Prometheus's `sample_limit` bounds a scrape)."""
    max_response_bytes: int = 64 << 20
    """Bytes of one answer, decoded (after gzip)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Passed through to the API; an empty tuple means "not filtered"."""

    conversation_categories: tuple[str, ...] = ()
    conversation_types: tuple[str, ...] = ()
    conversation_directions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PricingFilters:
    """`pricing.filters`, passed through to `pricing_analytics`; empty means "not filtered"."""

    pricing_categories: tuple[str, ...] = ()
    pricing_types: tuple[str, ...] = ()
    country_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """The `pricing:` block: how `pricing_analytics` is broken down and filtered."""

    dimensions: tuple[str, ...] = tuple(d.api_name for d in PRICING_DIMENSIONS)
    filters: PricingFilters = PricingFilters()


@dataclass(frozen=True, slots=True)
class MessagesFilters:
    """`messages.filters`, passed through to the message `analytics` field."""

    country_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessagesConfig:
    """The `messages:` block (message analytics have no dimensions)."""

    filters: MessagesFilters = MessagesFilters()


@dataclass(frozen=True, slots=True)
class Target:
    """One WABA (`waba_id`) or one partner customer (`customer_id`): exactly one is set."""

    name: str
    waba_id: str | None = None
    customer_id: str | None = None
    phone_numbers: tuple[str, ...] = ()

    @property
    def upstream_id(self) -> str:
        """The id that goes into the request path."""
        return self.waba_id if self.waba_id is not None else str(self.customer_id)


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen_address: ListenAddress = ListenAddress("0.0.0.0", 9477)


@dataclass(frozen=True, slots=True)
class Shard:
    """Replica `index` of `total` (counted from 0); the default 0/1 owns every target."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        # Booleans are ints to Python, but `true/2` is a mistake, not shard 1.
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (self.index, self.total)):
            raise ValueError(f"index and total must be integers, got {self.index!r}/{self.total!r}")
        if self.total < 1:
            raise ValueError(f"TOTAL must be at least 1, got {self}")
        if not 0 <= self.index < self.total:
            raise ValueError(
                f"INDEX must be from 0 to TOTAL - 1 (shards count from 0: 0/2 and 1/2), got {self}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"

    @property
    def is_everything(self) -> bool:
        """True for the one shard of a single replica (nothing is filtered)."""
        return self.total == 1


DEFAULT_SOURCES = (CONVERSATION_ANALYTICS,)
"""What `sources:` left unset means: conversation analytics alone, as before sources."""


@dataclass(frozen=True, slots=True)
class Config:
    splashify: SplashifyConfig
    targets: tuple[Target, ...]
    poll: PollConfig = PollConfig()
    dimensions: tuple[str, ...] = tuple(d.api_name for d in DIMENSIONS)
    filters: Filters = Filters()
    web: WebConfig = WebConfig()
    limits: LimitsConfig = LimitsConfig()
    shard: Shard = Shard()
    """As loaded, `targets` holds every target; `sharding.shard_config()` keeps this shard's."""
    sources: tuple[str, ...] = DEFAULT_SOURCES
    """The enabled sources, in vocabulary.SOURCES order. Top-level `dimensions` and `filters`
    are conversation_analytics's."""
    pricing: PricingConfig = PricingConfig()
    messages: MessagesConfig = MessagesConfig()

    @property
    def layout(self) -> Layout:
        """The enabled sources with their enabled dimensions."""
        return Layout(tuple((name, self.source_dimensions(name)) for name in self.sources))

    def source_dimensions(self, name: str) -> tuple[str, ...]:
        """The dimensions (API names) source `name` is configured with, enabled or not."""
        dimensions = {
            CONVERSATION_ANALYTICS: self.dimensions,
            PRICING_ANALYTICS: self.pricing.dimensions,
            MESSAGE_ANALYTICS: (),
        }
        return dimensions[name]

    def source_filters(self, name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(filter modifier, values) of source `name`, as the config sets them (empty values:
        not filtered)."""
        by_source: dict[str, Filters | PricingFilters | MessagesFilters] = {
            CONVERSATION_ANALYTICS: self.filters,
            PRICING_ANALYTICS: self.pricing.filters,
            MESSAGE_ANALYTICS: self.messages.filters,
        }
        filters = by_source[name]
        return tuple((f.name, getattr(filters, f.name)) for f in fields(filters))
