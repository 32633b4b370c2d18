"""Hostile but possible answers: what an upstream on a bad day sends, for the simulator's faults.

Each builder takes the answer the simulator would have sent (its points, already computed for the
query) and returns the status, body and headers to send instead. They back the `Fault`
classmethods `label`, `extra_points`, `raw_body`, `gzip_bomb`, `cardinality`, `redirect` and
`wrong_id`; `drip` is carried out by the request handler, which owns the socket.

Everything here is deterministic: a test can say exactly what the exporter was sent.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from exporter.pipeline.buckets import latest_complete_bucket
from exporter.upstream.query import END_MARGIN_SECONDS, AnalyticsQuery
from exporter.vocabulary import DIMENSIONS, HALF_HOUR_SECONDS

HOSTILE_KINDS = frozenset(
    {"label", "extra_points", "raw_body", "gzip_bomb", "cardinality", "redirect", "wrong_id"}
)
"""Fault kinds whose whole answer is built here."""

Answer = tuple[int, bytes, dict[str, str]]

_BOMB_BLOCK = 1 << 20


def _point_keys(query: AnalyticsQuery) -> list[str]:
    requested = set(query.dimensions)
    return [d.point_key for d in DIMENSIONS if d.api_name in requested]


def newest_complete_bucket(query: AnalyticsQuery) -> int:
    """The bucket that a poll with the default 30m delay reports, by the clock of the exporter
    that built the query (`end` is that clock minus a margin)."""
    return max(query.start, latest_complete_bucket(query.end + END_MARGIN_SECONDS, 1800))


def _wrapped(waba_id: str, points: Sequence[object]) -> bytes:
    body: dict[str, Any] = {"conversation_analytics": {"data": [{"data_points": list(points)}]}}
    body["id"] = waba_id
    return json.dumps(body).encode()


def odd_label_point(query: AnalyticsQuery, key: str, value: object) -> dict[str, object]:
    """One ordinary point of the newest complete bucket, whose `key` holds `value`."""
    start = newest_complete_bucket(query)
    point: dict[str, object] = {"start": start, "end": start + HALF_HOUR_SECONDS, "conversation": 1}
    point.update((k, "ODD") for k in _point_keys(query))
    point[key] = value
    return point


def cardinality_points(
    query: AnalyticsQuery, label_sets: int, buckets: int = 1
) -> list[dict[str, object]]:
    """`label_sets` points per bucket, each with its own phone number (the other asked
    dimensions fixed), as an account with that many numbers would answer; in the newest
    complete bucket, or in each of the `buckets` newest ones of the window."""
    newest = newest_complete_bucket(query)
    fixed = {k: "X" for k in _point_keys(query)}
    points = []
    for b in range(buckets):
        start = newest - b * HALF_HOUR_SECONDS
        if start < query.start:
            break
        for i in range(label_sets):
            point: dict[str, object] = {
                "start": start,
                "end": start + HALF_HOUR_SECONDS,
                "conversation": 1 + i % 7,
            }
            point.update(fixed)
            point["phone_number"] = f"9{i:011d}"
            points.append(point)
    return points


@lru_cache(maxsize=4)
def gzip_bomb(waba_id: str, inflated_bytes: int) -> bytes:
    """A gzip body that inflates to about `inflated_bytes` of valid JSON: an answer with no data
    points and a sea of whitespace. Compresses about 1000:1."""
    head = b'{"id": "%s", "conversation_analytics": {"data": [{"data_points": [' % (
        waba_id.encode()
    )
    tail = b"]}]}}"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(head)]
    spaces = max(0, inflated_bytes - len(head) - len(tail))
    block = b" " * _BOMB_BLOCK
    while spaces > 0:
        step = min(spaces, _BOMB_BLOCK)
        parts.append(compressor.compress(block[:step]))
        spaces -= step
    parts.append(compressor.compress(tail))
    parts.append(compressor.flush())
    return b"".join(parts)


def hostile_answer(
    kind: str, payload: Any, waba_id: str, query: AnalyticsQuery, points: list[Any]
) -> Answer:
    """The answer a hostile fault sends in place of the ordinary one (`points`)."""
    if kind == "label":
        key, value = payload
        return 200, _wrapped(waba_id, [*points, odd_label_point(query, key, value)]), {}
    if kind == "extra_points":
        return 200, _wrapped(waba_id, [*points, *payload]), {}
    if kind == "raw_body":
        data, headers = payload
        return 200, data, headers
    if kind == "gzip_bomb":
        return 200, gzip_bomb(waba_id, int(payload)), {"Content-Encoding": "gzip"}
    if kind == "cardinality":
        label_sets, buckets = payload
        return 200, _wrapped(waba_id, cardinality_points(query, label_sets, buckets)), {}
    if kind == "redirect":
        status, location = payload
        body = json.dumps({"success": False, "message": "moved"}).encode()
        return status, body, {"Location": location}
    if kind == "wrong_id":
        # Another account's id on this account's data: a mix-up upstream, or a path rewritten
        # on the way.
        return 200, _wrapped(str(payload), points), {}
    raise ValueError(f"not a hostile fault kind: {kind!r}")
