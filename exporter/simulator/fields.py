"""Strict parser of the `fields=conversation_analytics...` blob, the inverse of `build_fields`.

The simulator rejects what the upstream would reject, so that a malformed blob built by the
exporter fails in the test suite instead of in production. The grammar accepted is:

    conversation_analytics ( "." name "(" args ")" )*

with `start(int)`, `end(int)` and `granularity(ENUM)` required, every other part optional, no part
twice, and no whitespace anywhere (the exporter never sends any). List items may be quoted
(`"X"`) or bare (`X`): the API page writes enums bare and dimensions quoted, Meta takes both.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from exporter.upstream.query import FIELD, AnalyticsQuery
from exporter.vocabulary import DIMENSIONS, FILTER_VALUES, GRANULARITIES

_METRIC_TYPES = ("CONVERSATION", "COST")
"""COST is a valid request value even though partner-billed accounts never get it back."""

_INT = re.compile(r"-?[0-9]+")
_NAME = re.compile(r"[a-z_]+")
_ENUM = re.compile(r"[A-Z][A-Z_]*")
_BARE_ITEM = re.compile(r"[A-Za-z0-9_]+")
_QUOTED_ITEM = re.compile(r'"([^"\\]*)"')
_PHONE = re.compile(r"[0-9]{1,20}")

_REQUIRED = ("start", "end", "granularity")


class FieldsError(ValueError):
    """The blob is not one the upstream accepts; the message says where and why."""


class _Cursor:
    """A position in the blob; every failure names the character offset, as Graph errors do."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> FieldsError:
        return FieldsError(f"{message} at character {self.pos}")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.pos):
            found = self.text[self.pos : self.pos + 10] or "end of string"
            raise self.fail(f'expected "{literal}" instead of "{found}"')
        self.pos += len(literal)

    def take(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)


def _int_arg(cursor: _Cursor, name: str) -> int:
    return int(cursor.take(_INT, f"an integer for {name}").group())


def _list_arg(cursor: _Cursor, name: str, valid: Callable[[str], bool]) -> tuple[str, ...]:
    cursor.expect("[")
    items: list[str] = []
    while True:
        start = cursor.pos
        if cursor.peek('"'):
            item = cursor.take(_QUOTED_ITEM, "a closing quote").group(1)
        else:
            item = cursor.take(_BARE_ITEM, f"a value in {name}").group()
        if not valid(item):
            cursor.pos = start
            raise cursor.fail(f'invalid value "{item}" in {name}')
        items.append(item)
        if cursor.peek("]"):
            cursor.pos += 1
            return tuple(items)
        if not cursor.peek(","):
            raise cursor.fail(f'expected "," or "]" in {name}')
        cursor.pos += 1


def _enum_check(allowed: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda value: value in allowed


_LIST_PARTS: dict[str, Callable[[str], bool]] = {
    "phone_numbers": lambda value: _PHONE.fullmatch(value) is not None,
    "metric_types": _enum_check(_METRIC_TYPES),
    **{name: _enum_check(values) for name, values in FILTER_VALUES.items()},
    "dimensions": _enum_check(tuple(d.api_name for d in DIMENSIONS)),
}


def parse_fields(blob: str) -> AnalyticsQuery:
    """Parse a `conversation_analytics` blob; raise `FieldsError` for anything the API rejects.

    Optional parts that are absent come back as empty tuples (metric_types included), which is
    what `build_fields` leaves out, so `parse_fields(build_fields(q)) == q`.
    """
    cursor = _Cursor(blob)
    cursor.expect(FIELD)
    ints: dict[str, int] = {}
    lists: dict[str, tuple[str, ...]] = {}
    enums: dict[str, str] = {}
    seen: set[str] = set()
    while not cursor.at_end():
        cursor.expect(".")
        part_at = cursor.pos
        name = cursor.take(_NAME, "a field parameter name").group()
        if name in seen:
            cursor.pos = part_at
            raise cursor.fail(f"duplicate parameter {name}")
        seen.add(name)
        cursor.expect("(")
        if name in ("start", "end"):
            ints[name] = _int_arg(cursor, name)
        elif name == "granularity":
            granularity = enums[name] = cursor.take(_ENUM, "a granularity").group()
            if granularity not in GRANULARITIES:
                cursor.pos -= len(granularity)
                raise cursor.fail(
                    f'invalid granularity "{granularity}" (one of {", ".join(GRANULARITIES)})'
                )
        elif name in _LIST_PARTS:
            lists[name] = _list_arg(cursor, name, _LIST_PARTS[name])
        else:
            cursor.pos = part_at
            raise cursor.fail(f"unknown parameter {name} of {FIELD}")
        cursor.expect(")")
    missing = [name for name in _REQUIRED if name not in seen]
    if missing:
        raise FieldsError(f"missing required parameter {', '.join(missing)} of {FIELD}")
    if ints["start"] >= ints["end"]:
        raise FieldsError(f"start ({ints['start']}) must be before end ({ints['end']})")
    return AnalyticsQuery(
        start=ints["start"],
        end=ints["end"],
        granularity=enums["granularity"],
        phone_numbers=lists.get("phone_numbers", ()),
        metric_types=lists.get("metric_types", ()),
        conversation_categories=lists.get("conversation_categories", ()),
        conversation_types=lists.get("conversation_types", ()),
        conversation_directions=lists.get("conversation_directions", ()),
        dimensions=lists.get("dimensions", ()),
    )
