"""Benchmark: a month of daily risk partitions of the largest demo network backfilled as one run,
whose partition steps execute on celery workers over the machine's RabbitMQ broker, on the
production instance (deploy/dagster.postgres.yaml on the machine's PostgreSQL, a scratch database).

The largest demo network is dt_schutterwald: the LV grid Schutterwald from the Digital-Twin values
API (its stand-in served on 127.0.0.1 for the run), 3,008 segments in 3,084 weather fragments,
against 240 segments of oberrhein_mv and 110 of the SimBench grid. (cgmes_smallgrid spans more
kilometres but its CIM files are a licensed set-up download, absent on a fresh machine.)

Ours: two celery workers (one step process each). Baseline: one celery worker. Same job, same
inputs (topology, generated vegetation, thresholds and a month of DWD reference weather,
prepared once in-process), each run writing its own per-partition Parquet store; the two
stores must hold equal rows (raise otherwise). Only the run is timed, workers already up (their
code location loaded) and warmed by one short run (WARM_UP_LAST), as deployed workers are. Prints
one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg

from grid_platform.assets.risk import heat_thresholds, risk_assets, vegetation, weather_reference
from grid_platform.assets.topology import grid_topology, networks
from grid_platform.executors import celery_workers, grid_executor
from grid_platform.production import scratch_postgres_instance
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.risk.partitions import stored_tables
from grid_platform.sensors.risk import risk_tables_job
from grid_platform.standins.digital_twin import create_app as digital_twin_app
from grid_platform.standins.server import running
from grid_platform.weather.dwd_try import TRY_DIR_NAME, try_files

NETWORK = "dt_schutterwald"
FIRST, LAST = date(2025, 7, 1), date(2025, 7, 30)
# Before the timed month, each pool of workers runs the job once over the first six days (two
# partition steps), untimed: the timed run meets workers in their steady state, having served a
# run before (the job definition built, lazily loaded libraries loaded), as deployed workers are.
WARM_UP_LAST = date(2025, 7, 6)


def range_tags(first: date, last: date) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": dg.MultiPartitionKey({"date": first.isoformat(), "network": NETWORK}),
            "dagster/asset_partition_range_end": dg.MultiPartitionKey({"date": last.isoformat(), "network": NETWORK})}


TAGS = range_tags(FIRST, LAST)


def risk_tables_on_workers() -> dg.JobDefinition:
    """The job the workers rebuild (module scope, reconstructable)."""
    defs = dg.Definitions(assets=[grid_topology, *risk_assets], jobs=[risk_tables_job], executor=grid_executor(),
                          resources={"warehouse": WarehouseResource(path=dg.EnvVar("GRID_WAREHOUSE"),
                                                                    pipelines_dir=dg.EnvVar("GRID_DATA_DIR"))})
    return defs.resolve_job_def(risk_tables_job.name)


def prepare(instance: dg.DagsterInstance, work: Path) -> None:
    warehouse = WarehouseResource(path=os.environ["GRID_WAREHOUSE"], pipelines_dir=str(work / "dlt"))
    resources = {"warehouse": warehouse}
    instance.add_dynamic_partitions(networks.name, [NETWORK])
    for assets, kwargs in (([grid_topology], {"partition_key": NETWORK}), ([vegetation], {"partition_key": NETWORK}),
                           ([heat_thresholds], {}), ([weather_reference], {"tags": TAGS})):
        if not dg.materialize(assets, instance=instance, resources=resources, **kwargs).success:
            raise RuntimeError(f"preparing {assets[0].key} failed")


def timeline(instance: dg.DagsterInstance, run_id: str) -> str:
    """Seconds from the run's first event to each step's start and end: where a run's time goes."""
    records = instance.get_records_for_run(run_id, limit=100_000).records
    first = records[0].event_log_entry.timestamp
    marks = {dg.DagsterEventType.STEP_START: "start", dg.DagsterEventType.STEP_SUCCESS: "end",
             dg.DagsterEventType.RUN_SUCCESS: "run end"}
    lines = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.event_type in marks:
            step = (event.step_key or "").removeprefix("risk_tables.")
            lines.append(f"{record.event_log_entry.timestamp - first:7.2f} {marks[event.event_type]:7} {step}")
    return "\n".join(lines)


def timed_run(instance: dg.DagsterInstance, workers: int, work: Path) -> tuple[float, dict[str, pd.DataFrame]]:
    store = work / f"parts_{workers}_workers"
    os.environ["GRID_RISK_PARTS_URL"] = str(store)
    (work / f"logs_{workers}").mkdir()
    with celery_workers(workers, work / f"logs_{workers}", preload=(Path(__file__).stem,)):
        with dg.execute_job(dg.reconstructable(risk_tables_on_workers), instance=instance,
                            tags=range_tags(FIRST, WARM_UP_LAST)) as warm_up:
            if not warm_up.success:
                raise RuntimeError(f"warm-up run on {workers} worker(s) failed")
        start = time.perf_counter()
        with dg.execute_job(dg.reconstructable(risk_tables_on_workers), instance=instance, tags=TAGS) as result:
            elapsed = time.perf_counter() - start
            if not result.success:
                raise RuntimeError(f"risk backfill on {workers} worker(s) failed")
            steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events
                     if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
            print(timeline(instance, result.run_id), file=sys.stderr)
    heavy_keys = [k for k in steps if "risk_partition_runs" in k]
    heavy = [steps[k] for k in heavy_keys]
    print(json.dumps({"workers": workers, "run_s": round(elapsed, 1), "heavy_steps": len(heavy),
                      "heavy_step_s_sum": round(sum(heavy), 1),
                      "other_steps_s": {k: round(v, 1) for k, v in steps.items() if k not in heavy_keys}}), file=sys.stderr)
    return elapsed, stored_tables(str(store))


def main() -> None:
    project_try = ROOT / "data" / "downloads" / TRY_DIR_NAME
    if len(try_files(project_try)) != 15:
        raise SystemExit("DWD TRY files missing: run `make data` first")
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp, running(digital_twin_app()) as dt_url:
        work = Path(tmp)
        os.environ.update({
            "GRID_DATA_DIR": str(work / "data"), "GRID_WAREHOUSE": str(work / "warehouse.duckdb"),
            "GRID_TRY_DIR": str(project_try), "DAGSTER_HOME": str(work / "dagster"), "GRID_EXECUTOR": "celery",
            "CELERY_QUEUE": f"grid_bench_{uuid.uuid4().hex[:10]}", "DT_API_URL": dt_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        })
        with scratch_postgres_instance(work / "dagster", prefix="bench_scaleout") as (instance, _):
            prepare(instance, work)
            baseline_s, baseline = timed_run(instance, 1, work)
            ours_s, ours = timed_run(instance, 2, work)
        for table, frame in baseline.items():
            pd.testing.assert_frame_equal(ours[table], frame, check_dtype=False, obj=table)
    days = (LAST - FIRST).days + 1
    print(json.dumps({"name": "risk_backfill_two_celery_workers_vs_one", "n": days, "ours_s": round(ours_s, 3),
                      "baseline_s": round(baseline_s, 3), "ratio": round(baseline_s / ours_s, 3),
                      "network": NETWORK, "rows": int(sum(len(f) for f in ours.values()))}))


if __name__ == "__main__":
    main()
