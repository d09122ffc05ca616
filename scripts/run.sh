#!/usr/bin/env bash
# `make run`: stand-ins and the read API in the background, Dagster in the foreground
# (so Ctrl-C stops it), and the first materialisation submitted once the UI answers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$DAGSTER_HOME" "$GRID_DATA_DIR" logs
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# Reports of the demo go to the recording nudging stand-in, so dispatch is on unless told otherwise.
export GRID_ALERTS_ENABLED="${GRID_ALERTS_ENABLED:-true}"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Reference data from the package registry, fetched at set-up and never committed: the DWD
# test reference years (weather stand-in, climatology) and the licensed CGMES test
# configurations (the registry builds that network once they are here).
python scripts/fetch_demandlib.py >logs/fetch_demandlib.log 2>&1 || echo "DWD reference years not reachable (logs/fetch_demandlib.log)"
python scripts/fetch_cgmes.py >logs/fetch_cgmes.log 2>&1 || echo "CGMES test data not reachable (logs/fetch_cgmes.log)"
grid-platform standins >logs/standins.log 2>&1 & pids+=($!)
if python -c "import grid_platform.api.app" 2>/dev/null; then
  grid-platform api >logs/api.log 2>&1 & pids+=($!)
  echo "read API: http://127.0.0.1:8015/api/docs (logs/api.log)"
fi
grid-platform bootstrap 2>&1 | tee logs/bootstrap.log & pids+=($!)

echo "Dagster UI: http://127.0.0.1:3000 (stand-ins: logs/standins.log)"
dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000
