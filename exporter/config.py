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

import ipaddress
import math
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import urlsplit

import yaml

from exporter.sharding import Shard
from exporter.vocabulary import (
    DIMENSIONS,
    DIMENSIONS_BY_NAME,
    FILTER_VALUES,
    HALF_HOUR_SECONDS,
    HISTORY_SECONDS,
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


@dataclass(frozen=True, slots=True)
class SplashifyConfig:
    api_key: Secret = field(repr=False)
    base_url: str = "https://api.splashifypro.com"
    api_version: str = "v25.0"
    timeout: float = 10.0
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
class Config:
    splashify: SplashifyConfig
    targets: tuple[Target, ...]
    poll: PollConfig = PollConfig()
    dimensions: tuple[str, ...] = tuple(d.api_name for d in DIMENSIONS)
    filters: Filters = Filters()
    web: WebConfig = WebConfig()
    limits: LimitsConfig = LimitsConfig()
    # A factory only because ruff cannot see that the imported Shard is frozen.
    shard: Shard = field(default_factory=Shard)
    """As loaded, `targets` holds every target; `sharding.shard_config()` keeps this shard's."""


_T = TypeVar("_T")
# Field parsers take a value whose `${VAR}`s are already expanded, and the place it came from.
_FieldParser = Callable[[object, str], object]


# The keys each mapping may hold, in the order CONTRACT.md lists them ("" is the top level).
_KEYS: dict[str, tuple[str, ...]] = {
    "": ("splashify", "poll", "dimensions", "filters", "targets", "web", "shard", "limits"),
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
    "limits": ("max_series_per_target", "max_response_bytes"),
}

_ALL_DIMENSIONS = tuple(DIMENSIONS_BY_NAME)
_MIN_INTERVAL_SECONDS = 1.0
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[smhd])+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Bounded so that int() never meets Python's limit on the length of integer strings.
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_DIGITS = re.compile(r"[0-9]+")
_API_VERSION = re.compile(r"v[0-9]+(?:\.[0-9]+)?")
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Printable ASCII without space: anything else cannot travel in an HTTP header unmangled.
_API_KEY = re.compile(r"[!-~]+")
_MIN_API_KEY_LENGTH = 8
"""Shorter is no real key, and redacting it would garble ordinary words in every log line."""
_SIZE = re.compile(r"([0-9]{1,15})\s*([KMG]i?B|B)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}
_MIN_RESPONSE_BYTES = 1 << 10
_DEFAULT_TIMEOUT = SplashifyConfig.__dataclass_fields__["timeout"].default


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping.

    Plain YAML keeps the last one silently: a second `targets:` block would drop the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are meant to repeat keys
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {_show(str(key))}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at `path`.

    `environ` feeds `${VAR}` (default: the process environment); a relative `api_key_file` is
    read from the config file's folder.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(name, "cannot read: not UTF-8 text") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise ConfigError(name, f"cannot read: {_reason(exc)}") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        place = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        # Not str(exc): it adds a snippet of the line, which may hold the API key.
        problem = _one_line(", ".join(filter(None, (exc.context, exc.problem))) or "syntax error")
        raise ConfigError(place, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        # Found before any parsing, so it comes with an offset rather than a line and column.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise ConfigError(
            f"{name}:{line}:{column}",
            f"invalid YAML: character U+{exc.character:04X} is not allowed",
        ) from None
    except ValueError:
        # A tagged or date-like scalar that cannot be built; the exception's text may quote
        # the scalar, which could be the API key, so it is not passed on.
        raise ConfigError(
            name, "invalid YAML: a value does not fit its type (e.g. a date like 2023-02-30)"
        ) from None
    except RecursionError:
        raise ConfigError(name, "invalid YAML: nested too deeply") from None
    return parse_config(raw, os.environ if environ is None else environ, Path(name).parent)


def parse_config(raw: object, environ: Mapping[str, str], base_dir: Path | None = None) -> Config:
    """Validate the output of `yaml.safe_load` into a `Config`.

    `base_dir` anchors a relative `api_key_file` (None: the working directory).
    """
    if raw is None:
        raise ConfigError("", "the config is empty")
    if not isinstance(raw, dict):
        # Only the kind: a file holding just the API key must not be echoed.
        raise ConfigError("", f"the top level must be a mapping, got {_kind(raw)}")
    parser = _Parser(environ, base_dir)
    try:
        return parser.config(raw)
    except ConfigError as error:
        raise _unexpanded(error, parser.expanded) from None


_MIN_REDACTED_LENGTH = 4
"""Shorter environment values ("1", "10s") are no secret, and replacing them would garble
messages that happen to contain the same characters."""


def _unexpanded(error: ConfigError, expanded: Mapping[str, str]) -> ConfigError:
    """The error with every value that came from the environment shown as its `${NAME}`.

    A secret put in the wrong field (`timeout: ${SPLASHIFY_API_KEY}`) must not be echoed back
    by the message that rejects it.
    """
    message, text = error.message, str(error)
    for value in sorted(expanded, key=len, reverse=True):
        if len(value) >= _MIN_REDACTED_LENGTH:
            message = message.replace(value, expanded[value])
            text = text.replace(value, expanded[value])
    if text == str(error):
        return error
    redacted = ConfigError("", text)  # the line as worded, whatever its shape
    redacted.place, redacted.message = error.place, message
    return redacted


def parse_duration(value: str | float) -> float:
    """Seconds in `90s`, `30m`, `6h`, `1d`, `1h30m` or a plain number of seconds (>= 0).

    Raises ValueError (`not a duration: "3x"`) for anything else.
    """
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL.fullmatch(text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(
                float(number) * _DURATION_UNITS[unit]
                for number, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"not a duration: {_show(value)}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _as_float(value)
    else:
        raise ValueError(f"not a duration: {_show(value)}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"not a duration: {_show(value)}")
    return seconds


def parse_listen_address(text: str) -> ListenAddress:
    """`HOST:PORT`, `[IPv6]:PORT`, or `:PORT` for every interface (host "").

    Raises ValueError with a one-line message that says what is wrong.
    """
    usage = "expected HOST:PORT, [IPv6]:PORT or :PORT"
    host, colon, port = text.rpartition(":")
    if not colon:
        raise ValueError(f"no port in {_show(text)}; {usage}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {_show(text)}") from None
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:9477): {_show(text)}")
    elif host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"not a host name or address: {_show(host)}; {usage}")
    # The length check keeps int() away from absurdly long digit strings.
    if not _DIGITS.fullmatch(port) or len(port) > 5 or int(port) > 65535:
        raise ValueError(f"not a port (0-65535): {_show(port)}")
    return ListenAddress(host, int(port))


class _Parser:
    """Walks the raw tree section by section; holds what `${VAR}` and `api_key_file` need."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path | None) -> None:
        self._environ = environ
        self._base_dir = base_dir
        self.expanded: dict[str, str] = {}
        """Value taken from the environment -> the `${NAME}` it came from."""

    def config(self, raw: dict[object, object]) -> Config:
        top = _section(raw, "", _KEYS[""])
        config = Config(
            splashify=self._splashify(top.get("splashify")),
            poll=self._poll(top.get("poll")),
            dimensions=self._dimensions(top.get("dimensions")),
            filters=self._filters(top.get("filters")),
            targets=self._targets(top.get("targets")),
            web=self._web(top.get("web")),
            shard=self._shard(top.get("shard")),
            limits=self._limits(top.get("limits")),
        )
        # Prometheus's rule for scrape_timeout: unset, the shorter of the default and the
        # interval; set, never longer than the interval (equal is fine).
        raw_splashify = top.get("splashify")
        if not isinstance(raw_splashify, dict) or raw_splashify.get("timeout") is None:
            timeout = min(_DEFAULT_TIMEOUT, config.poll.interval)
            config = replace(config, splashify=replace(config.splashify, timeout=timeout))
        elif config.splashify.timeout > config.poll.interval:
            raise ConfigError(
                "splashify.timeout",
                f"must not be longer than poll.interval ({config.poll.interval:g}s), "
                "or one request could outlast a whole poll cycle",
            )
        return config

    def _value(self, raw: object, place: str) -> object:
        """`raw` with `${VAR}` expanded if it is a string; other values as they are."""
        if not isinstance(raw, str) or "${" not in raw:
            return raw
        if "${" in _REFERENCE.sub("", raw):
            raise ConfigError(place, "malformed variable reference; write ${NAME}")

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._environ:
                raise ConfigError(place, f"environment variable {name} is not set")
            self.expanded[self._environ[name]] = match.group(0)
            return self._environ[name]

        return _REFERENCE.sub(lookup, raw)

    def _get(
        self, section: dict[str, object], place: str, key: str, parse: Callable[[object, str], _T]
    ) -> _T | None:
        """The parsed value of `key` in the mapping at `place`, or None when it is not set."""
        raw = section.get(key)
        if raw is None:
            return None
        key_place = _join(place, key)
        return parse(self._value(raw, key_place), key_place)

    def _fields(
        self, section: dict[str, object], place: str, parsers: Mapping[str, _FieldParser]
    ) -> dict[str, object]:
        """The keys of `section` that are set, parsed, for dataclasses.replace()."""
        parsed = {key: self._get(section, place, key, parse) for key, parse in parsers.items()}
        return {key: value for key, value in parsed.items() if value is not None}

    def _items(
        self, raw: object, place: str, parse: Callable[[object, str], _T]
    ) -> list[tuple[str, _T]]:
        """(place, parsed value) of each item of the list at `place`."""
        if not isinstance(raw, list):
            raise _wrong_type(place, "a list", raw)
        parsed: list[tuple[str, _T]] = []
        for index, item in enumerate(raw):
            item_place = f"{place}[{index}]"
            parsed.append((item_place, parse(self._value(item, item_place), item_place)))
        return parsed

    def _splashify(self, raw: object) -> SplashifyConfig:
        section = _section(raw, "splashify", _KEYS["splashify"])
        defaults = SplashifyConfig(api_key=self._api_key(section))
        return replace(defaults, **self._fields(section, "splashify", _SPLASHIFY_FIELDS))

    def _api_key(self, section: dict[str, object]) -> Secret:
        if section.get("api_key") is not None and section.get("api_key_file") is not None:
            raise ConfigError("splashify", "set api_key or api_key_file, not both")
        key = self._get(section, "splashify", "api_key", _secret_string)
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
                place, f"too short for an API key: at least {_MIN_API_KEY_LENGTH} characters "
                "(value not shown)"
            )
        return Secret(key)

    def _read_key_file(self, value: object, place: str) -> str:
        name = _nonempty(value, place)
        path = Path(name) if self._base_dir is None else self._base_dir / name
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
            raise ConfigError(place, f"cannot read {_show(str(path))}: {_reason(exc)}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # `from None`: the decode error carries the file's bytes, i.e. the key.
            raise ConfigError(place, f"{_show(str(path))} is not UTF-8 text") from None

    def _poll(self, raw: object) -> PollConfig:
        section = _section(raw, "poll", _KEYS["poll"])
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
        section = _section(raw, "filters", _KEYS["filters"])
        chosen = {
            key: self._choices(section[key], f"filters.{key}", values, "value")
            for key, values in FILTER_VALUES.items()
            if section.get(key) is not None
        }
        return replace(Filters(), **chosen)

    def _choices(
        self, raw: object, place: str, allowed: tuple[str, ...], what: str
    ) -> tuple[str, ...]:
        """A list of distinct values from `allowed`, returned in `allowed`'s order."""
        items = self._items(raw, place, _string)
        for item_place, value in items:
            if value not in allowed:
                raise ConfigError(
                    item_place, f"unknown {what} {_show(value)} (one of {', '.join(allowed)})"
                )
        chosen = _unique(items)
        return tuple(value for value in allowed if value in chosen)

    def _targets(self, raw: object) -> tuple[Target, ...]:
        if raw is None:
            raise ConfigError("targets", "required (at least one target)")
        if not isinstance(raw, list):
            raise _wrong_type("targets", "a list", raw)
        if not raw:
            raise ConfigError("targets", "must list at least one target")
        targets = tuple(self._target(item, f"targets[{i}]") for i, item in enumerate(raw))
        # The name is the `waba_name` label, so it must tell targets apart as much as the ids.
        for attribute in ("waba_id", "customer_id", "name"):
            _unique(
                (
                    (f"targets[{i}]", getattr(target, attribute))
                    for i, target in enumerate(targets)
                    if getattr(target, attribute) is not None
                ),
                f"{attribute} ",
            )
        return targets

    def _target(self, raw: object, place: str) -> Target:
        section = _section(raw, place, _KEYS["target"])
        if section.get("waba_id") is not None and section.get("customer_id") is not None:
            raise ConfigError(place, "set waba_id or customer_id, not both")
        waba_id = self._get(section, place, "waba_id", _digits)
        customer_id = self._get(section, place, "customer_id", _customer_id)
        upstream_id = waba_id if waba_id is not None else customer_id
        if upstream_id is None:
            raise ConfigError(f"{place}.waba_id", "required (or customer_id)")
        phone_numbers = self._get(section, place, "phone_numbers", self._phone_numbers)
        return Target(
            name=self._get(section, place, "name", _nonempty) or upstream_id,
            waba_id=waba_id,
            customer_id=customer_id,
            phone_numbers=phone_numbers or (),
        )

    def _phone_numbers(self, raw: object, place: str) -> tuple[str, ...]:
        return tuple(_unique(self._items(raw, place, _digits)))

    def _web(self, raw: object) -> WebConfig:
        section = _section(raw, "web", _KEYS["web"])
        return replace(WebConfig(), **self._fields(section, "web", _WEB_FIELDS))

    def _limits(self, raw: object) -> LimitsConfig:
        section = _section(raw, "limits", _KEYS["limits"])
        return replace(LimitsConfig(), **self._fields(section, "limits", _LIMITS_FIELDS))

    def _shard(self, raw: object) -> Shard:
        section = _section(raw, "shard", _KEYS["shard"])
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


def _section(raw: object, place: str, keys: tuple[str, ...]) -> dict[str, object]:
    """The mapping at `place`, with only `keys` in it; null counts as an empty mapping."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _wrong_type(place, "a mapping", raw)
    for key in raw:
        if key not in keys:
            key_text = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else _show(key)
            key_place = _join(place, key_text)
            # Worded `unknown key splashify.base_ur`, as CONTRACT.md and the CLI tests spell it;
            # the place still goes on the error for code that wants it.
            error = ConfigError("", f"unknown key {key_place} (one of {', '.join(keys)})")
            error.place = key_place
            raise error
    return cast("dict[str, object]", raw)  # every key was just checked to be a string


def _unique(pairs: Iterable[tuple[str, str]], what: str = "") -> dict[str, str]:
    """{value: place} of (place, value) pairs; a repeated value is an error at its second place."""
    first: dict[str, str] = {}
    for place, value in pairs:
        if value in first:
            raise ConfigError(place, f"duplicate {what}{_show(value)} (also {first[value]})")
        first[value] = place
    return first


def _string(value: object, place: str, *, secret: bool = False) -> str:
    if isinstance(value, str):
        return value
    if secret:
        raise ConfigError(place, f"expected a string, got {_kind(value)}")
    error = _wrong_type(place, "a string", value)
    if isinstance(value, (bool, int, float)):
        # YAML reads `yes`, `0123` or `1.0` as other types; quoting keeps the text.
        raise ConfigError(place, f"{error.message}; quote it")
    raise error


def _secret_string(value: object, place: str) -> str:
    return _string(value, place, secret=True)


def _nonempty(value: object, place: str) -> str:
    text = _string(value, place)
    if not text:
        raise ConfigError(place, "must not be empty")
    return text


def _digits(value: object, place: str) -> str:
    """Ids and phone numbers: digit strings; YAML reads unquoted ones as ints, which is fine."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return value
    raise ConfigError(place, f"must be digits only, got {_show(value)}")


def _customer_id(value: object, place: str) -> str:
    text = _nonempty(value, place)
    # The id becomes one path segment: a "/" or a dot segment would change the route.
    if text in (".", "..") or any(ch == "/" or ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(
            place, f'must not hold "/", whitespace or control characters, got {_show(text)}'
        )
    return text


def _integer(value: object, place: str, minimum: int) -> int:
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(place, "an integer", value)
    if value < minimum:
        raise ConfigError(place, f"must be at least {minimum}, got {value}")
    return value


def _rate(value: object, place: str) -> float:
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(place, "a number", value)
    rate = _as_float(value)
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(place, f"must be a number greater than 0, got {_show(value)}")
    return rate


def _size(value: object, place: str) -> int:
    """Bytes: an integer, or a size such as `64MiB`, `512KiB`, `10MB` (K, M, G: powers of 1000;
    Ki, Mi, Gi: of 1024)."""
    match = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ConfigError(place, f"not a size: {_show(value)} (bytes, or e.g. 64MiB, 10MB)")
    if size < _MIN_RESPONSE_BYTES:
        raise ConfigError(place, f"must be at least 1KiB, got {_show(value)}")
    return size


def _duration(value: object, place: str) -> float:
    if not isinstance(value, (str, int, float)):
        raise ConfigError(place, f"not a duration: {_show(value)}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(place, str(exc)) from None


def _positive_duration(value: object, place: str) -> float:
    seconds = _duration(value, place)
    if seconds <= 0:
        raise ConfigError(place, "must be longer than 0s")
    return seconds


def _base_url(value: object, place: str) -> str:
    # Only what is wrong is said, never the URL: it might hold credentials.
    text = _string(value, place)
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        # Checked on the raw text because urlsplit() silently drops tabs and newlines.
        raise ConfigError(place, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - only for the ValueError a bad port raises
    except ValueError as exc:
        raise ConfigError(place, f"not a URL: {_one_line(str(exc))}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(place, "must start with http:// or https://")
    if not parts.hostname:
        raise ConfigError(place, "has no host")
    if "@" in parts.netloc:
        raise ConfigError(place, "must not hold credentials (user:password@)")
    if "?" in text or "#" in text:
        raise ConfigError(place, "must not have a query or fragment, only a path prefix")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _api_version(value: object, place: str) -> str:
    text = _string(value, place)
    if not _API_VERSION.fullmatch(text):
        raise ConfigError(place, f"must look like v25.0, got {_show(text)}")
    return text


def _listen_address(value: object, place: str) -> ListenAddress:
    try:
        return parse_listen_address(_string(value, place))
    except ValueError as exc:
        raise ConfigError(place, str(exc)) from None


_SPLASHIFY_FIELDS: dict[str, _FieldParser] = {
    "base_url": _base_url,
    "api_version": _api_version,
    "timeout": _positive_duration,
    "max_retries": lambda value, place: _integer(value, place, minimum=0),
    "max_concurrency": lambda value, place: _integer(value, place, minimum=1),
    "requests_per_second": _rate,
}
# Ranges are checked on the whole PollConfig, because lookback depends on delay.
_POLL_FIELDS: dict[str, _FieldParser] = dict.fromkeys(_KEYS["poll"], _duration)
_WEB_FIELDS: dict[str, _FieldParser] = {"listen_address": _listen_address}
_LIMITS_FIELDS: dict[str, _FieldParser] = {
    "max_series_per_target": lambda value, place: _integer(value, place, minimum=1),
    "max_response_bytes": _size,
}
_SHARD_FIELDS: dict[str, _FieldParser] = {
    "index": lambda value, place: _integer(value, place, minimum=0),
    "total": lambda value, place: _integer(value, place, minimum=1),
}


def _wrong_type(place: str, expected: str, value: object) -> ConfigError:
    return ConfigError(place, f"expected {expected}, got {_show(value)}")


def _kind(value: object) -> str:
    """What sort of value this is, without showing it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {
        str: "a string",
        int: "an integer",
        float: "a number",
        dict: "a mapping",
        list: "a list",
    }
    return kinds.get(type(value), f"a {type(value).__name__}")


def _show(value: object) -> str:
    """A scalar as it would read in YAML, on one line; any other value by its kind."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _kind(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def _quote(text: str) -> str:
    """`text` in double quotes, with anything unprintable escaped, so a message stays one line."""
    body = "".join(
        _ESCAPES.get(ch, ch) if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    return f'"{body}"'


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reason(exc: Exception) -> str:
    """The OS's words for a failed read, without the path (the message names it already)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(str(exc))


def _as_float(value: int | float) -> float:
    """float(), with ints too large for a float becoming infinity instead of raising."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key
