"""Strict parser of the `fields=` blob, the inverse of `build_fields`.

The simulator rejects what the upstream would reject, so that a malformed blob built by the
exporter fails in the test suite instead of in production. The grammar accepted is:

    field ( "." name "(" args ")" )* ( "," field ( "." name "(" args ")" )* )*

where `field` is conversation_analytics, pricing_analytics or analytics (`parse_request`;
`parse_fields` takes conversation_analytics alone). In each field `start(int)`, `end(int)` and
`granularity(ENUM)` are required, every other part is optional, no part comes twice, no field
comes twice, and there is no whitespace anywhere (the exporter never sends any). List items may
be quoted (`"X"`) or bare (`X`): the API page writes enums bare and dimensions quoted, Meta takes
both.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from exporter.upstream.query import FIELD, AnalyticsQuery, FieldQuery
from exporter.vocabulary import (
    COUNTRY_CODES,
    DIMENSIONS,
    FILTER_VALUES,
    GRANULARITIES,
    MESSAGE_ANALYTICS,
    PRICING_FILTER_VALUES,
    SOURCES_BY_FIELD,
    Source,
)

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
    query = _conversation(cursor)
    if not cursor.at_end():
        raise cursor.fail(f"unexpected text after {FIELD}")
    return query


def _parts(
    cursor: _Cursor,
    field: str,
    granularities: tuple[str, ...],
    lists: dict[str, Callable[[str], bool]],
) -> tuple[dict[str, int], str, dict[str, tuple[str, ...]]]:
    """The `.name(args)` parts of one field, up to the end or the `,` before the next field:
    (start and end, granularity, lists by name)."""
    ints: dict[str, int] = {}
    listed: dict[str, tuple[str, ...]] = {}
    granularity = ""
    seen: set[str] = set()
    while not cursor.at_end() and not cursor.peek(","):
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
            granularity = cursor.take(_ENUM, "a granularity").group()
            if granularity not in granularities:
                cursor.pos -= len(granularity)
                raise cursor.fail(
                    f'invalid granularity "{granularity}" (one of {", ".join(granularities)})'
                )
        elif name in lists:
            listed[name] = _list_arg(cursor, name, lists[name])
        else:
            cursor.pos = part_at
            raise cursor.fail(f"unknown parameter {name} of {field}")
        cursor.expect(")")
    missing = [name for name in _REQUIRED if name not in seen]
    if missing:
        raise FieldsError(f"missing required parameter {', '.join(missing)} of {field}")
    if ints["start"] >= ints["end"]:
        raise FieldsError(f"start ({ints['start']}) must be before end ({ints['end']})")
    return ints, granularity, listed


def _conversation(cursor: _Cursor) -> AnalyticsQuery:
    ints, granularity, lists = _parts(cursor, FIELD, GRANULARITIES, _LIST_PARTS)
    return AnalyticsQuery(
        start=ints["start"],
        end=ints["end"],
        granularity=granularity,
        phone_numbers=lists.get("phone_numbers", ()),
        metric_types=lists.get("metric_types", ()),
        conversation_categories=lists.get("conversation_categories", ()),
        conversation_types=lists.get("conversation_types", ()),
        conversation_directions=lists.get("conversation_directions", ()),
        dimensions=lists.get("dimensions", ()),
    )


_COUNTRY = re.compile(r"[A-Z]{2}")
PRODUCT_TYPES = ("0", "2")
"""Message analytics' `product_types`: 0 notification (template) messages, 2 customer support."""


def _source_lists(source: Source) -> dict[str, Callable[[str], bool]]:
    """The list parts a field beside conversation_analytics takes, and their valid items."""
    lists: dict[str, Callable[[str], bool]] = {
        "phone_numbers": lambda value: _PHONE.fullmatch(value) is not None,
        COUNTRY_CODES: lambda value: _COUNTRY.fullmatch(value) is not None,
    }
    if source.metric_types:
        lists["metric_types"] = _enum_check(source.metric_types)
    for name in source.filters:
        if name in PRICING_FILTER_VALUES:
            lists[name] = _enum_check(PRICING_FILTER_VALUES[name])
    if source.dimensions:
        lists["dimensions"] = _enum_check(source.dimension_names)
    if source.name == MESSAGE_ANALYTICS:
        lists["product_types"] = _enum_check(PRODUCT_TYPES)
    return lists


def _modifier_order(source: Source) -> tuple[str, ...]:
    """The order `source_query` writes modifiers in, so that parsing what it built gives back
    the same FieldQuery."""
    return ("phone_numbers", "metric_types", *source.filters, "dimensions", "product_types")


def _source_field(cursor: _Cursor, source: Source) -> FieldQuery:
    ints, granularity, lists = _parts(
        cursor, source.field, source.granularities, _source_lists(source)
    )
    return FieldQuery(
        field=source.field,
        start=ints["start"],
        end=ints["end"],
        granularity=granularity,
        modifiers=tuple((name, lists[name]) for name in _modifier_order(source) if name in lists),
    )


_FIELD_NAME = re.compile(r"[a-z_]+")


def parse_request(blob: str) -> dict[str, AnalyticsQuery | FieldQuery]:
    """Parse a `fields=` blob of one or more fields (`a...,b...`), by field name.

    Each field is checked as strictly as `parse_fields` checks conversation_analytics: its own
    parts, enum values and granularity spelling (`analytics` says DAY and MONTH, the others
    DAILY and MONTHLY). An unknown field, or a field twice, is an error, as is any error in
    one field: the upstream fails the whole request.
    """
    cursor = _Cursor(blob)
    fields: dict[str, AnalyticsQuery | FieldQuery] = {}
    while True:
        at = cursor.pos
        name = cursor.take(_FIELD_NAME, "a field name").group()
        source = SOURCES_BY_FIELD.get(name)
        if source is None:
            cursor.pos = at
            raise cursor.fail(f"unknown field {name}")
        if name in fields:
            cursor.pos = at
            raise cursor.fail(f"duplicate field {name}")
        fields[name] = _conversation(cursor) if name == FIELD else _source_field(cursor, source)
        if cursor.at_end():
            return fields
        cursor.expect(",")
