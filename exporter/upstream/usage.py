"""Meta's rate-budget headers, read into numbers (pure and total).

Every Graph answer, errors included, may carry how much of the caller's budget is spent:

- `X-App-Usage`: the app's budget, a flat object
  `{"call_count": 28, "total_cputime": 25, "total_time": 25}`;
- `X-Business-Use-Case-Usage`: the budget per business object (here: the WABA), an object of
  lists, `{"<id>": [{"type": "whatsapp_business_management", "call_count": 100,
  "total_cputime": 25, "total_time": 25, "estimated_time_to_regain_access": 19}]}`.

`call_count`, `total_cputime` and `total_time` are percentages of the budget (Meta throttles at
100); `estimated_time_to_regain_access` is in minutes. `parse_usage` never raises: a header that
is not JSON, has another shape, wrong types (booleans and numeric strings included) or numbers
outside a sane range contributes nothing, and the rest of it still counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

APP_HEADER = "X-App-Usage"
BUSINESS_HEADER = "X-Business-Use-Case-Usage"

USAGE_TYPES: dict[str, str] = {APP_HEADER: "app", BUSINESS_HEADER: "business_use_case"}
"""Header -> the `type` label of its percentages."""
MEASURES = ("call_count", "total_cputime", "total_time")
"""The percentages each header may carry: the `measure` label."""
REGAIN_KEY = "estimated_time_to_regain_access"

MAX_HEADER_CHARS = 16384
"""A longer header value is not read at all (real ones are a few hundred characters)."""
MAX_ENTRIES = 64
"""At most this many business objects and entries per object are looked at."""
MAX_PERCENT = 10000.0
"""A percentage above this (a hundred times the budget) is nonsense, not a reading."""
MAX_REGAIN_MINUTES = 7 * 24 * 60.0
"""A wait longer than a week is nonsense too."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What one answer's headers said; only what they said validly is here."""

    percent: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(type, measure) -> percent of the budget, e.g. ("app", "call_count") -> 28.0. For the
    business-use-case header, the highest over its objects and entries."""
    regain_access_seconds: float | None = None
    """The longest `estimated_time_to_regain_access` in either header, in seconds (0: not
    throttled); None when neither header carried one."""

    def __bool__(self) -> bool:
        return bool(self.percent) or self.regain_access_seconds is not None


def _number(value: object, limit: float) -> float | None:
    """A finite number in [0, limit], or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        # Compared as an int first: a huge one would overflow float().
        return float(value) if 0 <= value <= limit else None
    return value if math.isfinite(value) and 0.0 <= value <= limit else None


def _decode(raw: object) -> object:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_HEADER_CHARS:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and integers past Python's digit limit.
        return None


def _entries(decoded: object, header: str) -> Iterable[Mapping[object, object]]:
    """The objects of a decoded header that carry readings."""
    if not isinstance(decoded, Mapping):
        return []
    if header == APP_HEADER:
        return [decoded]
    found: list[Mapping[object, object]] = []
    for per_object in list(decoded.values())[:MAX_ENTRIES]:
        if isinstance(per_object, list):
            found.extend(e for e in per_object[:MAX_ENTRIES] if isinstance(e, Mapping))
        elif isinstance(per_object, Mapping):  # one entry not wrapped in a list
            found.append(per_object)
    return found


def parse_usage(headers: Mapping[str, str]) -> Usage:
    """The usage readings of an answer's headers (an empty `Usage` when there are none)."""
    percent: dict[tuple[str, str], float] = {}
    regain: float | None = None
    for header, usage_type in USAGE_TYPES.items():
        for entry in _entries(_decode(headers.get(header)), header):
            for measure in MEASURES:
                value = _number(entry.get(measure), MAX_PERCENT)
                if value is not None:
                    key = (usage_type, measure)
                    percent[key] = max(percent.get(key, 0.0), value)
            minutes = _number(entry.get(REGAIN_KEY), MAX_REGAIN_MINUTES)
            if minutes is not None:
                regain = max(regain or 0.0, minutes * 60.0)
    return Usage(percent, regain)
