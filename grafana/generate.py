#!/usr/bin/env python3
"""Dashboards as code: writes grafana/dashboards/*.json from the tables below.

    python grafana/generate.py          # rewrite the JSON after editing this file
    python grafana/generate.py --check  # exit 1 if the committed JSON differs (the tests run it)

Plain Python and the standard library: the dashboards are a few dozen panels, and a dict per
panel is as readable as any builder, with no dependency whose schema version moves with
Grafana's. Every query goes through the `${datasource}` variable; panel ids are fixed by hand
here, so that links to a panel (`viewPanel=`) survive edits.

How the queries read the exporter (README, "Dashboards, alerts and the stack"):
`whatsapp_conversations` is the latest complete half hour, a gauge that steps once every 30
minutes, so a graph of it (drawn with step interpolation) is the volume per half hour, about
an hour behind the clock (the data age panel shows by how much). `offset 1w` of that gauge is
the same half hour a week earlier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

MARKETING = 'conversation_category=~"MARKETING|MARKETING_LITE"'
# Every conversation query honours the WABA, phone number and category variables. `All` is
# `.*`, so that label values the API left empty ("") are included too.
SEL = 'waba_name=~"$waba", phone_number=~"$phone_number", conversation_category=~"$category"'
# Marketing share and marketing comparisons ignore the category variable (they pick it).
SEL_NO_CATEGORY = 'waba_name=~"$waba", phone_number=~"$phone_number"'
HEALTH_SEL = 'job=~"$job", instance=~"$instance", waba_name=~"$waba"'
SCRAPE_SEL = 'job=~"$job", instance=~"$instance"'
STALE_AFTER_SECONDS = 7200  # WhatsAppConversationDataStale's threshold on the bucket age

Panel = dict[str, Any]


# -- building blocks ----------------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if table else "time_series",
    }


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


GREEN = thresholds((None, "green"))


def stat(pid: int, title: str, description: str, expr: str, unit: str, pos: tuple[int, ...],
         *, steps: dict[str, Any] = GREEN, decimals: int | None = None) -> Panel:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "id": pid,
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid(*pos),
        "targets": [target(expr, instant=True)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }


def timeseries(pid: int, title: str, description: str, targets: list[dict[str, Any]],
               unit: str, pos: tuple[int, ...], *, steps: bool = True, stack: bool = False,
               overrides: list[dict[str, Any]] | None = None, minimum: float | None = 0,
               maximum: float | None = None, threshold_line: float | None = None) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        # The data is a step function (one value per half hour, or per poll): draw it as one.
        "lineInterpolation": "stepAfter" if steps else "linear",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 0,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "off" if threshold_line is None else "dashed"},
    }
    defaults: dict[str, Any] = {
        "unit": unit, "custom": custom, "color": {"mode": "palette-classic"},
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    defaults["thresholds"] = (
        GREEN if threshold_line is None
        else thresholds((None, "green"), (threshold_line, "red"))
    )
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": grid(*pos),
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                       "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def row(pid: int, title: str, y: int) -> Panel:
    return {"id": pid, "type": "row", "title": title, "collapsed": False,
            "gridPos": grid(0, y, 24, 1), "panels": []}


def grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change: new accounts and phones show up
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]],
              panels: list[Panel], *, time_from: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["whatsapp", "whatsapp-exporter"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["whatsapp-exporter"], "asDropdown": False,
                   "title": "WhatsApp dashboards", "includeVars": True, "keepTime": True}],
        "templating": {"list": variables},
        "panels": panels,
    }


# -- WhatsApp conversations ---------------------------------------------------------------------

CONVERSATIONS = "whatsapp_conversations"


def conversations_dashboard() -> dict[str, Any]:
    def by(label: str, selector: str = SEL) -> str:
        return f"sum by ({label}) ({CONVERSATIONS}{{{selector}}})"

    marketing_share_now = (
        f"sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}})\n"
        f"  / (sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}}}) > 0)"
    )
    marketing_vs_last_week = (
        f"sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}})\n"
        f"  / (sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}} offset 1w) > 0)\n  - 1"
    )
    half_hour = "Conversations per half hour"
    lag = (" Each point is the latest complete half hour at that time: the graph runs about an"
           " hour behind the clock (see the data age).")
    panels: list[Panel] = [
        row(100, "Latest complete half hour", 0),
        stat(1, "Conversations",
             "Conversations in the latest complete half hour, for the selected WABAs, phone "
             "numbers and categories.",
             f"sum({CONVERSATIONS}{{{SEL}}})", "short", (0, 1, 6, 4)),
        stat(2, "Marketing share",
             "MARKETING and MARKETING_LITE conversations as a share of all conversations in "
             "the latest complete half hour (ignores the category variable).",
             marketing_share_now, "percentunit", (6, 1, 6, 4), decimals=1),
        stat(3, "Marketing vs same half hour last week",
             "Change of marketing conversations against the same half hour a week earlier "
             "(offset 1w of the latest-bucket gauge). No value when last week had none.",
             marketing_vs_last_week, "percentunit", (12, 1, 6, 4), decimals=0,
             steps=thresholds((None, "green"), (1, "orange"), (2, "red"))),
        stat(4, "Data age",
             "How long ago the reported half hour started: normally between poll.delay + 30m "
             "and poll.delay + 60m (1h to 1h30m by default). Red from 2h, where "
             "WhatsAppConversationDataStale fires.",
             f'max(time() - {CONVERSATIONS}_bucket_start_timestamp_seconds{{waba_name=~"$waba"}})',
             "s", (18, 1, 6, 4),
             steps=thresholds((None, "green"), (STALE_AFTER_SECONDS, "red"))),

        row(101, "Volume per half hour", 5),
        timeseries(5, f"{half_hour} by category",
                   "Conversations per half hour, by conversation category." + lag,
                   [target(by("conversation_category"), "{{conversation_category}}")],
                   "short", (0, 6, 12, 9), stack=True),
        timeseries(6, f"{half_hour} by direction",
                   "Business-initiated and user-initiated conversations per half hour." + lag,
                   [target(by("conversation_direction"), "{{conversation_direction}}")],
                   "short", (12, 6, 12, 9), stack=True),
        timeseries(7, f"{half_hour} by type",
                   "Regular, free-tier and free-entry-point conversations per half hour." + lag,
                   [target(by("conversation_type"), "{{conversation_type}}")],
                   "short", (0, 15, 12, 9), stack=True),
        timeseries(8, f"{half_hour} per phone number",
                   "Conversations per half hour of each business phone number." + lag,
                   [target(by("waba_name, phone_number"), "{{waba_name}} {{phone_number}}")],
                   "short", (12, 15, 12, 9)),
        {
            "id": 9,
            "type": "bargauge",
            "title": "Top countries, latest half hour",
            "description": "The 10 countries with the most conversations in the latest "
                           "complete half hour.",
            "datasource": DS,
            "gridPos": grid(0, 24, 12, 9),
            "targets": [target(f"topk(10, {by('country')})", "{{country}}", instant=True)],
            "fieldConfig": {"defaults": {"unit": "short", "min": 0, "thresholds": GREEN,
                                         "color": {"mode": "continuous-GrYlRd"}},
                            "overrides": []},
            "options": {
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        },
        timeseries(10, "Marketing share",
                   "MARKETING and MARKETING_LITE as a share of each WABA's conversations per "
                   "half hour (ignores the category variable)." + lag,
                   [target(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL_NO_CATEGORY}, "
                           f"{MARKETING}}})\n  / (sum by (waba_name) "
                           f"({CONVERSATIONS}{{{SEL_NO_CATEGORY}}}) > 0)", "{{waba_name}}")],
                   "percentunit", (12, 24, 12, 9), maximum=1),

        row(102, "Week over week", 33),
        timeseries(11, "This week and the same half hour last week",
                   "Conversations per half hour (solid) and the same half hour a week earlier "
                   "(dashed; offset 1w of the same gauge). Backfilled history counts: see "
                   "`whatsapp-exporter backfill`.",
                   [target(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}})",
                           "{{waba_name}} this week"),
                    target(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}} offset 1w)",
                           "{{waba_name}} last week", "B")],
                   "short", (0, 34, 12, 9),
                   overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}}]}]),
        timeseries(12, "Change against last week",
                   "Conversations per half hour against the same half hour a week earlier: "
                   "+100% is twice as many. No value where last week had none.",
                   [target(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}})\n  / (sum by "
                           f"(waba_name) ({CONVERSATIONS}{{{SEL}}} offset 1w) > 0)\n  - 1",
                           "{{waba_name}}")],
                   "percentunit", (12, 34, 12, 9), minimum=None),
        timeseries(13, "Marketing and the spike alert threshold",
                   "Marketing conversations per half hour per WABA, and the line above which "
                   "WhatsAppMarketingConversationSpike fires: 3 times the same half hour a "
                   "week earlier, at least 100 (recording rules from "
                   "prometheus/recording_rules.yml; no line without last week's data).",
                   [target('waba:whatsapp_marketing_conversations:sum{waba_name=~"$waba"}',
                           "{{waba_name}} marketing"),
                    target('waba:whatsapp_marketing_conversations:spike_threshold'
                           '{waba_name=~"$waba"}', "{{waba_name}} alert threshold", "B")],
                   "short", (0, 43, 12, 9),
                   overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                               "properties": [{"id": "custom.lineStyle",
                                               "value": {"fill": "dash", "dash": [10, 10]}},
                                              {"id": "color", "value": {"mode": "fixed",
                                                                        "fixedColor": "red"}}]}]),
        timeseries(14, "Data age",
                   "How long ago the reported half hour started, per WABA. It saws between "
                   "poll.delay + 30m and poll.delay + 60m; a rising line means no new buckets "
                   "(polls failing or stuck). The dashed line is the stale alert's 2h.",
                   [target(f'time() - {CONVERSATIONS}_bucket_start_timestamp_seconds'
                           '{waba_name=~"$waba"}', "{{waba_name}}")],
                   "s", (12, 43, 12, 9), steps=False, threshold_line=STALE_AFTER_SECONDS),

        row(103, "Latest bucket in detail", 52),
        {
            "id": 15,
            "type": "table",
            "title": "Latest complete half hour",
            "description": "Every label set of the latest complete half hour, busiest first. "
                           "Label sets seen in the lookback window but not in this half hour "
                           "read 0.",
            "datasource": DS,
            "gridPos": grid(0, 53, 24, 12),
            "targets": [target(
                "sum by (waba_name, phone_number, conversation_category, "
                f"conversation_direction, conversation_type, country) ({CONVERSATIONS}{{{SEL}}})",
                instant=True, table=True)],
            "fieldConfig": {"defaults": {"unit": "short", "thresholds": GREEN}, "overrides": [
                {"matcher": {"id": "byName", "options": "Value"},
                 "properties": [{"id": "displayName", "value": "Conversations"}]}]},
            "options": {"showHeader": True, "cellHeight": "sm",
                        "sortBy": [{"displayName": "Conversations", "desc": True}]},
            "transformations": [
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            ],
        },
    ]
    variables = [
        datasource_variable(),
        query_variable("waba", "WABA",
                       "label_values(whatsapp_conversations_bucket_start_timestamp_seconds, "
                       "waba_name)"),
        query_variable("phone_number", "Phone number",
                       'label_values(whatsapp_conversations{waba_name=~"$waba"}, phone_number)'),
        query_variable("category", "Category",
                       'label_values(whatsapp_conversations{waba_name=~"$waba"}, '
                       "conversation_category)"),
    ]
    return dashboard(
        "whatsapp-conversations", "WhatsApp conversations",
        "WhatsApp Business conversations per half hour from whatsapp-exporter: by category, "
        "direction, type, country and phone number, week over week, and how old the data is.",
        variables, panels, time_from="now-24h",
    )


# -- Exporter health ----------------------------------------------------------------------------


def health_dashboard() -> dict[str, Any]:
    panels: list[Panel] = [
        row(100, "Now", 0),
        stat(1, "Targets", "WABAs and partner customers in the loaded config.",
             f"sum(whatsapp_exporter_targets{{{SCRAPE_SEL}}})", "short", (0, 1, 6, 4)),
        stat(2, "Targets failing",
             "Targets whose last poll failed (they keep serving their last good data).",
             f"count(whatsapp_exporter_poll_success{{{HEALTH_SEL}}} == 0) or vector(0)",
             "short", (6, 1, 6, 4), steps=thresholds((None, "green"), (1, "red"))),
        stat(3, "Oldest last success",
             "Time since the least recent successful poll among the selected targets. Red "
             "from 30m, where WhatsAppConversationDataStale fires.",
             f"max(time() - whatsapp_exporter_last_success_timestamp_seconds{{{HEALTH_SEL}}})",
             "s", (12, 1, 6, 4), steps=thresholds((None, "green"), (1800, "red"))),
        stat(4, "Series exposed",
             "Samples in the last scrape of the selected exporters (all metrics, process "
             "metrics included). Each enabled dimension multiplies the conversation series.",
             f"sum(scrape_samples_scraped{{{SCRAPE_SEL}}})", "short", (18, 1, 6, 4)),

        row(101, "Polls", 5),
        timeseries(5, "Poll success per target",
                   "1 when the target's last poll succeeded, 0 when it failed.",
                   [target(f"min by (waba_name) (whatsapp_exporter_poll_success{{{HEALTH_SEL}}})",
                           "{{waba_name}}")],
                   "short", (0, 6, 12, 8), maximum=1),
        timeseries(6, "Time since last successful poll",
                   "Per target; saws between 0 and poll.interval while polls succeed. The "
                   "dashed line is the stale alert's 30m.",
                   [target("max by (waba_name) (time() - "
                           f"whatsapp_exporter_last_success_timestamp_seconds{{{HEALTH_SEL}}})",
                           "{{waba_name}}")],
                   "s", (12, 6, 12, 8), steps=False, threshold_line=1800),
        timeseries(7, "Poll duration",
                   "How long each target's last poll took, retries and client-side rate "
                   "limiting included. A poll never runs past 80% of poll.interval.",
                   [target("max by (waba_name) "
                           f"(whatsapp_exporter_poll_duration_seconds{{{HEALTH_SEL}}})",
                           "{{waba_name}}")],
                   "s", (0, 14, 12, 8)),
        timeseries(8, "Poll errors by reason",
                   "Failed polls per reason (auth, permission, rate_limited, upstream, "
                   "timeout, ...), as increases per interval. auth and permission need a human.",
                   [target("sum by (waba_name, reason) (increase("
                           f"whatsapp_exporter_poll_errors_total{{{HEALTH_SEL}}}"
                           "[$__rate_interval]))", "{{waba_name}} {{reason}}")],
                   "short", (12, 14, 12, 8), steps=False),

        row(102, "Upstream API", 22),
        timeseries(9, "API requests by status",
                   "Requests to the Splashify API per second by HTTP status (every attempt, "
                   'retries included; code="error": no answer).',
                   [target("sum by (code) (rate("
                           f"whatsapp_exporter_api_requests_total{{{HEALTH_SEL}}}"
                           "[$__rate_interval]))", "{{code}}")],
                   "reqps", (0, 23, 12, 8), steps=False, stack=True),
        timeseries(10, "API requests per target",
                   "Requests per second per target: about 1 per poll.interval when all is "
                   "well; more means retries. Mind the ~200 calls/hour budget per WABA.",
                   [target("sum by (waba_name) (rate("
                           f"whatsapp_exporter_api_requests_total{{{HEALTH_SEL}}}"
                           "[$__rate_interval]))", "{{waba_name}}")],
                   "reqps", (12, 23, 12, 8), steps=False),

        row(103, "The exporter", 31),
        timeseries(11, "Series per metric",
                   "Series the selected exporters serve, per metric name.",
                   [target('count by (__name__) ({__name__=~"whatsapp_.*", '
                           f"{SCRAPE_SEL}}})", "{{__name__}}")],
                   "short", (0, 32, 12, 8)),
        timeseries(12, "Scrape duration",
                   "How long Prometheus' scrape of /metrics took. A scrape never calls the "
                   "upstream, so this stays in milliseconds.",
                   [target(f"max by (instance) (scrape_duration_seconds{{{SCRAPE_SEL}}})",
                           "{{instance}}")],
                   "s", (12, 32, 12, 8), steps=False),
        {
            "id": 13,
            "type": "table",
            "title": "Build",
            "description": "Version of each exporter and of the Python running it.",
            "datasource": DS,
            "gridPos": grid(0, 40, 24, 5),
            "targets": [target(f"whatsapp_exporter_build_info{{{SCRAPE_SEL}}}",
                               instant=True, table=True)],
            "fieldConfig": {"defaults": {"unit": "string", "thresholds": GREEN},
                            "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
            "transformations": [
                {"id": "organize",
                 "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}},
            ],
        },
    ]
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(whatsapp_exporter_build_info, job)"),
        query_variable("instance", "Instance",
                       'label_values(whatsapp_exporter_build_info{job=~"$job"}, instance)'),
        query_variable("waba", "WABA",
                       'label_values(whatsapp_exporter_poll_success{job=~"$job", '
                       'instance=~"$instance"}, waba_name)'),
    ]
    return dashboard(
        "whatsapp-exporter-health", "WhatsApp exporter health",
        "Is whatsapp-exporter polling the Splashify API well: poll success and age per "
        "target, API requests by status, poll duration, errors by reason, series count.",
        variables, panels, time_from="now-6h",
    )


DASHBOARDS = {
    "whatsapp-conversations.json": conversations_dashboard,
    "whatsapp-exporter-health.json": health_dashboard,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the files instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/generate.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
