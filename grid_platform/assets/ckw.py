"""CKW ingestion assets (dlt -> DuckDB ``raw``), with their checks beside them.

Prices and TRA signals are daily partitions in Europe/Zurich, backfilled in single runs
whose range the source splits into API windows; the plant feed is live. Every call's
attempts and every rejected record are spooled during the run and loaded by
``ckw_api_health_log``/``ckw_rejects``, so a failing call never loses its log.
"""


from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from grid_platform.ckw.fetch import FetchReport
from grid_platform.ckw.ingest_log import read_spool
from grid_platform.ckw.source import CkwRun, ckw_ingest_log_source, ckw_source
from grid_platform.ckw.windows import expected_slots
from grid_platform.resources.ckw import CkwApiResource
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.settings import load_settings

TZ = "Europe/Zurich"
OWNERS = ["team:grid-data"]
GROUP = "ckw"

# Tomorrow's prices are published at ~11:20 local, so the partition for D+1 exists.
price_days = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone=TZ, end_offset=1)
# TRA signals are served up to the previous day: the last partition is yesterday.
tra_days = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone=TZ)

INGESTED = ("ckw_prices", "ckw_tra_signals", "ckw_plant_status")


class CkwTranslator(DagsterDltTranslator):
    """Asset keys equal the table names (the dbt sources point at them); no stub upstreams."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name
        return spec.replace_attributes(
            key=dg.AssetKey(name),
            deps=[dg.AssetKey(k) for k in INGESTED] if name in ("ckw_api_health_log", "ckw_rejects") else [],
            group_name=GROUP,
            owners=OWNERS,
            kinds={"dlt", "duckdb"},
            description=(data.resource.__doc__ or spec.description or "").strip() or None,
            freshness_policy=(dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=15))
                              if name == "ckw_plant_status" else None),
        )


def _spec_source(*resources: str):
    # Used only to declare the assets; every run builds a fresh, bound source.
    return ckw_source(CkwRun(client=None, log=None)).with_resources(*resources)


def _settings_pipeline(name: str):
    s = load_settings()
    return WarehouseResource(path=str(s.warehouse_path), pipelines_dir=str(s.dlt_pipelines_dir)).dlt_pipeline(name)


def _annotated(events: Iterable, metadata: dict) -> Iterator:
    """dlt's materialisations with the run's own metadata added."""
    for event in events:
        if isinstance(event, dg.MaterializeResult):
            yield dg.MaterializeResult(asset_key=event.asset_key, metadata={**(event.metadata or {}), **metadata})
        else:
            yield event


def _report_metadata(report: FetchReport, log) -> dict:
    return {
        "api_calls": dg.MetadataValue.int(report.calls),
        "rows_fetched": dg.MetadataValue.int(report.rows),
        "attempts_logged": dg.MetadataValue.int(log.attempts),
        "records_rejected": dg.MetadataValue.int(log.rejects),
        "failed_calls": dg.MetadataValue.md("\n".join(f"- {f}" for f in report.failures) or "none"),
        "deferred_calls": dg.MetadataValue.int(len(report.deferred)),
    }


def _ckw_dlt_assets(resource: str, name: str, partitions_def: dg.PartitionsDefinition | None = None):
    """The dlt multi-asset of one CKW resource: its own dlt pipeline, the shared translator, and
    single-run backfills for partitioned ranges."""
    return dlt_assets(
        dlt_source=_spec_source(resource),
        dlt_pipeline=_settings_pipeline(resource),
        name=name,
        dagster_dlt_translator=CkwTranslator(),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        pool="duckdb",
    )


def _ingest(context: dg.AssetExecutionContext, dlt: DagsterDltResource, ckw: CkwApiResource,
            warehouse: WarehouseResource, resource: str, **run_fields) -> tuple[list, CkwRun]:
    """Calls the API for one resource and loads what came back; the run's report says what failed."""
    client, log = ckw.open(context.run_id)
    with client:
        run = CkwRun(client=client, log=log, **run_fields)
        events = list(dlt.run(context=context, dlt_source=ckw_source(run).with_resources(resource),
                              dlt_pipeline=warehouse.dlt_pipeline(resource)))
    return events, run


def _fail_if_incomplete(report: FetchReport, what: str) -> None:
    if report.failures:
        raise dg.Failure(
            description=f"{len(report.failures)} of {report.calls} CKW calls for {what} failed after all "
                        f"attempts; the rows of the other calls were loaded. First: {report.failures[0]}",
            metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in report.failures))},
        )


@_ckw_dlt_assets("ckw_prices", "ckw_price_ingest", price_days)
def ckw_price_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource, ckw: CkwApiResource,
                     warehouse: WarehouseResource):
    window = context.partition_time_window
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    events, run = _ingest(context, dlt, ckw, warehouse, "ckw_prices", price_range=(start, end))
    metadata = {**_report_metadata(run.report, run.log), **_price_window_metadata(warehouse, start, end)}
    yield from _annotated(events, metadata)
    _fail_if_incomplete(run.report, f"prices {window.start.date()}..{window.end.date()}")


def _price_window_metadata(warehouse: WarehouseResource, start: datetime, end: datetime) -> dict:
    rows = warehouse.query(
        """
        select timezone(?, slot_start)::date as local_date, tariff_name,
               count(*) filter (where tariff_type = 'integrated') as slots,
               min(value) filter (where tariff_type = 'integrated'),
               avg(value) filter (where tariff_type = 'integrated'),
               max(value) filter (where tariff_type = 'integrated')
        from raw.ckw_prices where slot_start >= ? and slot_start < ?
        group by 1, 2 order by 1, 2
        """,
        [TZ, start, end],
    )
    total = warehouse.query("select count(*) from raw.ckw_prices where slot_start >= ? and slot_start < ?",
                            [start, end])[0][0]
    lines = ["| local date | tariff | slots | expected | integrated min / avg / max CHF/kWh |", "|---|---|---|---|---|"]
    for local_date, tariff, slots, lo, avg, hi in rows[-62:]:
        lines.append(f"| {local_date} | {tariff} | {slots} | {expected_slots(local_date, TZ)} | "
                     f"{float(lo):.4f} / {float(avg):.4f} / {float(hi):.4f} |")
    return {
        "dagster/row_count": dg.MetadataValue.int(total),
        "window_utc": dg.MetadataValue.text(f"{start.isoformat()} .. {end.isoformat()}"),
        "slots_per_local_day": dg.MetadataValue.md("\n".join(lines)),
    }


@_ckw_dlt_assets("ckw_tra_signals", "ckw_tra_ingest", tra_days)
def ckw_tra_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource, ckw: CkwApiResource,
                   warehouse: WarehouseResource):
    window = context.partition_time_window
    days = [window.start.date() + timedelta(days=i) for i in range((window.end - window.start).days)]
    events, run = _ingest(context, dlt, ckw, warehouse, "ckw_tra_signals", tra_days=days)
    per_day = warehouse.query(
        "select signal_date, count(*), min(start_ts), max(end_ts) from raw.ckw_tra_signals "
        "where signal_date between ? and ? group by 1 order by 1", [days[0], days[-1]])
    table = ["| date | signals | first start | last end |", "|---|---|---|---|"] + [
        f"| {d} | {n} | {_local_hhmm(s)} | {_local_hhmm(e)} |" for d, n, s, e in per_day[-31:]]
    metadata = {**_report_metadata(run.report, run.log),
                "dagster/row_count": dg.MetadataValue.int(sum(r[1] for r in per_day)),
                "signals_per_day": dg.MetadataValue.md("\n".join(table))}
    yield from _annotated(events, metadata)
    _fail_if_incomplete(run.report, f"TRA signals {days[0]}..{days[-1]}")


def _local_hhmm(ts: datetime | None) -> str:
    return ts.astimezone(ZoneInfo(TZ)).strftime("%H:%M") if ts else ""


@_ckw_dlt_assets("ckw_plant_status", "ckw_plant_ingest")
def ckw_plant_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource, ckw: CkwApiResource,
                     warehouse: WarehouseResource):
    events, run = _ingest(context, dlt, ckw, warehouse, "ckw_plant_status")
    latest = warehouse.query(
        "select reading_ts, operational_status, active_power_mw, voltage_kv, reactive_power_mvar, wind_speed_kmh "
        "from raw.ckw_plant_status order by reading_ts desc limit 1")
    total = warehouse.query("select count(*) from raw.ckw_plant_status")[0][0]
    metadata = {**_report_metadata(run.report, run.log), "dagster/row_count": dg.MetadataValue.int(total)}
    if latest:
        ts, status, p, v, q, w = latest[0]
        metadata.update({
            "latest_reading": dg.MetadataValue.timestamp(ts),
            "operational_status": dg.MetadataValue.text(status or "unknown"),
            "active_power_mw": dg.MetadataValue.float(p) if p is not None else dg.MetadataValue.null(),
            "voltage_kv": dg.MetadataValue.float(v) if v is not None else dg.MetadataValue.null(),
        })
    yield from _annotated(events, metadata)
    _fail_if_incomplete(run.report, "the Lutersarni live feed")


@dlt_assets(
    dlt_source=ckw_ingest_log_source(None),
    dlt_pipeline=_settings_pipeline("ckw_ingest_log"),
    name="ckw_ingest_log",
    dagster_dlt_translator=CkwTranslator(),
    pool="duckdb",
)
def ckw_ingest_log_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource, ckw: CkwApiResource,
                          warehouse: WarehouseResource):
    snapshot = read_spool(Path(ckw.spool_dir))
    events = list(dlt.run(context=context, dlt_source=ckw_ingest_log_source(snapshot),
                          dlt_pipeline=warehouse.dlt_pipeline("ckw_ingest_log")))
    # Only once the rows are in the warehouse may the spool go; a crash before leaves it for the next run.
    snapshot.remove()
    metadata = {
        "spool_files_loaded": dg.MetadataValue.int(len(snapshot.files)),
        "attempts_loaded": dg.MetadataValue.int(len(snapshot.attempts)),
        "rejects_loaded": dg.MetadataValue.int(len(snapshot.rejects)),
        "torn_spool_lines": dg.MetadataValue.int(snapshot.torn_lines),
    }
    yield from _annotated(events, metadata)




# Checks ------------------------------------------------------------------------------
HEALTH_SCORE_THRESHOLD = 90.0  # % successful attempts in 24 h; the dashboard's red band (ckw.md §8)
PRICE_RANGE_CHF_KWH = (-1.0, 2.0)
PLANT_RANGES = {"active_power_mw": (-0.5, 3.0), "voltage_kv": (15.0, 25.0), "wind_speed_kmh": (0.0, 250.0)}


def _missing_table(table: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"reason": f"raw.{table} does not exist yet"})


def _check_unique(warehouse: WarehouseResource, table: str, key: tuple[str, ...]) -> dg.AssetCheckResult:
    if not warehouse.table_exists(table):
        return _missing_table(table)
    cols = ", ".join(key)
    rows, dupes = warehouse.query(
        f"select count(*), count(*) - (select count(*) from (select distinct {cols} from raw.{table})) from raw.{table}"
    )[0]
    return dg.AssetCheckResult(passed=dupes == 0, metadata={"rows": rows, "duplicate_keys": dupes, "key": cols})


@dg.asset_check(asset="ckw_prices", pool="duckdb", blocking=True,
                description="One row per (slot_start, tariff_type, tariff_name).")
def ckw_prices_unique_key(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _check_unique(warehouse, "ckw_prices", ("slot_start", "tariff_type", "tariff_name"))


@dg.asset_check(asset="ckw_prices", pool="duckdb",
                description="integrated = grid + electricity, grid_usage <= grid, values within "
                            f"{PRICE_RANGE_CHF_KWH} CHF/kWh (ckw.md §3 invariants).")
def ckw_prices_invariants(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_prices"):
        return _missing_table("ckw_prices")
    slots, bad_sum, bad_usage, out_of_range = warehouse.query(
        """
        with p as (
          select slot_start, tariff_name,
                 max(value) filter (where tariff_type = 'grid') as grid,
                 max(value) filter (where tariff_type = 'electricity') as electricity,
                 max(value) filter (where tariff_type = 'integrated') as integrated,
                 max(value) filter (where tariff_type = 'grid_usage') as grid_usage,
                 bool_or(value < ? or value > ?) as out_of_range
          from raw.ckw_prices group by 1, 2)
        select count(*),
               count(*) filter (where abs(integrated - (grid + electricity)) > 0.000001),
               count(*) filter (where grid_usage > grid),
               count(*) filter (where out_of_range)
        from p
        """, list(PRICE_RANGE_CHF_KWH))[0]
    return dg.AssetCheckResult(
        passed=bad_sum == 0 and bad_usage == 0 and out_of_range == 0,
        metadata={"slots": slots, "integrated_not_grid_plus_electricity": bad_sum,
                  "grid_usage_above_grid": bad_usage, "values_out_of_range": out_of_range},
    )


@dg.asset_check(asset="ckw_prices", pool="duckdb",
                description="Every stored local day has all its quarter-hours (96; 92/100 on DST days) "
                            "for each tariff type and name.")
def ckw_prices_complete_days(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_prices"):
        return _missing_table("ckw_prices")
    rows = warehouse.query(
        "select timezone(?, slot_start)::date, tariff_name, tariff_type, count(*) from raw.ckw_prices "
        "group by 1, 2, 3 order by 1", [TZ])
    incomplete = [(d, n, t, c) for d, n, t, c in rows if c != expected_slots(d, TZ)]
    table = ["| local date | tariff | type | slots | expected |", "|---|---|---|---|---|"] + [
        f"| {d} | {n} | {t} | {c} | {expected_slots(d, TZ)} |" for d, n, t, c in incomplete[:50]]
    return dg.AssetCheckResult(
        passed=not incomplete,
        metadata={"day_series_checked": len(rows), "incomplete_day_series": len(incomplete),
                  "incomplete": dg.MetadataValue.md("\n".join(table))},
    )


@dg.asset_check(asset="ckw_prices", pool="duckdb",
                description="Today's prices are stored, and tomorrow's from 13:00 Europe/Zurich on.")
def ckw_prices_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_prices"):
        return _missing_table("ckw_prices")
    now_local = datetime.now(ZoneInfo(TZ))
    due = now_local.date() + timedelta(days=1) if now_local.hour >= 13 else now_local.date()
    latest_day = warehouse.query("select max(timezone(?, slot_start))::date from raw.ckw_prices", [TZ])[0][0]
    return dg.AssetCheckResult(
        passed=latest_day is not None and latest_day >= due,
        metadata={"latest_local_day": str(latest_day), "due_local_day": str(due)},
    )


@dg.asset_check(asset="ckw_tra_signals", pool="duckdb", blocking=True,
                description="One row per (signal_name, signal_date, start_ts), and every signal ends after it starts.")
def ckw_tra_signals_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    result = _check_unique(warehouse, "ckw_tra_signals", ("signal_name", "signal_date", "start_ts"))
    if not warehouse.table_exists("ckw_tra_signals"):
        return result
    inverted = warehouse.query("select count(*) from raw.ckw_tra_signals where end_ts <= start_ts")[0][0]
    return dg.AssetCheckResult(passed=result.passed and inverted == 0,
                               metadata={**result.metadata, "end_not_after_start": inverted})


@dg.asset_check(asset="ckw_plant_status", pool="duckdb", blocking=True,
                description="One row per (plant_id, reading_ts): re-polls of the same reading add nothing.")
def ckw_plant_status_unique_key(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _check_unique(warehouse, "ckw_plant_status", ("plant_id", "reading_ts"))


@dg.asset_check(asset="ckw_plant_status", pool="duckdb",
                description="The latest reading is at most 15 minutes old and its values are plausible "
                            f"for a 2.3 MW turbine on a 20 kV feeder: {PLANT_RANGES}.")
def ckw_plant_status_fresh_and_plausible(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_plant_status"):
        return _missing_table("ckw_plant_status")
    latest = warehouse.query("select max(reading_ts) from raw.ckw_plant_status")[0][0]
    age_min = (datetime.now(UTC) - latest).total_seconds() / 60 if latest else None
    implausible = {
        column: warehouse.query(f"select count(*) from raw.ckw_plant_status where {column} not between ? and ?",
                                [lo, hi])[0][0]
        for column, (lo, hi) in PLANT_RANGES.items()
    }
    return dg.AssetCheckResult(
        passed=age_min is not None and age_min <= 15 and not any(implausible.values()),
        metadata={"latest_reading_age_min": round(age_min, 1) if age_min is not None else None,
                  **{f"implausible_{k}": v for k, v in implausible.items()}},
    )


@dg.asset_check(asset="ckw_api_health_log", pool="duckdb",
                description=f"API health score over 24 h (successful attempts / attempts, 'deferred' excluded, "
                            f"x100) is at least {HEALTH_SCORE_THRESHOLD} %.")
def ckw_api_health_score(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_api_health_log"):
        return _missing_table("ckw_api_health_log")
    rows = warehouse.query(
        """
        select endpoint, count(*) filter (where outcome <> 'deferred'),
               count(*) filter (where success), round(avg(response_time_ms)),
               string_agg(distinct outcome, ', ')
        from raw.ckw_api_health_log where checked_at >= now() - interval 24 hour
        group by 1 order by 1
        """)
    attempts = sum(r[1] for r in rows)
    successes = sum(r[2] for r in rows)
    score = 100.0 * successes / attempts if attempts else None
    table = ["| endpoint | attempts | successes | mean latency ms | outcomes |", "|---|---|---|---|---|"] + [
        f"| {e} | {a} | {s} | {lat} | {o} |" for e, a, s, lat, o in rows]
    return dg.AssetCheckResult(
        passed=score is not None and score >= HEALTH_SCORE_THRESHOLD,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"health_score_pct": round(score, 2) if score is not None else None,
                  "attempts_24h": attempts, "per_endpoint": dg.MetadataValue.md("\n".join(table))},
    )


@dg.asset_check(asset="ckw_rejects", pool="duckdb",
                description="No record was rejected in the last 24 h; otherwise the reasons are listed.")
def ckw_no_recent_rejects(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    if not warehouse.table_exists("ckw_rejects"):
        return dg.AssetCheckResult(passed=True, metadata={"rejects_24h": 0})
    rows = warehouse.query(
        "select endpoint, reason, count(*) from raw.ckw_rejects where rejected_at >= now() - interval 24 hour "
        "group by 1, 2 order by 3 desc limit 20")
    table = ["| endpoint | reason | records |", "|---|---|---|"] + [f"| {e} | {r} | {n} |" for e, r, n in rows]
    return dg.AssetCheckResult(
        passed=not rows, severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejects_24h": sum(r[2] for r in rows), "reasons": dg.MetadataValue.md("\n".join(table))},
    )


ckw_assets = [ckw_price_assets, ckw_tra_assets, ckw_plant_assets, ckw_ingest_log_assets]
ckw_checks = [ckw_prices_unique_key, ckw_prices_invariants, ckw_prices_complete_days, ckw_prices_fresh,
              ckw_tra_signals_valid, ckw_plant_status_unique_key, ckw_plant_status_fresh_and_plausible,
              ckw_api_health_score, ckw_no_recent_rejects]
