#!/usr/bin/env bash
# Copies the alert and recording rules (prometheus/) and the Grafana dashboards
# (grafana/dashboards/) into the Helm chart, which cannot read files outside its own directory.
# tests/test_chart.py fails while a copy differs from its original: run this after changing
# either, and commit the copies with the originals.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/whatsapp-exporter/files
mkdir -p "$chart/prometheus" "$chart/dashboards"
cp prometheus/alerts.yml prometheus/recording_rules.yml "$chart/prometheus/"
rm -f "$chart"/dashboards/*.json
cp grafana/dashboards/*.json "$chart/dashboards/"
echo "copied the rules and $(ls grafana/dashboards/*.json | wc -l) dashboard(s) into $chart"
