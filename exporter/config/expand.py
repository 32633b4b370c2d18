"""`${VAR}` expansion from the environment, and the redaction that keeps expanded values out of
error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from exporter.config.model import ConfigError

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_MIN_REDACTED_LENGTH = 4
"""Shorter environment values ("1", "10s") are no secret, and replacing them would garble
messages that happen to contain the same characters."""


class Expander:
    """Expands `${NAME}` in config strings and remembers what it expanded, for `redact()`."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._expanded: dict[str, str] = {}
        """Value taken from the environment -> the `${NAME}` it came from."""

    def expand(self, raw: object, place: str) -> object:
        """`raw` with `${VAR}` expanded if it is a string; other values as they are."""
        if not isinstance(raw, str) or "${" not in raw:
            return raw
        if "${" in _REFERENCE.sub("", raw):
            raise ConfigError(place, "malformed variable reference; write ${NAME}")

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._environ:
                raise ConfigError(place, f"environment variable {name} is not set")
            self._expanded[self._environ[name]] = match.group(0)
            return self._environ[name]

        return _REFERENCE.sub(lookup, raw)

    def redact(self, error: ConfigError) -> ConfigError:
        """The error with every value that came from the environment shown as its `${NAME}`.

        A secret put in the wrong field (`timeout: ${SPLASHIFY_API_KEY}`) must not be echoed
        back by the message that rejects it.
        """
        message, text = error.message, str(error)
        for value in sorted(self._expanded, key=len, reverse=True):
            if len(value) >= _MIN_REDACTED_LENGTH:
                message = message.replace(value, self._expanded[value])
                text = text.replace(value, self._expanded[value])
        if text == str(error):
            return error
        redacted = ConfigError("", text)  # the line as worded, whatever its shape
        redacted.place, redacted.message = error.place, message
        return redacted
