"""Logging set-up: text or JSON lines on stderr, with every secret redacted.

Redaction happens on the formatted line (message, arguments and traceback alike), so no code
path can leak the API key by logging an exception or a request.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

REDACTED = "<redacted>"


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str], *, json_lines: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets: list[str] = []
        self._json = json_lines
        self.add_secrets(secrets)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        if not self._json:
            return self.redact(super().format(record))
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        # Redacted before encoding: JSON escaping could otherwise hide a secret from replace().
        return json.dumps(entry)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted(
            set(self._secrets) | {s for s in secrets if s}, key=len, reverse=True
        )


_formatter: RedactingFormatter | None = None


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    global _formatter
    _formatter = RedactingFormatter(secrets, json_lines=fmt == "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_secrets(secrets: Iterable[str]) -> None:
    """Redact these too from now on (a reloaded config may bring a new key)."""
    if _formatter is not None:
        _formatter.add_secrets(secrets)
