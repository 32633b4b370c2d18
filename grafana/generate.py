#!/usr/bin/env python3
"""Dashboards as code: writes grafana/dashboards/*.json with Grafana's foundation SDK.

    python grafana/generate.py          # rewrite the JSON after editing this file
    python grafana/generate.py --check  # exit 1 if the committed JSON differs (the tests run it)

The panels are built with the builders of `grafana-foundation-sdk` (the `dashboards` extra),
pinned to the build for the Grafana release that docker-compose.yml runs, whose dashboard
schema (schemaVersion 39) is the one Grafana provisions as is. Every query goes through the
`${datasource}` variable; panel ids are fixed by hand here, so that links to a panel
(`viewPanel=`) survive edits, and so are the grid positions.

How the queries read the exporter (docs/dashboards.md): `whatsapp_conversations` is the latest
complete half hour, a gauge that steps once every 30 minutes, so a graph of it (drawn with step
interpolation) is the volume per half hour, about an hour behind the clock (the data age panel
shows by how much). `offset 1w` of that gauge is the same half hour a week earlier.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.cog import variants
    from grafana_foundation_sdk.cog.builder import Builder
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat
except ImportError:  # pragma: no cover - said once, in words, instead of a traceback
    sys.exit("grafana/generate.py needs the dashboards extra: pip install -e '.[dashboards]'")

OUT = Path(__file__).resolve().parent / "dashboards"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
SCHEMA_VERSION = 39  # the SDK's default for Grafana 11.1; the tests hold it

MARKETING = 'conversation_category=~"MARKETING|MARKETING_LITE"'
# Every conversation query honours the WABA, phone number and category variables. `All` is
# `.*`, so that label values the API left empty ("") are included too.
SEL = 'waba_name=~"$waba", phone_number=~"$phone_number", conversation_category=~"$category"'
# Marketing share and marketing comparisons ignore the category variable (they pick it).
SEL_NO_CATEGORY = 'waba_name=~"$waba", phone_number=~"$phone_number"'
HEALTH_SEL = 'job=~"$job", instance=~"$instance", waba_name=~"$waba"'
SCRAPE_SEL = 'job=~"$job", instance=~"$instance"'
STALE_AFTER_SECONDS = 7200  # WhatsAppConversationDataStale's threshold on the bucket age

Grid = tuple[int, int, int, int]  # x, y, w, h
AnyBuilder = Builder[Any]  # a panel, a row or a variable


# -- building blocks ----------------------------------------------------------------------------


def query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    q = (prometheus.Dataquery().ref_id(ref).datasource(DS).expr(expr)
         .legend_format(legend or "__auto")
         .format(PromQueryFormat.TABLE if table_format else PromQueryFormat.TIME_SERIES))
    return q.instant() if instant else q.range()


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in steps]))


def green() -> dash.ThresholdsConfig:
    return thresholds((None, "green"))


def color(mode: model.FieldColorModeId) -> dash.FieldColor:
    return dash.FieldColor().mode(mode)


def grid(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(x=x, y=y, w=w, h=h)


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def dashed(*, fixed_color: str | None = None) -> list[model.DynamicConfigValue]:
    """Override properties that draw a series dashed (last week, an alert threshold)."""
    props = [model.DynamicConfigValue(id_val="custom.lineStyle",
                                      value=common.LineStyle(fill="dash", dash=[10, 10]))]
    if fixed_color:
        props.append(model.DynamicConfigValue(id_val="color", value=model.FieldColor(
            mode=model.FieldColorModeId.FIXED, fixed_color=fixed_color)))
    return props


def stat_panel(pid: int, title: str, description: str, expr: str, unit: str, pos: Grid, *,
               steps: dash.ThresholdsConfig | None = None,
               decimals: int | None = None) -> stat.Panel:
    panel = (stat.Panel().id(pid).title(title).description(description).datasource(DS)
             .grid_pos(grid(*pos)).with_target(query(expr, instant=True))
             .unit(unit).thresholds(steps or green())
             .color_scheme(color(model.FieldColorModeId.THRESHOLDS))
             .reduce_options(last_value())
             .color_mode(common.BigValueColorMode.VALUE)
             .graph_mode(common.BigValueGraphMode.NONE)
             .text_mode(common.BigValueTextMode.AUTO)
             .justify_mode(common.BigValueJustifyMode.AUTO)
             .orientation(common.VizOrientation.AUTO))
    return panel if decimals is None else panel.decimals(decimals)


def timeseries_panel(pid: int, title: str, description: str,
                     targets: list[Builder[variants.Dataquery]], unit: str, pos: Grid, *,
                     steps: bool = True, stack: bool = False,
                     dashed_ref: str | None = None, dashed_color: str | None = None,
                     minimum: float | None = 0, maximum: float | None = None,
                     threshold_line: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().id(pid).title(title).description(description).datasource(DS)
             .grid_pos(grid(*pos)).targets(targets).unit(unit)
             .color_scheme(color(model.FieldColorModeId.PALETTE_CLASSIC))
             .draw_style(common.GraphDrawStyle.LINE)
             # The data is a step function (one value per half hour, or per poll): draw it as
             # one.
             .line_interpolation(common.LineInterpolation.STEP_AFTER if steps
                                 else common.LineInterpolation.LINEAR)
             .line_width(1).fill_opacity(20 if stack else 0)
             .show_points(common.VisibilityMode.NEVER).span_nulls(False)
             .stacking(common_builders.StackingConfig().group("A").mode(
                 common.StackingMode.NORMAL if stack else common.StackingMode.NONE))
             .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(
                 common.GraphThresholdsStyleMode.OFF if threshold_line is None
                 else common.GraphThresholdsStyleMode.DASHED))
             .thresholds(green() if threshold_line is None
                         else thresholds((None, "green"), (threshold_line, "red")))
             .legend(common_builders.VizLegendOptions()
                     .display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.RIGHT)
                     .show_legend(True).calcs(["lastNotNull", "max"]))
             .tooltip(common_builders.VizTooltipOptions()
                      .mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if dashed_ref is not None:
        panel = panel.override_by_query(dashed_ref, dashed(fixed_color=dashed_color))
    return panel


def bargauge_panel(pid: int, title: str, description: str, expr: str, legend: str, unit: str,
                   pos: Grid) -> bargauge.Panel:
    return (bargauge.Panel().id(pid).title(title).description(description).datasource(DS)
            .grid_pos(grid(*pos)).with_target(query(expr, legend, instant=True))
            .unit(unit).min(0).thresholds(green())
            .color_scheme(color(model.FieldColorModeId.CONTINUOUS_GR_YL_RD))
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .show_unfilled(True).reduce_options(last_value()))


def table_panel(pid: int, title: str, description: str, expr: str, unit: str, pos: Grid, *,
                hide: list[str], value_name: str | None = None) -> table.Panel:
    panel = (table.Panel().id(pid).title(title).description(description).datasource(DS)
             .grid_pos(grid(*pos)).with_target(query(expr, instant=True, table_format=True))
             .unit(unit).thresholds(green()).show_header(True)
             .cell_height(common.TableCellHeight.SM)
             .with_transformation(model.DataTransformerConfig(
                 id_val="organize",
                 options={"excludeByName": dict.fromkeys(hide, True)})))
    if value_name is not None:  # name the value column and sort by it, busiest first
        panel = (panel.override_by_name("Value", [
                     model.DynamicConfigValue(id_val="displayName", value=value_name)])
                 .sort_by([common_builders.TableSortByFieldState()
                           .display_name(value_name).desc(True)]))
    return panel


def row(pid: int, title: str, y: int) -> dash.Row:
    return dash.Row(title).id(pid).collapsed(False).grid_pos(grid(0, y, 24, 1))


def datasource_variable() -> dash.DatasourceVariable:
    return (dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .hide(model.VariableHide.DONT_HIDE).regex(""))


class DefinedVariable(model.VariableModel):
    """The SDK's variable model plus `definition`, which it lacks: the query as Grafana shows it
    in the dashboard's variable list (and as the stack test reads it)."""

    definition: str | None = None

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        if self.definition is not None:
            payload["definition"] = self.definition
        return payload


class QueryVariable(dash.QueryVariable):
    """`dash.QueryVariable` that can also set `definition`."""

    _internal: DefinedVariable

    def __init__(self, name: str) -> None:
        self._internal = DefinedVariable(type_val=model.VariableType.QUERY, name=name)

    def definition(self, definition: str) -> QueryVariable:
        self._internal.definition = definition
        return self


def query_variable(name: str, label: str, promql: str) -> QueryVariable:
    return (QueryVariable(name).label(label).datasource(DS)
            .query({"query": promql, "refId": f"{name}-values"}).definition(promql)
            # On time range change: new accounts and phones show up.
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True).multi(True).all_value(".*")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .options([]).sort(model.VariableSort.ALPHABETICAL_ASC)
            .hide(model.VariableHide.DONT_HIDE).regex(""))


def dashboard(uid: str, title: str, description: str, variables: list[AnyBuilder],
              sections: list[tuple[dash.Row, list[AnyBuilder]]], *,
              time_from: str) -> dash.Dashboard:
    board = (dash.Dashboard(title).uid(uid).description(description)
             .tags(["whatsapp", "whatsapp-exporter"]).timezone("").editable()
             .tooltip(model.DashboardCursorSync.CROSSHAIR).refresh("1m").version(1)
             .time(time_from, "now").annotations([])
             .link(dash.DashboardLink("WhatsApp dashboards")
                   .type(model.DashboardLinkType.DASHBOARDS).tags(["whatsapp-exporter"])
                   .as_dropdown(False).include_vars(True).keep_time(True))
             .variables(variables))
    for section_row, panels in sections:
        board = board.with_row(section_row)
        for panel in panels:
            board = board.with_panel(panel)
    return board


# -- WhatsApp conversations ---------------------------------------------------------------------

CONVERSATIONS = "whatsapp_conversations"
HALF_HOUR = "Conversations per half hour"
LAG = (" Each point is the latest complete half hour at that time: the graph runs about an"
       " hour behind the clock (see the data age).")


def by(label: str, selector: str = SEL) -> str:
    return f"sum by ({label}) ({CONVERSATIONS}{{{selector}}})"


def latest_half_hour() -> list[AnyBuilder]:
    marketing_share_now = (
        f"sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}})\n"
        f"  / (sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}}}) > 0)"
    )
    marketing_vs_last_week = (
        f"sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}})\n"
        f"  / (sum({CONVERSATIONS}{{{SEL_NO_CATEGORY}, {MARKETING}}} offset 1w) > 0)\n  - 1"
    )
    return [
        stat_panel(1, "Conversations",
                   "Conversations in the latest complete half hour, for the selected WABAs, "
                   "phone numbers and categories.",
                   f"sum({CONVERSATIONS}{{{SEL}}})", "short", (0, 1, 6, 4)),
        stat_panel(2, "Marketing share",
                   "MARKETING and MARKETING_LITE conversations as a share of all conversations "
                   "in the latest complete half hour (ignores the category variable).",
                   marketing_share_now, "percentunit", (6, 1, 6, 4), decimals=1),
        stat_panel(3, "Marketing vs same half hour last week",
                   "Change of marketing conversations against the same half hour a week "
                   "earlier (offset 1w of the latest-bucket gauge). No value when last week "
                   "had none.",
                   marketing_vs_last_week, "percentunit", (12, 1, 6, 4), decimals=0,
                   steps=thresholds((None, "green"), (1, "orange"), (2, "red"))),
        stat_panel(4, "Data age",
                   "How long ago the reported half hour started: normally between poll.delay "
                   "+ 30m and poll.delay + 60m (1h to 1h30m by default). Red from 2h, where "
                   "WhatsAppConversationDataStale fires.",
                   f"max(time() - {CONVERSATIONS}_bucket_start_timestamp_seconds"
                   '{waba_name=~"$waba"})',
                   "s", (18, 1, 6, 4),
                   steps=thresholds((None, "green"), (STALE_AFTER_SECONDS, "red"))),
    ]


def volume_per_half_hour() -> list[AnyBuilder]:
    return [
        timeseries_panel(5, f"{HALF_HOUR} by category",
                         "Conversations per half hour, by conversation category." + LAG,
                         [query(by("conversation_category"), "{{conversation_category}}")],
                         "short", (0, 6, 12, 9), stack=True),
        timeseries_panel(6, f"{HALF_HOUR} by direction",
                         "Business-initiated and user-initiated conversations per half hour."
                         + LAG,
                         [query(by("conversation_direction"), "{{conversation_direction}}")],
                         "short", (12, 6, 12, 9), stack=True),
        timeseries_panel(7, f"{HALF_HOUR} by type",
                         "Regular, free-tier and free-entry-point conversations per half hour."
                         + LAG,
                         [query(by("conversation_type"), "{{conversation_type}}")],
                         "short", (0, 15, 12, 9), stack=True),
        timeseries_panel(8, f"{HALF_HOUR} per phone number",
                         "Conversations per half hour of each business phone number." + LAG,
                         [query(by("waba_name, phone_number"),
                                "{{waba_name}} {{phone_number}}")],
                         "short", (12, 15, 12, 9)),
        bargauge_panel(9, "Top countries, latest half hour",
                       "The 10 countries with the most conversations in the latest complete "
                       "half hour.",
                       f"topk(10, {by('country')})", "{{country}}", "short", (0, 24, 12, 9)),
        timeseries_panel(10, "Marketing share",
                         "MARKETING and MARKETING_LITE as a share of each WABA's conversations "
                         "per half hour (ignores the category variable)." + LAG,
                         [query(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL_NO_CATEGORY}, "
                                f"{MARKETING}}})\n  / (sum by (waba_name) "
                                f"({CONVERSATIONS}{{{SEL_NO_CATEGORY}}}) > 0)",
                                "{{waba_name}}")],
                         "percentunit", (12, 24, 12, 9), maximum=1),
    ]


def week_over_week() -> list[AnyBuilder]:
    return [
        timeseries_panel(11, "This week and the same half hour last week",
                         "Conversations per half hour (solid) and the same half hour a week "
                         "earlier (dashed; offset 1w of the same gauge). Backfilled history "
                         "counts: see `whatsapp-exporter backfill`.",
                         [query(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}})",
                                "{{waba_name}} this week"),
                          query(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}} offset 1w)",
                                "{{waba_name}} last week", "B")],
                         "short", (0, 34, 12, 9), dashed_ref="B"),
        timeseries_panel(12, "Change against last week",
                         "Conversations per half hour against the same half hour a week "
                         "earlier: +100% is twice as many. No value where last week had none.",
                         [query(f"sum by (waba_name) ({CONVERSATIONS}{{{SEL}}})\n  / (sum by "
                                f"(waba_name) ({CONVERSATIONS}{{{SEL}}} offset 1w) > 0)\n  - 1",
                                "{{waba_name}}")],
                         "percentunit", (12, 34, 12, 9), minimum=None),
        timeseries_panel(13, "Marketing and the spike alert threshold",
                         "Marketing conversations per half hour per WABA, and the line above "
                         "which WhatsAppMarketingConversationSpike fires: 3 times the same half "
                         "hour a week earlier, at least 100 (recording rules from "
                         "prometheus/recording_rules.yml; no line without last week's data).",
                         [query('waba:whatsapp_marketing_conversations:sum{waba_name=~"$waba"}',
                                "{{waba_name}} marketing"),
                          query("waba:whatsapp_marketing_conversations:spike_threshold"
                                '{waba_name=~"$waba"}', "{{waba_name}} alert threshold", "B")],
                         "short", (0, 43, 12, 9), dashed_ref="B", dashed_color="red"),
        timeseries_panel(14, "Data age",
                         "How long ago the reported half hour started, per WABA. It saws "
                         "between poll.delay + 30m and poll.delay + 60m; a rising line means "
                         "no new buckets (polls failing or stuck). The dashed line is the "
                         "stale alert's 2h.",
                         [query(f"time() - {CONVERSATIONS}_bucket_start_timestamp_seconds"
                                '{waba_name=~"$waba"}', "{{waba_name}}")],
                         "s", (12, 43, 12, 9), steps=False,
                         threshold_line=STALE_AFTER_SECONDS),
    ]


def latest_bucket_in_detail() -> list[AnyBuilder]:
    return [
        table_panel(15, "Latest complete half hour",
                    "Every label set of the latest complete half hour, busiest first. Label "
                    "sets seen in the lookback window but not in this half hour read 0.",
                    "sum by (waba_name, phone_number, conversation_category, "
                    "conversation_direction, conversation_type, country) "
                    f"({CONVERSATIONS}{{{SEL}}})",
                    "short", (0, 53, 24, 12), hide=["Time"], value_name="Conversations"),
    ]


def conversations_dashboard() -> dash.Dashboard:
    variables: list[AnyBuilder] = [
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
        variables, [
            (row(100, "Latest complete half hour", 0), latest_half_hour()),
            (row(101, "Volume per half hour", 5), volume_per_half_hour()),
            (row(102, "Week over week", 33), week_over_week()),
            (row(103, "Latest bucket in detail", 52), latest_bucket_in_detail()),
        ], time_from="now-24h",
    )


# -- Exporter health ----------------------------------------------------------------------------


def health_now() -> list[AnyBuilder]:
    return [
        stat_panel(1, "Targets", "WABAs and partner customers in the loaded config.",
                   f"sum(whatsapp_exporter_targets{{{SCRAPE_SEL}}})", "short", (0, 1, 6, 4)),
        stat_panel(2, "Targets failing",
                   "Targets whose last poll failed (they keep serving their last good data).",
                   f"count(whatsapp_exporter_poll_success{{{HEALTH_SEL}}} == 0) or vector(0)",
                   "short", (6, 1, 6, 4), steps=thresholds((None, "green"), (1, "red"))),
        stat_panel(3, "Oldest last success",
                   "Time since the least recent successful poll among the selected targets. "
                   "Red from 30m, where WhatsAppConversationDataStale fires.",
                   "max(time() - "
                   f"whatsapp_exporter_last_success_timestamp_seconds{{{HEALTH_SEL}}})",
                   "s", (12, 1, 6, 4), steps=thresholds((None, "green"), (1800, "red"))),
        stat_panel(4, "Series exposed",
                   "Samples in the last scrape of the selected exporters (all metrics, process "
                   "metrics included). Each enabled dimension multiplies the conversation "
                   "series.",
                   f"sum(scrape_samples_scraped{{{SCRAPE_SEL}}})", "short", (18, 1, 6, 4)),
    ]


def health_polls() -> list[AnyBuilder]:
    return [
        timeseries_panel(5, "Poll success per target",
                         "1 when the target's last poll succeeded, 0 when it failed.",
                         [query("min by (waba_name) "
                                f"(whatsapp_exporter_poll_success{{{HEALTH_SEL}}})",
                                "{{waba_name}}")],
                         "short", (0, 6, 12, 8), maximum=1),
        timeseries_panel(6, "Time since last successful poll",
                         "Per target; saws between 0 and poll.interval while polls succeed. "
                         "The dashed line is the stale alert's 30m.",
                         [query("max by (waba_name) (time() - "
                                f"whatsapp_exporter_last_success_timestamp_seconds{{{HEALTH_SEL}}})",
                                "{{waba_name}}")],
                         "s", (12, 6, 12, 8), steps=False, threshold_line=1800),
        timeseries_panel(7, "Poll duration",
                         "How long each target's last poll took, retries and client-side rate "
                         "limiting included. A poll never runs past 80% of poll.interval.",
                         [query("max by (waba_name) "
                                f"(whatsapp_exporter_poll_duration_seconds{{{HEALTH_SEL}}})",
                                "{{waba_name}}")],
                         "s", (0, 14, 12, 8)),
        timeseries_panel(8, "Poll errors by reason",
                         "Failed polls per reason (auth, permission, rate_limited, upstream, "
                         "timeout, ...), as increases per interval. auth and permission need a "
                         "human.",
                         [query("sum by (waba_name, reason) (increase("
                                f"whatsapp_exporter_poll_errors_total{{{HEALTH_SEL}}}"
                                "[$__rate_interval]))", "{{waba_name}} {{reason}}")],
                         "short", (12, 14, 12, 8), steps=False),
    ]


def health_upstream() -> list[AnyBuilder]:
    return [
        timeseries_panel(9, "API requests by status",
                         "Requests to the Splashify API per second by HTTP status (every "
                         'attempt, retries included; code="error": no answer).',
                         [query("sum by (code) (rate("
                                f"whatsapp_exporter_api_requests_total{{{HEALTH_SEL}}}"
                                "[$__rate_interval]))", "{{code}}")],
                         "reqps", (0, 23, 12, 8), steps=False, stack=True),
        timeseries_panel(10, "API requests per target",
                         "Requests per second per target: about 1 per poll.interval when all "
                         "is well; more means retries. Mind the ~200 calls/hour budget per "
                         "WABA.",
                         [query("sum by (waba_name) (rate("
                                f"whatsapp_exporter_api_requests_total{{{HEALTH_SEL}}}"
                                "[$__rate_interval]))", "{{waba_name}}")],
                         "reqps", (12, 23, 12, 8), steps=False),
        timeseries_panel(14, "Rate budget used",
                         "How much of the upstream's rate budget is spent, per target and "
                         "budget (app: X-App-Usage; business_use_case: the account's, "
                         "X-Business-Use-Case-Usage), the highest of call count, CPU time and "
                         "total time, as the last answer said. The upstream throttles at 100%; "
                         "the dashed line is WhatsAppExporterApiUsageHigh's 90%.",
                         [query("max by (waba_name, type) "
                                f"(whatsapp_exporter_api_usage_percent{{{HEALTH_SEL}}})",
                                "{{waba_name}} {{type}}")],
                         "percent", (0, 31, 12, 8), threshold_line=90),
        timeseries_panel(15, "Time to regain access",
                         "For a throttled target: how long until the upstream lets it back in "
                         "(its estimated_time_to_regain_access, counting down). 0 while it is "
                         "not throttled.",
                         [query("max by (waba_name) "
                                f"(whatsapp_exporter_api_regain_access_seconds{{{HEALTH_SEL}}})",
                                "{{waba_name}}")],
                         "s", (12, 31, 12, 8), steps=False),
    ]


def health_exporter() -> list[AnyBuilder]:
    return [
        timeseries_panel(11, "Series per metric",
                         "Series the selected exporters serve, per metric name.",
                         [query('count by (__name__) ({__name__=~"whatsapp_.*", '
                                f"{SCRAPE_SEL}}})", "{{__name__}}")],
                         "short", (0, 41, 12, 8)),
        timeseries_panel(12, "Scrape duration",
                         "How long Prometheus' scrape of /metrics took. A scrape never calls "
                         "the upstream, so this stays in milliseconds.",
                         [query(f"max by (instance) (scrape_duration_seconds{{{SCRAPE_SEL}}})",
                                "{{instance}}")],
                         "s", (12, 41, 12, 8), steps=False),
        table_panel(13, "Build", "Version of each exporter and of the Python running it.",
                    f"whatsapp_exporter_build_info{{{SCRAPE_SEL}}}", "string", (0, 49, 24, 5),
                    hide=["Time", "Value", "__name__"]),
    ]


def health_dashboard() -> dash.Dashboard:
    variables: list[AnyBuilder] = [
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
        "target, API requests by status, the rate budget used, poll duration, errors by "
        "reason, series count.",
        variables, [
            (row(100, "Now", 0), health_now()),
            (row(101, "Polls", 5), health_polls()),
            (row(102, "Upstream API", 22), health_upstream()),
            (row(103, "The exporter", 40), health_exporter()),
        ], time_from="now-6h",
    )


# -- WhatsApp messages and pricing --------------------------------------------------------------

VOLUME = "whatsapp_pricing_volume"
MESSAGES_PER_HALF_HOUR = "Messages per half hour"
MESSAGE_LAG = (" Each point is the latest complete half hour at that time (pricing_analytics): "
               "the graph runs about an hour behind the clock.")
# Pricing queries honour the WABA, phone number and pricing category variables; the splits
# that pick a category or a type themselves (billed and free, tiers, marketing) ignore the
# category variable. Message analytics have no dimensions: the WABA variable alone.
PSEL = 'waba_name=~"$waba", phone_number=~"$phone_number", pricing_category=~"$category"'
PSEL_NO_CATEGORY = 'waba_name=~"$waba", phone_number=~"$phone_number"'
WSEL = 'waba_name=~"$waba"'
MARKETING_MESSAGES = 'pricing_category=~"MARKETING|MARKETING_LITE"'
BILLED = 'pricing_type="REGULAR"'
FREE = 'pricing_type!="REGULAR"'
DELIVERY_ALERT_RATIO = 0.9  # WhatsAppDeliveryRateLow's threshold


def volume_by(label: str, selector: str = PSEL) -> str:
    return f"sum by ({label}) ({VOLUME}{{{selector}}})"


def delivery_ratio(by_waba: bool) -> str:
    group = "sum by (waba_name) " if by_waba else "sum"
    return (f"{group}(whatsapp_messages_delivered{{{WSEL}}})\n"
            f"  / ({group}(whatsapp_messages_sent{{{WSEL}}}) > 0)")


def messages_now() -> list[AnyBuilder]:
    return [
        stat_panel(1, "Messages",
                   "Messages that pricing_analytics counts in the latest complete half hour "
                   "(billed and free), for the selected WABAs, phone numbers and categories.",
                   f"sum({VOLUME}{{{PSEL}}})", "short", (0, 1, 6, 4)),
        stat_panel(2, "Billed share",
                   "Billed (pricing type REGULAR) messages as a share of all messages in the "
                   "latest complete half hour; service and entry-point messages are free.",
                   f"sum({VOLUME}{{{PSEL}, {BILLED}}})\n  / (sum({VOLUME}{{{PSEL}}}) > 0)",
                   "percentunit", (6, 1, 6, 4), decimals=1),
        stat_panel(3, "Cost, latest half hour",
                   "Cost of the latest complete half hour as pricing_analytics reports it, in "
                   "the account's currency (summed over the selected WABAs: mind mixed "
                   "currencies). Accounts billed through a partner get no cost.",
                   f"sum(whatsapp_pricing_cost{{{PSEL}}})", "short", (12, 1, 6, 4),
                   decimals=2),
        stat_panel(4, "Delivered",
                   "Messages delivered as a share of messages sent in the latest complete half "
                   "hour (message analytics). Red below 90%, where WhatsAppDeliveryRateLow "
                   "fires on enough volume.",
                   delivery_ratio(by_waba=False), "percentunit", (18, 1, 6, 4), decimals=1,
                   steps=thresholds((None, "red"), (DELIVERY_ALERT_RATIO, "green"))),
    ]


def messages_volume() -> list[AnyBuilder]:
    return [
        timeseries_panel(5, "Billed and free messages per half hour",
                         "Billed (REGULAR) and free (FREE_CUSTOMER_SERVICE, FREE_ENTRY_POINT) "
                         "messages per half hour (ignores the category variable)."
                         + MESSAGE_LAG,
                         [query(f"sum({VOLUME}{{{PSEL_NO_CATEGORY}, {BILLED}}})", "billed"),
                          query(f"sum({VOLUME}{{{PSEL_NO_CATEGORY}, {FREE}}})", "free", "B")],
                         "short", (0, 6, 12, 9), stack=True),
        timeseries_panel(6, f"{MESSAGES_PER_HALF_HOUR} by pricing category",
                         "Messages per half hour by pricing category (MARKETING, UTILITY, "
                         "AUTHENTICATION, SERVICE, REFERRAL_CONVERSION, ...)." + MESSAGE_LAG,
                         [query(volume_by("pricing_category"), "{{pricing_category}}")],
                         "short", (12, 6, 12, 9), stack=True),
        timeseries_panel(7, f"{MESSAGES_PER_HALF_HOUR} by pricing type",
                         "Messages per half hour by pricing type: REGULAR is billed, "
                         "FREE_CUSTOMER_SERVICE and FREE_ENTRY_POINT are free." + MESSAGE_LAG,
                         [query(volume_by("pricing_type"), "{{pricing_type}}")],
                         "short", (0, 15, 12, 9), stack=True),
        timeseries_panel(8, f"Billed {MESSAGES_PER_HALF_HOUR.lower()} by country",
                         "Billed messages per half hour by the country of the user (prices "
                         "differ by country)." + MESSAGE_LAG,
                         [query(volume_by("country", f"{PSEL}, {BILLED}"), "{{country}}")],
                         "short", (12, 15, 12, 9), stack=True),
        timeseries_panel(9, f"{MESSAGES_PER_HALF_HOUR} by volume tier",
                         "Utility and authentication messages per half hour by the volume tier "
                         "they were billed in (ignores the category variable)." + MESSAGE_LAG,
                         [query(volume_by("pricing_category, tier",
                                          f'{PSEL_NO_CATEGORY}, tier!=""'),
                                "{{pricing_category}} {{tier}}")],
                         "short", (0, 24, 12, 9), stack=True),
        timeseries_panel(10, f"{MESSAGES_PER_HALF_HOUR} per phone number",
                         "Messages per half hour of each business phone number." + MESSAGE_LAG,
                         [query(volume_by("waba_name, phone_number"),
                                "{{waba_name}} {{phone_number}}")],
                         "short", (12, 24, 12, 9)),
    ]


def messages_marketing_and_delivery() -> list[AnyBuilder]:
    return [
        timeseries_panel(11, "Marketing messages and the spike alert threshold",
                         "Marketing messages (MARKETING and MARKETING_LITE) per half hour per "
                         "WABA, and the line above which WhatsAppMarketingMessageSpike fires: 3 "
                         "times the same half hour a week earlier, at least 100 (recording rules "
                         "from prometheus/recording_rules.yml; no line without last week's data).",
                         [query(f"waba:whatsapp_marketing_messages:sum{{{WSEL}}}",
                                "{{waba_name}} marketing"),
                          query(f"waba:whatsapp_marketing_messages:spike_threshold{{{WSEL}}}",
                                "{{waba_name}} alert threshold", "B")],
                         "short", (0, 34, 12, 9), dashed_ref="B", dashed_color="red"),
        timeseries_panel(12, "Marketing messages, this week and last week",
                         "Marketing messages per half hour (solid) and the same half hour a "
                         "week earlier (dashed; offset 1w of the same gauge).",
                         [query(f"sum by (waba_name) ({VOLUME}{{{PSEL_NO_CATEGORY}, "
                                f"{MARKETING_MESSAGES}}})", "{{waba_name}} this week"),
                          query(f"sum by (waba_name) ({VOLUME}{{{PSEL_NO_CATEGORY}, "
                                f"{MARKETING_MESSAGES}}} offset 1w)", "{{waba_name}} last week",
                                "B")],
                         "short", (12, 34, 12, 9), dashed_ref="B"),
        timeseries_panel(13, "Delivery ratio",
                         "Delivered as a share of sent per half hour, per WABA (message "
                         "analytics). The dashed line is WhatsAppDeliveryRateLow's 90%.",
                         [query(delivery_ratio(by_waba=True), "{{waba_name}}")],
                         "percentunit", (0, 43, 12, 9), maximum=1,
                         threshold_line=DELIVERY_ALERT_RATIO),
        timeseries_panel(14, "Sent and delivered per half hour",
                         "Messages the business sent, and those delivered, per half hour per "
                         "WABA (message analytics).",
                         [query(f"sum by (waba_name) (whatsapp_messages_sent{{{WSEL}}})",
                                "{{waba_name}} sent"),
                          query(f"sum by (waba_name) (whatsapp_messages_delivered{{{WSEL}}})",
                                "{{waba_name}} delivered", "B")],
                         "short", (12, 43, 12, 9), dashed_ref="B"),
        timeseries_panel(15, "Cost per half hour",
                         "Cost per half hour per WABA, in each account's currency (only accounts "
                         "billed directly; partner customers get no cost)." + MESSAGE_LAG,
                         [query(f"sum by (waba_name) (whatsapp_pricing_cost{{{PSEL}}})",
                                "{{waba_name}}")],
                         "short", (0, 52, 12, 9)),
        timeseries_panel(16, "Data age",
                         "How long ago the reported half hour of pricing analytics started, per "
                         "WABA: between poll.delay + 30m and poll.delay + 60m when all is well.",
                         [query("time() - whatsapp_pricing_bucket_start_timestamp_seconds"
                                f"{{{WSEL}}}", "{{waba_name}}")],
                         "s", (12, 52, 12, 9), steps=False,
                         threshold_line=STALE_AFTER_SECONDS),
    ]


def messages_in_detail() -> list[AnyBuilder]:
    return [
        table_panel(17, "Latest complete half hour",
                    "Every pricing label set of the latest complete half hour, busiest first. "
                    "Label sets seen in the lookback window but not in this half hour read 0.",
                    "sum by (waba_name, phone_number, pricing_category, pricing_type, country, "
                    f"tier) ({VOLUME}{{{PSEL}}})",
                    "short", (0, 62, 24, 12), hide=["Time"], value_name="Messages"),
    ]


def messages_dashboard() -> dash.Dashboard:
    variables: list[AnyBuilder] = [
        datasource_variable(),
        query_variable("waba", "WABA",
                       "label_values(whatsapp_pricing_bucket_start_timestamp_seconds, "
                       "waba_name)"),
        query_variable("phone_number", "Phone number",
                       f'label_values({VOLUME}{{waba_name=~"$waba"}}, phone_number)'),
        query_variable("category", "Pricing category",
                       f'label_values({VOLUME}{{waba_name=~"$waba"}}, pricing_category)'),
    ]
    return dashboard(
        "whatsapp-messages", "WhatsApp messages and pricing",
        "WhatsApp Business messages per half hour from whatsapp-exporter (pricing_analytics "
        "and message analytics): billed and free volume by pricing category, type, country and "
        "tier, marketing against the spike threshold, delivery and cost.",
        variables, [
            (row(100, "Latest complete half hour", 0), messages_now()),
            (row(101, "Volume per half hour", 5), messages_volume()),
            (row(102, "Marketing, delivery and cost", 33), messages_marketing_and_delivery()),
            (row(103, "Latest bucket in detail", 61), messages_in_detail()),
        ], time_from="now-24h",
    )


DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "whatsapp-conversations.json": conversations_dashboard,
    "whatsapp-exporter-health.json": health_dashboard,
    "whatsapp-messages.json": messages_dashboard,
}


def render(build: Callable[[], dash.Dashboard]) -> str:
    board = build().build()
    assert board.schema_version == SCHEMA_VERSION, board.schema_version
    encoder = JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False)
    return encoder.encode(board) + "\n"


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
