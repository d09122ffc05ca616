#!/usr/bin/env bash
# `make run`: stand-ins and the read API in the background, Dagster in the foreground
# (so Ctrl-C stops it), and the first materialisation submitted once the UI answers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$DAGSTER_HOME" "$GRID_DATA_DIR" logs
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

grid-platform standins >logs/standins.log 2>&1 & pids+=($!)
# Licensed CGMES test configurations: fetched at set-up, never committed; the network
# registry builds that network once they are here.
python scripts/fetch_cgmes.py >logs/fetch_cgmes.log 2>&1 || echo "CGMES test data not reachable (see logs/fetch_cgmes.log)" &
if python -c "import grid_platform.api.app" 2>/dev/null; then
  grid-platform api >logs/api.log 2>&1 & pids+=($!)
  echo "read API: http://127.0.0.1:8015/api/docs (logs/api.log)"
fi
grid-platform bootstrap 2>&1 | tee logs/bootstrap.log & pids+=($!)

echo "Dagster UI: http://127.0.0.1:3000 (stand-ins: logs/standins.log)"
dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000
