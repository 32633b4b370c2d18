"""Parsers for single config values: durations, addresses, ids, numbers, URLs.

Each takes a value (its `${VAR}`s already expanded) and the place it came from, and returns the
typed value or raises `ConfigError` with one line naming that place. `show()` and `kind()` say
what a value is without ever echoing a secret's text.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlsplit

from exporter.config.model import ConfigError, ListenAddress

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


_COUNTRY_CODE = re.compile(r"[A-Z]{2}")


_ESCAPES = {'"': '\\"', "\\": "\\\\"}


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
            raise ValueError(f"not a duration: {show(value)}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _as_float(value)
    else:
        raise ValueError(f"not a duration: {show(value)}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"not a duration: {show(value)}")
    return seconds


def parse_listen_address(text: str) -> ListenAddress:
    """`HOST:PORT`, `[IPv6]:PORT`, or `:PORT` for every interface (host "").

    Raises ValueError with a one-line message that says what is wrong.
    """
    usage = "expected HOST:PORT, [IPv6]:PORT or :PORT"
    host, colon, port = text.rpartition(":")
    if not colon:
        raise ValueError(f"no port in {show(text)}; {usage}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {show(text)}") from None
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:9477): {show(text)}")
    elif host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"not a host name or address: {show(host)}; {usage}")
    # The length check keeps int() away from absurdly long digit strings.
    if not _DIGITS.fullmatch(port) or len(port) > 5 or int(port) > 65535:
        raise ValueError(f"not a port (0-65535): {show(port)}")
    return ListenAddress(host, int(port))


def section(raw: object, place: str, keys: tuple[str, ...]) -> dict[str, object]:
    """The mapping at `place`, with only `keys` in it; null counts as an empty mapping."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise wrong_type(place, "a mapping", raw)
    for key in raw:
        if key not in keys:
            key_text = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else show(key)
            key_place = join(place, key_text)
            # Worded `unknown key splashify.base_ur`, as docs/contract.md and the CLI tests say;
            # the place still goes on the error for code that wants it.
            error = ConfigError("", f"unknown key {key_place} (one of {', '.join(keys)})")
            error.place = key_place
            raise error
    return cast("dict[str, object]", raw)  # every key was just checked to be a string


def unique(pairs: Iterable[tuple[str, str]], what: str = "") -> dict[str, str]:
    """{value: place} of (place, value) pairs; a repeated value is an error at its second place."""
    first: dict[str, str] = {}
    for place, value in pairs:
        if value in first:
            raise ConfigError(place, f"duplicate {what}{show(value)} (also {first[value]})")
        first[value] = place
    return first


def string(value: object, place: str, *, secret: bool = False) -> str:
    if isinstance(value, str):
        return value
    if secret:
        raise ConfigError(place, f"expected a string, got {kind(value)}")
    error = wrong_type(place, "a string", value)
    if isinstance(value, (bool, int, float)):
        # YAML reads `yes`, `0123` or `1.0` as other types; quoting keeps the text.
        raise ConfigError(place, f"{error.message}; quote it")
    raise error


def secret_string(value: object, place: str) -> str:
    return string(value, place, secret=True)


def nonempty(value: object, place: str) -> str:
    text = string(value, place)
    if not text:
        raise ConfigError(place, "must not be empty")
    return text


def digits(value: object, place: str) -> str:
    """Ids and phone numbers: digit strings; YAML reads unquoted ones as ints, which is fine."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return value
    raise ConfigError(place, f"must be digits only, got {show(value)}")


def country_code(value: object, place: str) -> str:
    """ISO 3166-1 alpha-2, as the API writes it: two capital letters (`IN`, `BR`)."""
    text = string(value, place)
    if not _COUNTRY_CODE.fullmatch(text):
        raise ConfigError(
            place, f"not a country code (two capital letters, such as IN), got {show(text)}"
        )
    return text


def customer_id(value: object, place: str) -> str:
    text = nonempty(value, place)
    # The id becomes one path segment: a "/" or a dot segment would change the route.
    if text in (".", "..") or any(ch == "/" or ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(
            place, f'must not hold "/", whitespace or control characters, got {show(text)}'
        )
    return text


def integer(value: object, place: str, minimum: int) -> int:
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(place, "an integer", value)
    if value < minimum:
        raise ConfigError(place, f"must be at least {minimum}, got {value}")
    return value


def rate(value: object, place: str) -> float:
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(place, "a number", value)
    rate = _as_float(value)
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(place, f"must be a number greater than 0, got {show(value)}")
    return rate


_SIZE = re.compile(r"([0-9]{1,15})\s*([KMG]i?B|B)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}  # fmt: skip
_MIN_SIZE_BYTES = 1 << 10


def size(value: object, place: str) -> int:
    """Bytes: an integer, or a size such as `64MiB`, `512KiB`, `10MB` (K, M, G: powers of 1000;
    Ki, Mi, Gi: of 1024)."""
    match = None
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        count = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ConfigError(place, f"not a size: {show(value)} (bytes, or e.g. 64MiB, 10MB)")
    if count < _MIN_SIZE_BYTES:
        raise ConfigError(place, f"must be at least 1KiB, got {show(value)}")
    return count


def duration(value: object, place: str) -> float:
    if not isinstance(value, (str, int, float)):
        raise ConfigError(place, f"not a duration: {show(value)}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(place, str(exc)) from None


def positive_duration(value: object, place: str) -> float:
    seconds = duration(value, place)
    if seconds <= 0:
        raise ConfigError(place, "must be longer than 0s")
    return seconds


def base_url(value: object, place: str) -> str:
    # Only what is wrong is said, never the URL: it might hold credentials.
    text = string(value, place)
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        # Checked on the raw text because urlsplit() silently drops tabs and newlines.
        raise ConfigError(place, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - only for the ValueError a bad port raises
    except ValueError as exc:
        raise ConfigError(place, f"not a URL: {one_line(str(exc))}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(place, "must start with http:// or https://")
    if not parts.hostname:
        raise ConfigError(place, "has no host")
    if "@" in parts.netloc:
        raise ConfigError(place, "must not hold credentials (user:password@)")
    if "?" in text or "#" in text:
        raise ConfigError(place, "must not have a query or fragment, only a path prefix")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def api_version(value: object, place: str) -> str:
    text = string(value, place)
    if not _API_VERSION.fullmatch(text):
        raise ConfigError(place, f"must look like v25.0, got {show(text)}")
    return text


def listen_address(value: object, place: str) -> ListenAddress:
    try:
        return parse_listen_address(string(value, place))
    except ValueError as exc:
        raise ConfigError(place, str(exc)) from None


def wrong_type(place: str, expected: str, value: object) -> ConfigError:
    return ConfigError(place, f"expected {expected}, got {show(value)}")


def kind(value: object) -> str:
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


def show(value: object) -> str:
    """A scalar as it would read in YAML, on one line; any other value by its kind."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return kind(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def _quote(text: str) -> str:
    """`text` in double quotes, with anything unprintable escaped, so a message stays one line."""
    body = "".join(
        _ESCAPES.get(ch, ch) if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    return f'"{body}"'


def one_line(text: str) -> str:
    return " ".join(text.split())


def reason(exc: Exception) -> str:
    """The OS's words for a failed read, without the path (the message names it already)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return one_line(str(exc))


def _as_float(value: int | float) -> float:
    """float(), with ints too large for a float becoming infinity instead of raising."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key
