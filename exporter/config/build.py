"""The config file, parsed once into typed frozen objects.

Nothing downstream reads the raw YAML: `load_config()` either returns a `Config` or raises
`ConfigError` with one line that names the place (`targets[1].waba_id: required`).

Rules that apply everywhere:

- A key set to null (`poll:` with everything below commented out) counts as not set, so the
  default applies.
- `${VAR}` in any string value expands from the environment; an unset variable is an error, and
  so is a `${` that does not start a well-formed `${NAME}`.
- Numbers may also come as strings (`max_retries: "4"`), because `${VAR}` only yields strings.
- The API key never appears in a message: the checks on it say what is wrong, not what it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from exporter.config import values
from exporter.config.expand import Expander
from exporter.config.model import (
    DEFAULT_SOURCES,
    DEFAULT_TIMEOUT_SECONDS,
    Config,
    ConfigError,
    Filters,
    LimitsConfig,
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
from exporter.config.yamlfile import read_yaml
from exporter.vocabulary import (
    COUNTRY_CODES,
    DIMENSIONS_BY_NAME,
    FILTER_VALUES,
    HALF_HOUR_SECONDS,
    HISTORY_SECONDS,
    PRICING_ANALYTICS,
    PRICING_DIMENSIONS,
    PRICING_FILTER_VALUES,
    SOURCES,
    SOURCES_BY_NAME,
)

_T = TypeVar("_T")


# Field parsers take a value whose `${VAR}`s are already expanded, and the place it came from.
_FieldParser = Callable[[object, str], object]


# The keys each mapping may hold, in the order docs/contract.md lists them ("" is the top level).
_KEYS: dict[str, tuple[str, ...]] = {
    "": (
        "splashify",
        "poll",
        "dimensions",
        "filters",
        "sources",
        "pricing",
        "messages",
        "targets",
        "web",
        "shard",
        "limits",
    ),
    "splashify": (
        "base_url",
        "api_version",
        "api_key",
        "api_key_file",
        "timeout",
        "max_retries",
        "max_concurrency",
        "requests_per_second",
    ),
    "poll": ("interval", "lookback", "delay", "stale_after"),
    "filters": tuple(FILTER_VALUES),
    "target": ("waba_id", "customer_id", "name", "phone_numbers"),
    "web": ("listen_address",),
    "shard": ("index", "total"),
    "pricing": ("dimensions", "filters"),
    "pricing.filters": SOURCES_BY_NAME[PRICING_ANALYTICS].filters,
    "messages": ("filters",),
    "messages.filters": (COUNTRY_CODES,),
    "limits": ("max_series_per_target", "max_response_bytes"),
}


_ALL_DIMENSIONS = tuple(DIMENSIONS_BY_NAME)


_ALL_PRICING_DIMENSIONS = tuple(d.api_name for d in PRICING_DIMENSIONS)


_ALL_SOURCES = tuple(source.name for source in SOURCES)


_MIN_INTERVAL_SECONDS = 1.0


# Printable ASCII without space: anything else cannot travel in an HTTP header unmangled.
_API_KEY = re.compile(r"[!-~]+")
_MIN_API_KEY_LENGTH = 8
"""Shorter is no real key, and redacting it would garble ordinary words in every log line."""


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at `path`.

    `environ` feeds `${VAR}` (default: the process environment); a relative `api_key_file` is
    read from the config file's folder.
    """
    name = os.fspath(path)
    raw = read_yaml(name)
    return parse_config(raw, os.environ if environ is None else environ, Path(name).parent)


def parse_config(raw: object, environ: Mapping[str, str], base_dir: Path | None = None) -> Config:
    """Validate the output of `yaml.safe_load` into a `Config`.

    `base_dir` anchors a relative `api_key_file` (None: the working directory).
    """
    if raw is None:
        raise ConfigError("", "the config is empty")
    if not isinstance(raw, dict):
        # Only the kind: a file holding just the API key must not be echoed.
        raise ConfigError("", f"the top level must be a mapping, got {values.kind(raw)}")
    expander = Expander(environ)
    try:
        return _Parser(expander, base_dir).config(raw)
    except ConfigError as error:
        raise expander.redact(error) from None


class _Parser:
    """Walks the raw tree section by section; holds what `${VAR}` and `api_key_file` need."""

    def __init__(self, expander: Expander, base_dir: Path | None) -> None:
        self._expander = expander
        self._base_dir = base_dir

    def config(self, raw: dict[object, object]) -> Config:
        top = values.section(raw, "", _KEYS[""])
        config = Config(
            splashify=self._splashify(top.get("splashify")),
            poll=self._poll(top.get("poll")),
            dimensions=self._dimensions(top.get("dimensions")),
            filters=self._filters(top.get("filters")),
            targets=self._targets(top.get("targets")),
            web=self._web(top.get("web")),
            shard=self._shard(top.get("shard")),
            sources=self._sources(top.get("sources")),
            pricing=self._pricing(top.get("pricing")),
            messages=self._messages(top.get("messages")),
            limits=self._limits(top.get("limits")),
        )
        # Prometheus's rule for scrape_timeout: unset, the shorter of the default and the
        # interval; set, never longer than the interval (equal is fine).
        raw_splashify = top.get("splashify")
        if not isinstance(raw_splashify, dict) or raw_splashify.get("timeout") is None:
            timeout = min(DEFAULT_TIMEOUT_SECONDS, config.poll.interval)
            config = replace(config, splashify=replace(config.splashify, timeout=timeout))
        elif config.splashify.timeout > config.poll.interval:
            raise ConfigError(
                "splashify.timeout",
                f"must not be longer than poll.interval ({config.poll.interval:g}s), "
                "or one request could outlast a whole poll cycle",
            )
        return config

    def _get(
        self, section: dict[str, object], place: str, key: str, parse: Callable[[object, str], _T]
    ) -> _T | None:
        """The parsed value of `key` in the mapping at `place`, or None when it is not set."""
        raw = section.get(key)
        if raw is None:
            return None
        key_place = values.join(place, key)
        return parse(self._expander.expand(raw, key_place), key_place)

    def _fields(
        self, section: dict[str, object], place: str, parsers: Mapping[str, _FieldParser]
    ) -> dict[str, Any]:
        """The keys of `section` that are set, parsed, for dataclasses.replace()."""
        parsed = {key: self._get(section, place, key, parse) for key, parse in parsers.items()}
        return {key: value for key, value in parsed.items() if value is not None}

    def _items(
        self, raw: object, place: str, parse: Callable[[object, str], _T]
    ) -> list[tuple[str, _T]]:
        """(place, parsed value) of each item of the list at `place`."""
        if not isinstance(raw, list):
            raise values.wrong_type(place, "a list", raw)
        parsed: list[tuple[str, _T]] = []
        for index, item in enumerate(raw):
            item_place = f"{place}[{index}]"
            parsed.append((item_place, parse(self._expander.expand(item, item_place), item_place)))
        return parsed

    def _splashify(self, raw: object) -> SplashifyConfig:
        section = values.section(raw, "splashify", _KEYS["splashify"])
        defaults = SplashifyConfig(api_key=self._api_key(section))
        return replace(defaults, **self._fields(section, "splashify", _SPLASHIFY_FIELDS))

    def _api_key(self, section: dict[str, object]) -> Secret:
        if section.get("api_key") is not None and section.get("api_key_file") is not None:
            raise ConfigError("splashify", "set api_key or api_key_file, not both")
        key = self._get(section, "splashify", "api_key", values.secret_string)
        place = "splashify.api_key"
        if key is None:
            key = self._get(section, "splashify", "api_key_file", self._read_key_file)
            place = "splashify.api_key_file"
        if key is None:
            raise ConfigError("splashify.api_key", "required (or splashify.api_key_file)")
        # Editors and `echo` leave a trailing newline in key files and variables.
        key = key.strip()
        if not key:
            raise ConfigError(place, "resolves to an empty value")
        if not _API_KEY.fullmatch(key):
            raise ConfigError(
                place, "holds whitespace or characters outside printable ASCII (value not shown)"
            )
        if len(key) < _MIN_API_KEY_LENGTH:
            raise ConfigError(
                place,
                f"too short for an API key: at least {_MIN_API_KEY_LENGTH} characters "
                "(value not shown)",
            )
        return Secret(key)

    def _read_key_file(self, value: object, place: str) -> str:
        name = values.nonempty(value, place)
        path = Path(name) if self._base_dir is None else self._base_dir / name
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
            raise ConfigError(
                place, f"cannot read {values.show(str(path))}: {values.reason(exc)}"
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # `from None`: the decode error carries the file's bytes, i.e. the key.
            raise ConfigError(place, f"{values.show(str(path))} is not UTF-8 text") from None

    def _poll(self, raw: object) -> PollConfig:
        section = values.section(raw, "poll", _KEYS["poll"])
        fields = self._fields(section, "poll", _POLL_FIELDS)
        if "stale_after" not in fields:
            # Three missed polls, and never under an hour: long intervals need no extra key.
            defaults = PollConfig()
            interval = cast(float, fields.get("interval", defaults.interval))
            fields["stale_after"] = max(defaults.stale_after, 3 * interval)
        poll = replace(PollConfig(), **fields)
        if poll.interval < _MIN_INTERVAL_SECONDS:
            raise ConfigError("poll.interval", "must be at least 1s")
        if poll.stale_after <= poll.interval:
            raise ConfigError(
                "poll.stale_after",
                f"must be longer than poll.interval ({poll.interval:g}s), "
                "or data would be dropped between two good polls",
            )
        if poll.lookback > HISTORY_SECONDS:
            raise ConfigError(
                "poll.lookback", "must be at most 365d, the history the upstream keeps"
            )
        # A bucket is complete `delay` after it ends and leaves the window `lookback` after it
        # starts; a poll must fall in between, even just after missing it by a hair.
        needed = poll.interval + poll.delay + HALF_HOUR_SECONDS
        if poll.lookback < needed:
            raise ConfigError(
                "poll.lookback",
                f"must be at least poll.interval + poll.delay + 30m ({needed:g}s), "
                "or a bucket can complete and leave the window between two polls",
            )
        return poll

    def _dimensions(self, raw: object) -> tuple[str, ...]:
        if raw is None:
            return _ALL_DIMENSIONS
        return self._choices(raw, "dimensions", _ALL_DIMENSIONS, "dimension")

    def _filters(self, raw: object) -> Filters:
        section = values.section(raw, "filters", _KEYS["filters"])
        chosen = {
            key: self._choices(section[key], f"filters.{key}", values, "value")
            for key, values in FILTER_VALUES.items()
            if section.get(key) is not None
        }
        return replace(Filters(), **chosen)

    def _sources(self, raw: object) -> tuple[str, ...]:
        if raw is None:
            return DEFAULT_SOURCES
        chosen = self._choices(raw, "sources", _ALL_SOURCES, "source")
        if not chosen:
            raise ConfigError("sources", "must list at least one source")
        return chosen

    def _pricing(self, raw: object) -> PricingConfig:
        section = values.section(raw, "pricing", _KEYS["pricing"])
        pricing = PricingConfig()
        if section.get("dimensions") is not None:
            dimensions = self._choices(
                section["dimensions"], "pricing.dimensions", _ALL_PRICING_DIMENSIONS, "dimension"
            )
            pricing = replace(pricing, dimensions=dimensions)
        place = "pricing.filters"
        filters = values.section(section.get("filters"), place, _KEYS[place])
        chosen: dict[str, Any] = {
            key: self._choices(filters[key], f"{place}.{key}", allowed, "value")
            for key, allowed in PRICING_FILTER_VALUES.items()
            if filters.get(key) is not None
        }
        chosen.update(self._country_codes(filters, place))
        return replace(pricing, filters=replace(PricingFilters(), **chosen))

    def _messages(self, raw: object) -> MessagesConfig:
        section = values.section(raw, "messages", _KEYS["messages"])
        place = "messages.filters"
        filters = values.section(section.get("filters"), place, _KEYS[place])
        return MessagesConfig(filters=MessagesFilters(**self._country_codes(filters, place)))

    def _country_codes(self, section: dict[str, object], place: str) -> dict[str, Any]:
        """`country_codes` of a filters mapping, if set: distinct codes in the order given."""
        raw = section.get(COUNTRY_CODES)
        if raw is None:
            return {}
        items = self._items(raw, f"{place}.{COUNTRY_CODES}", values.country_code)
        return {COUNTRY_CODES: tuple(values.unique(items))}

    def _choices(
        self, raw: object, place: str, allowed: tuple[str, ...], what: str
    ) -> tuple[str, ...]:
        """A list of distinct values from `allowed`, returned in `allowed`'s order."""
        items = self._items(raw, place, values.string)
        for item_place, value in items:
            if value not in allowed:
                raise ConfigError(
                    item_place, f"unknown {what} {values.show(value)} (one of {', '.join(allowed)})"
                )
        chosen = values.unique(items)
        return tuple(value for value in allowed if value in chosen)

    def _targets(self, raw: object) -> tuple[Target, ...]:
        if raw is None:
            raise ConfigError("targets", "required (at least one target)")
        if not isinstance(raw, list):
            raise values.wrong_type("targets", "a list", raw)
        if not raw:
            raise ConfigError("targets", "must list at least one target")
        targets = tuple(self._target(item, f"targets[{i}]") for i, item in enumerate(raw))
        # The name is the `waba_name` label, so it must tell targets apart as much as the ids.
        for attribute in ("waba_id", "customer_id", "name"):
            values.unique(
                (
                    (f"targets[{i}]", getattr(target, attribute))
                    for i, target in enumerate(targets)
                    if getattr(target, attribute) is not None
                ),
                f"{attribute} ",
            )
        return targets

    def _target(self, raw: object, place: str) -> Target:
        section = values.section(raw, place, _KEYS["target"])
        if section.get("waba_id") is not None and section.get("customer_id") is not None:
            raise ConfigError(place, "set waba_id or customer_id, not both")
        waba_id = self._get(section, place, "waba_id", values.digits)
        customer_id = self._get(section, place, "customer_id", values.customer_id)
        upstream_id = waba_id if waba_id is not None else customer_id
        if upstream_id is None:
            raise ConfigError(f"{place}.waba_id", "required (or customer_id)")
        phone_numbers = self._get(section, place, "phone_numbers", self._phone_numbers)
        return Target(
            name=self._get(section, place, "name", values.nonempty) or upstream_id,
            waba_id=waba_id,
            customer_id=customer_id,
            phone_numbers=phone_numbers or (),
        )

    def _phone_numbers(self, raw: object, place: str) -> tuple[str, ...]:
        return tuple(values.unique(self._items(raw, place, values.digits)))

    def _web(self, raw: object) -> WebConfig:
        section = values.section(raw, "web", _KEYS["web"])
        return replace(WebConfig(), **self._fields(section, "web", _WEB_FIELDS))

    def _limits(self, raw: object) -> LimitsConfig:
        section = values.section(raw, "limits", _KEYS["limits"])
        return replace(LimitsConfig(), **self._fields(section, "limits", _LIMITS_FIELDS))

    def _shard(self, raw: object) -> Shard:
        section = values.section(raw, "shard", _KEYS["shard"])
        fields = self._fields(section, "shard", _SHARD_FIELDS)
        if not fields:
            return Shard()
        # Both or neither: a lone `total: 2` copied to every replica would make them all
        # shard 0, and half the targets would never be polled.
        for key, other in (("index", "total"), ("total", "index")):
            if key not in fields:
                raise ConfigError(f"shard.{key}", f"required when shard.{other} is set")
        index, total = cast(int, fields["index"]), cast(int, fields["total"])
        if index >= total:
            raise ConfigError(
                "shard.index",
                f"must be less than shard.total ({total}), got {index}; shards count from 0",
            )
        return Shard(index, total)


_SPLASHIFY_FIELDS: dict[str, _FieldParser] = {
    "base_url": values.base_url,
    "api_version": values.api_version,
    "timeout": values.positive_duration,
    "max_retries": lambda value, place: values.integer(value, place, minimum=0),
    "max_concurrency": lambda value, place: values.integer(value, place, minimum=1),
    "requests_per_second": values.rate,
}


# Ranges are checked on the whole PollConfig, because lookback depends on delay.
_POLL_FIELDS: dict[str, _FieldParser] = dict.fromkeys(_KEYS["poll"], values.duration)


_WEB_FIELDS: dict[str, _FieldParser] = {"listen_address": values.listen_address}


_LIMITS_FIELDS: dict[str, _FieldParser] = {
    "max_series_per_target": lambda value, place: values.integer(value, place, minimum=1),
    "max_response_bytes": values.size,
}
_SHARD_FIELDS: dict[str, _FieldParser] = {
    "index": lambda value, place: values.integer(value, place, minimum=0),
    "total": lambda value, place: values.integer(value, place, minimum=1),
}
