"""The reference for the benchmark: a plain, hand-written `prometheus_client` exporter.

This is what a typical first exporter for the conversation analytics API looks like, written
the obvious way and with no artificial slowness: module-level `Gauge` and `Counter` objects, one
loop that polls every target in turn (sequentially, with one keep-alive `requests.Session`),
`Gauge.labels(...).set(...)` for every label set of every answer, and
`prometheus_client.start_http_server` to serve them (which gzips when asked, as ours does).

It asks the same question as the exporter (`exporter.upstream.query.query_window`,
`build_fields` and `waba_path`, all five dimensions, the same lookback and delay) and exposes the
same data series:
`whatsapp_conversations` (the latest complete half-hour bucket; 0 for a label set seen in the
window but not in that bucket) and `whatsapp_conversations_observed_total` (a counter raised by
each upward revision of a complete bucket), so the two expose the same number of series. Like
ours it disables the `_created` series, which would otherwise double the counter's lines.

    python -m bench.handwritten --base-url http://127.0.0.1:8080 --targets targets.json \\
        --port 9478        # key from $SPLASHIFY_API_KEY; targets: [{"waba_id": ..., "name": ...}]

After the first round of polls it prints `first poll cycle: <seconds> s` on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import requests
from prometheus_client import Counter, Gauge, disable_created_metrics, start_http_server

from exporter.upstream.query import AnalyticsQuery, build_fields, query_window, waba_path
from exporter.vocabulary import DIMENSIONS, HALF_HOUR_SECONDS

disable_created_metrics()

DIMENSION_NAMES = tuple(d.api_name for d in DIMENSIONS)
POINT_KEYS = tuple(d.point_key for d in DIMENSIONS)
LABELS = ("waba_id", "waba_name", *(d.label for d in DIMENSIONS))

CONVERSATIONS = Gauge(
    "whatsapp_conversations", "Conversations in the latest complete half-hour bucket.", LABELS
)
OBSERVED = Counter(
    "whatsapp_conversations_observed", "Conversations of every complete bucket seen.", LABELS
)
BUCKET_START = Gauge(
    "whatsapp_conversations_bucket_start_timestamp_seconds",
    "Start of the bucket whatsapp_conversations reports.",
    ("waba_id", "waba_name"),
)
POLL_SUCCESS = Gauge(
    "whatsapp_exporter_poll_success", "1 if the last poll succeeded.", ("waba_id", "waba_name")
)


def poll(
    session: requests.Session,
    base_url: str,
    target: dict[str, str],
    lookback: float,
    delay: float,
    counted: dict[tuple[tuple[str, ...], int], int],
) -> None:
    """Poll one target; `counted` is what its counter counted so far, per label set and bucket."""
    now = time.time()
    start, end = query_window(now, lookback)
    query = AnalyticsQuery(start=start, end=end, dimensions=DIMENSION_NAMES)
    response = session.get(
        base_url + waba_path("v25.0", target["waba_id"]),
        params={"fields": build_fields(query)},
        timeout=30,
    )
    response.raise_for_status()
    analytics = response.json().get("conversation_analytics", {})
    points = [p for block in analytics.get("data", []) for p in block.get("data_points", [])]

    complete_before = now - delay
    reported = int(complete_before // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS - HALF_HOUR_SECONDS
    latest: dict[tuple[str, ...], int] = {}
    for point in points:
        labels = (target["waba_id"], target["name"], *(str(point.get(k, "")) for k in POINT_KEYS))
        count = int(point["conversation"])
        latest.setdefault(labels, 0)
        if point["start"] == reported:
            latest[labels] += count
        OBSERVED.labels(*labels)  # the series exists, at 0, from the first sighting
        if point["end"] <= complete_before:
            before = counted.get((labels, point["start"]), 0)
            if count > before:
                OBSERVED.labels(*labels).inc(count - before)
                counted[(labels, point["start"])] = count
    for labels, count in latest.items():
        CONVERSATIONS.labels(*labels).set(count)
    BUCKET_START.labels(target["waba_id"], target["name"]).set(reported)
    for key in [key for key in counted if key[1] < start]:
        del counted[key]  # buckets that left the window are never asked for again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--targets", required=True, help='JSON file: [{"waba_id", "name"}, ...]')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9478, help="0: any free port")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between rounds")
    parser.add_argument("--lookback", type=float, default=6 * 3600.0)
    parser.add_argument("--delay", type=float, default=1800.0)
    args = parser.parse_args(argv)
    with open(args.targets) as file:
        targets = json.load(file)

    server, _ = start_http_server(args.port, args.host)
    print(f"listening on {args.host}:{server.server_port}", flush=True)

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ['SPLASHIFY_API_KEY']}"
    counted: dict[str, dict[tuple[tuple[str, ...], int], int]] = {t["name"]: {} for t in targets}
    first = True
    while True:
        began = time.monotonic()
        for target in targets:
            try:
                poll(
                    session,
                    args.base_url,
                    target,
                    args.lookback,
                    args.delay,
                    counted[target["name"]],
                )
                POLL_SUCCESS.labels(target["waba_id"], target["name"]).set(1)
            except Exception as error:
                print(f"poll of {target['name']} failed: {error!r}", file=sys.stderr, flush=True)
                POLL_SUCCESS.labels(target["waba_id"], target["name"]).set(0)
        took = time.monotonic() - began
        if first:
            print(f"first poll cycle: {took:.3f} s", flush=True)
            first = False
        time.sleep(max(0.0, args.interval - took))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
