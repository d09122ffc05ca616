"""One-year backfill of every CKW price series (4 tariff types x 2 customer variants) from the
local stand-in into DuckDB.

ours:     30-day API windows, Arrow batches, dlt upsert (the platform's ingestion path).
baseline: the seed's approach: one request per day and tariff, pandas json_normalize,
          row-by-row INSERT. Both load the same rows; the tables are compared at the end.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import dlt
import duckdb
import httpx
import pandas as pd

from grid_platform.ckw.client import CkwClient
from grid_platform.ckw.ingest_log import IngestLog
from grid_platform.ckw.normalise import TARIFF_NAMES, TARIFF_TYPES
from grid_platform.ckw.source import CkwRun, ckw_source
from grid_platform.ckw.windows import local_days_bounds, rfc3339_utc
from grid_platform.standins import ckw as ckw_standin
from grid_platform.standins.server import running

TZ = "Europe/Zurich"
FIRST, LAST = date(2025, 1, 1), date(2025, 12, 31)


def ours(base_url: str, workdir: Path) -> Path:
    path = workdir / "ours.duckdb"
    log = IngestLog(workdir / "spool", "bench")
    with CkwClient(base_url, run_id="bench", on_attempt=log.attempt, on_bad_body=log.bad_body) as client:
        run = CkwRun(client=client, log=log, price_range=local_days_bounds(FIRST, LAST, TZ))
        pipeline = dlt.pipeline("bench_ckw", destination=dlt.destinations.duckdb(str(path)), dataset_name="raw",
                                pipelines_dir=str(workdir / "dlt"))
        pipeline.run(ckw_source(run).with_resources("ckw_prices"))
    assert run.report.complete, run.report.failures
    return path


def baseline(base_url: str, workdir: Path) -> Path:
    path = workdir / "baseline.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema raw; create table raw.ckw_prices (slot_start timestamptz, slot_end timestamptz, "
                "tariff_name varchar, tariff_type varchar, unit varchar, value decimal(10,6))")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        day = FIRST
        while day <= LAST:
            start, end = local_days_bounds(day, day, TZ)
            for tariff_name in TARIFF_NAMES:
                body = http.get("/v1/netzinformationen/energie/dynamische-preise",
                                params={"tariff_name": tariff_name, "start_timestamp": rfc3339_utc(start),
                                        "end_timestamp": rfc3339_utc(end)}).json()
                frame = pd.json_normalize(body["prices"])
                for _, slot in frame.iterrows():
                    slot_start = pd.Timestamp(slot["start_timestamp"])
                    if slot_start >= pd.Timestamp(end):
                        continue
                    for tariff_type in TARIFF_TYPES:
                        item = slot[tariff_type][0]
                        con.execute("insert into raw.ckw_prices values (?, ?, ?, ?, ?, ?)",
                                    [slot_start.to_pydatetime(), pd.Timestamp(slot["end_timestamp"]).to_pydatetime(),
                                     tariff_name, tariff_type, item["unit"], item["value"]])
            day += timedelta(days=1)
    con.close()
    return path


def main() -> int:
    app = ckw_standin.create_app(today=lambda: date(2026, 11, 25))
    with running(app) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = url + "/api"
        t0 = time.perf_counter()
        ours_path = ours(base, workdir)
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        base_path = baseline(base, workdir)
        baseline_s = time.perf_counter() - t0
        con = duckdb.connect()
        con.execute(f"attach '{ours_path}' as o (read_only); attach '{base_path}' as b (read_only)")
        cols = "slot_start, slot_end, tariff_name, tariff_type, unit, value"
        n = con.execute("select count(*) from o.raw.ckw_prices").fetchone()[0]
        diff = con.execute(f"select count(*) from ((select {cols} from o.raw.ckw_prices except all "
                           f"select {cols} from b.raw.ckw_prices) union all (select {cols} from b.raw.ckw_prices "
                           f"except all select {cols} from o.raw.ckw_prices))").fetchone()[0]
        if diff:
            raise SystemExit(f"outputs differ in {diff} rows")
    print(json.dumps({"name": "ckw_price_backfill_1y", "n": n, "ours_s": round(ours_s, 3),
                      "baseline_s": round(baseline_s, 3), "ratio": round(baseline_s / ours_s, 2),
                      "note": "rows = 365 local days x 96/92/100 slots x 4 tariff types x 2 tariff names"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
