"""Per-partition risk storage: each risk run of one network and issue date is written as its own
Parquet files, so runs of different partitions execute in parallel (on several workers) without
sharing a writer; the served tables are assembled from them by SQL.

Layout (hive partitioning, local directory or any fsspec URL such as ``s3://bucket/risk``)::

    <root>/<table>/network_id=<id>/issue_date=<YYYY-MM-DD>/part.parquet

A run for issue date D stores its horizon rows (D .. D + horizon - 1) of every dated table, its
snapshot tables (nowcast, trend, spans), its weather flags and one ``runs`` row (horizon,
generation instant, P90 source, quality counters, weather source).

Assembly keeps the §6 refresh semantics of a chain of daily runs without running the chain: a
date takes the rows of the latest issue whose horizon covers it (a later run recomputes the
dates from its issue date onwards, also where it found no risk row), a snapshot table the
latest issue of the network. Backfilling older dates therefore never touches newer ones.

The one thing the chain carried from run to run is the point-day history heat streaks
continue from: a partition rebuilds it from the stored weather of the ``HISTORY_DAYS`` before
its issue date (``history_hours``), so a streak is counted up to that many days back.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import fsspec
import pandas as pd

from grid_platform.risk.config import RiskConfig
from grid_platform.risk.pipeline import RiskRun
from grid_platform.risk.publication import _write
from grid_platform.risk.tables import grid_summary
from grid_platform.risk.vegetation import SPAN_COLUMNS

HISTORY_DAYS = 21
RUNS = "runs"
PART_FILE = "part.parquet"


@dataclass(frozen=True)
class PartTable:
    name: str  # folder under the root, and the warehouse view risk.<name> when ``view``
    attr: str  # RiskRun attribute
    stem: str  # file of the risk publication
    dated: bool  # rows by date (horizon of the run) or a snapshot of the run
    view: bool = True


PART_TABLES = [
    PartTable("fragment_risk_daily", "fragment_risk_daily", "fragment_risk_daily", True),
    PartTable("grid_risks", "risks", "risks", True),
    PartTable("risks_8h", "risks_8h", "risks_8h", True),
    PartTable("risks_now", "risks_now", "risks_now", False),
    PartTable("risk_km", "risk_km", "risk_km", True),
    PartTable("trendline", "trendline", "trendline", True),
    PartTable("trend", "trend", "trend", False),
    PartTable("tree_strike_spans", "tree_strike_spans", "tree_strike_spans", False),
    PartTable("weather_point_days", "point_days", "weather_point_days", True),
    # The weather assets own the warehouse table risk.weather_flags: these are the run's own.
    PartTable("run_weather_flags", "weather_flags", "weather_flags", False, view=False),
]


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def partition_url(root: str, table: str, network_id: str, issue_date: date) -> str:
    return _join(root, table, f"network_id={network_id}", f"issue_date={issue_date.isoformat()}", PART_FILE)


def put_parquet(frame: pd.DataFrame, url: str) -> None:
    """Write ``frame`` as Parquet at ``url``: written locally first (typed even when empty), then
    moved into place in one step, so a reader never sees a half-written file."""
    fs, path = fsspec.core.url_to_fs(url)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PART_FILE
        _write(frame, local)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(local), path + ".tmp")
        fs.mv(path + ".tmp", path)


def write_partition(root: str, run: RiskRun, horizon_days: int, weather_source: str) -> dict[str, int]:
    """Store one run (network ``run.network_id``, issue date ``run.today``); returns rows per table."""
    last = run.today + timedelta(days=horizon_days - 1)
    written = {}
    for t in PART_TABLES:
        frame = getattr(run, t.attr)
        if frame is None:  # no vegetation layer given: no spans
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in SPAN_COLUMNS})
        if t.dated:
            days = pd.to_datetime(frame["date"])
            frame = frame[(days >= pd.Timestamp(run.today)) & (days <= pd.Timestamp(last))]
        frame = frame.drop(columns=[c for c in ("network_id", "issue_date") if c in frame.columns])
        put_parquet(frame.reset_index(drop=True), partition_url(root, t.name, run.network_id, run.today))
        written[t.name] = len(frame)
    meta = pd.DataFrame([{
        "first_date": run.today, "last_date": last, "generated_at": pd.Timestamp(run.generated_at),
        "p90_source": run.p90_source, "weather_source": weather_source,
        "quality": json.dumps(run.quality, default=str)}])
    put_parquet(meta, partition_url(root, RUNS, run.network_id, run.today))
    return written


def history_hours(weather: pd.DataFrame, day: date, local_tz: str) -> pd.DataFrame:
    """The stored hours a run for ``day`` continues its point-day history from: for each local date
    of the ``HISTORY_DAYS`` before ``day``, the hours of the latest issue (<= that date) covering it.
    ``weather``: hourly rows with ``issue_date``."""
    if weather.empty:
        return weather
    local = pd.to_datetime(weather["ts_utc"], utc=True).dt.tz_convert(local_tz).dt.tz_localize(None).dt.normalize()
    issue = pd.to_datetime(weather["issue_date"])
    keep = (local < pd.Timestamp(day)) & (local >= pd.Timestamp(day - timedelta(days=HISTORY_DAYS))) & (issue <= local)
    rows = weather[keep].assign(_local=local[keep], _issue=issue[keep])
    latest = rows.groupby("_local")["_issue"].transform("max")
    return rows[rows["_issue"] == latest].drop(columns=["_local", "_issue"]).reset_index(drop=True)


# Assembly ---------------------------------------------------------------------------------------

def _glob(root: str, table: str, network_id: str) -> str:
    return _join(root, table, f"network_id={network_id}", "issue_date=*", PART_FILE).replace("'", "''")


def _scan(root: str, table: str, network_id: str) -> str:
    return (f"read_parquet('{_glob(root, table, network_id)}', hive_partitioning = true, union_by_name = true, "
            "hive_types = {'network_id': 'VARCHAR', 'issue_date': 'DATE'})")


def table_sql(root: str, t: PartTable, network_id: str = "*", columns: Sequence[str] | None = None) -> str:
    """SELECT of the served rows of ``t`` (every network, or one): per date the latest issue
    covering it, or for a snapshot the network's latest issue."""
    select = ", ".join(f'"{c}"' for c in columns) if columns else "* exclude (issue_date)"
    if t.dated:
        winners = (f"select network_id, unnest(generate_series(first_date, last_date, interval 1 day))::date as date, "
                   f"issue_date from {_scan(root, RUNS, network_id)}")
        return (f"select {select} from {_scan(root, t.name, network_id)} "
                f"semi join (select network_id, date, max(issue_date) as issue_date from ({winners}) group by all) "
                "using (network_id, date, issue_date)")
    latest = f"select network_id, max(issue_date) as issue_date from {_scan(root, RUNS, network_id)} group by all"
    return f"select {select} from {_scan(root, t.name, network_id)} semi join ({latest}) using (network_id, issue_date)"


def connect(root: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session able to read ``root`` (httpfs for object stores; credentials
    from the environment's credential chain)."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for statement in object_store_statements(root):
        con.execute(statement)
    return con


def object_store_statements(root: str) -> list[str]:
    """What a DuckDB session needs before reading ``root``: nothing for a local directory, httpfs and
    an S3 secret from the environment's credential chain for an object store."""
    if "://" not in root or root.startswith("file://"):
        return []
    return ["install httpfs", "load httpfs",
            "create secret if not exists grid_risk_parts (type s3, provider credential_chain)"]


def networks_stored(root: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(_join(root, RUNS))
    if not fs.exists(path):
        return []
    return sorted(p.rstrip("/").rsplit("network_id=", 1)[1] for p in fs.ls(path, detail=False) if "network_id=" in p)


def assemble(root: str, network_id: str, cfg: RiskConfig) -> RiskRun:
    """The served risk run of a network from its stored partitions: today = the latest issue date,
    history and horizon per date from the latest covering issue, the summary recomputed."""
    with connect(root) as con:
        runs = con.execute(f"select * from {_scan(root, RUNS, network_id)} order by issue_date").df()
        if runs.empty:
            raise LookupError(f"no stored risk partition for network {network_id!r} under {root}")
        latest = runs.iloc[-1]
        frames = {t.attr: con.execute(f"select * exclude (network_id) from ({table_sql(root, t, network_id)})").df()
                  for t in PART_TABLES}
    for frame in frames.values():
        if "date" in frame.columns:
            frame["date"] = pd.to_datetime(frame["date"])
    today = pd.Timestamp(latest["issue_date"]).date()
    generated_at: datetime = pd.Timestamp(latest["generated_at"]).to_pydatetime()
    return RiskRun(
        network_id=network_id, today=today, generated_at=generated_at, p90_source=str(latest["p90_source"]),
        summary=grid_summary(network_id, frames["trendline"], frames["risk_km"], today, generated_at, cfg),
        quality=json.loads(latest["quality"]), **frames)


def issue_sources(root: str, network_id: str) -> dict[date, str]:
    """Weather source (forecast / reference) of every stored issue date of a network."""
    with connect(root) as con:
        rows = con.execute(f"select issue_date, weather_source from {_scan(root, RUNS, network_id)}").fetchall()
    return {pd.Timestamp(d).date(): s for d, s in rows}


def stored_tables(root: str) -> dict[str, pd.DataFrame]:
    """Every stored partition row per table (all networks and issue dates), in a canonical order:
    two stores with equal contents give equal frames whatever wrote them, in whatever order."""
    out = {}
    with connect(root) as con:
        for t in [*PART_TABLES, PartTable(RUNS, "", "", False, view=False)]:
            out[t.name] = con.execute(f"select * from {_scan(root, t.name, '*')} order by all").df()
    return out
