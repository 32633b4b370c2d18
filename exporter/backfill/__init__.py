"""`whatsapp-exporter backfill`: past data as OpenMetrics text with timestamps, for Prometheus.

The live exporter serves, at any time t, what its last poll made of the lookback window. The
backfill replays that for past times. It reads each target's HALF_HOUR history once (in chunks of
a day, through the same client, query builder and parser as a poll), then, for every step t of
the requested range, does what a poll at t does with that data: the same `query_window`, the
same `buckets.evaluate`. It writes the result stamped t. A backfilled sample therefore means
what a live one means:
`whatsapp_conversations` at t is the bucket the live exporter reports at t (the same half hour
of the week a week later, so `offset 1w` compares like with like),
`whatsapp_conversations_bucket_start_timestamp_seconds` is that bucket's start, and
`whatsapp_conversations_observed_total` counts from the start of the backfill as if an exporter
had been started then. Names, HELP texts and labels come from the metrics table
(`serve/metrics.py`). With `--label job=... --label instance=...` (what Prometheus adds on a
scrape) the backfilled and the live series are the same series.

Two differences remain, both because the upstream cannot tell the past as it was. Counts are
today's settled numbers, not the provisional ones a live poll saw. A label set that first showed
up in a bucket still in progress at t reads 0 from t on, where the live exporter showed it only
once the provisional count did.

The output lists every metric family once. Within a family, series follow each other, and each
series has its samples in time order. It ends with `# EOF`. That is what
`promtool tsdb create-blocks-from openmetrics` reads.

Modules: `history` (read and replay), `openmetrics` (the writer), `command` (flags, plan, run).
"""
