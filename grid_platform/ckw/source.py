"""dlt source of the CKW public API: typed resources merged on their natural keys.

One resource per ingested table (ckw.md §7). Batches are handed to dlt as Arrow tables with
an explicit schema: that fixes the column types (timestamptz in UTC, decimal(10,6)) and
loads an order of magnitude faster than row dicts. A source is built fresh for every run
(a module-level source run twice in one process fails inside dlt), bound to the run's
client, ingest log and report. ``ckw_ingest_log_source`` loads the spooled attempts and
rejects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import dlt
import pyarrow as pa

from grid_platform.ckw.client import CkwClient
from grid_platform.ckw.fetch import FetchReport, fetch_plant_status, fetch_prices, fetch_tra_signals
from grid_platform.ckw.ingest_log import IngestLog, SpoolSnapshot
from grid_platform.ckw.normalise import TARIFF_NAMES

DATASET = "raw"
UTC = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype, nullable=nullable) for name, dtype, nullable in fields])


PRICES = _schema(
    ("slot_start", UTC, False), ("slot_end", UTC, False), ("tariff_name", pa.string(), False),
    ("tariff_type", pa.string(), False), ("unit", pa.string(), True), ("value", pa.decimal128(10, 6), True),
    ("publication_ts", UTC, True), ("ingested_at", UTC, True),
)
TRA_SIGNALS = _schema(
    ("signal_name", pa.string(), False), ("description", pa.string(), True), ("signal_date", pa.date32(), False),
    ("start_ts", UTC, False), ("end_ts", UTC, True), ("ingested_at", UTC, True),
)
PLANT_STATUS = _schema(
    ("plant_id", pa.string(), False), ("reading_ts", UTC, False), ("operational_status", pa.string(), True),
    ("voltage_kv", pa.float64(), True), ("active_power_mw", pa.float64(), True),
    ("reactive_power_mvar", pa.float64(), True), ("wind_speed_kmh", pa.float64(), True),
    ("raw_payload", pa.string(), True), ("ingested_at", UTC, True),
)
HEALTH_LOG = _schema(
    ("run_id", pa.string(), False), ("endpoint", pa.string(), False), ("call_seq", pa.int64(), False),
    ("attempt", pa.int64(), False), ("request", pa.string(), True), ("checked_at", UTC, False),
    ("status_code", pa.int64(), True), ("response_time_ms", pa.int64(), True), ("success", pa.bool_(), True),
    ("error_message", pa.string(), True), ("outcome", pa.string(), True), ("ratelimit_limit", pa.int64(), True),
    ("ratelimit_remaining", pa.int64(), True), ("ratelimit_reset", pa.int64(), True),
)
REJECTS = _schema(
    ("run_id", pa.string(), False), ("endpoint", pa.string(), False), ("record_hash", pa.string(), False),
    ("rejected_at", UTC, True), ("reason", pa.string(), True), ("record", pa.string(), True),
)


def _tables(batches: Iterable[list[dict]], schema: pa.Schema) -> Iterator[pa.Table]:
    empty = True
    for batch in batches:
        if batch:
            empty = False
            yield pa.Table.from_pylist(batch, schema=schema)
    if empty:
        # An empty table still creates the warehouse table, so the dbt staging views always build.
        yield schema.empty_table()


def _parse_times(rows: list[dict], *columns: str) -> list[dict]:
    """Spooled rows carry ISO strings; Arrow wants datetimes."""
    for row in rows:
        for column in columns:
            if isinstance(row.get(column), str):
                row[column] = datetime.fromisoformat(row[column])
    return rows


UPSERT = {"disposition": "merge", "strategy": "upsert"}


@dataclass
class CkwRun:
    """What one run needs to call the API; ``None`` client only for building asset specs."""

    client: CkwClient | None
    log: IngestLog | None
    report: FetchReport = field(default_factory=FetchReport)
    price_range: tuple[datetime, datetime] | None = None
    tariff_names: tuple[str, ...] = TARIFF_NAMES
    tra_days: list[date] = field(default_factory=list)


@dlt.source(name="ckw", max_table_nesting=0)
def ckw_source(run: CkwRun):
    @dlt.resource(name="ckw_prices", primary_key=("slot_start", "tariff_type", "tariff_name"),
                  write_disposition=UPSERT)
    def ckw_prices(
        slot_start=dlt.sources.incremental(
            "slot_start",
            initial_value=run.price_range[0] if run.price_range else None,
            end_value=run.price_range[1] if run.price_range else None,
            range_end="open",
        ),
    ) -> Iterator[pa.Table]:
        """Dynamic quarter-hour prices of every tariff type and customer variant, upserted on
        (slot_start, tariff_type, tariff_name) so overlapping and repeated runs add no rows."""
        # A bounded incremental on the interval start: the run's partition window.
        batches = fetch_prices(run.client, run.log, run.report, slot_start.start_value, slot_start.end_value,
                               run.tariff_names)
        yield from _tables(batches, PRICES)

    @dlt.resource(name="ckw_tra_signals", primary_key=("signal_name", "signal_date", "start_ts"),
                  write_disposition=UPSERT)
    def ckw_tra_signals() -> Iterator[pa.Table]:
        """Ripple-control (TRA) signals by explicit date; a corrected End or Description
        replaces the stored one."""
        yield from _tables(fetch_tra_signals(run.client, run.log, run.report, run.tra_days), TRA_SIGNALS)

    # A re-poll of the same reading is a no-op for data (the seed appended duplicates).
    @dlt.resource(name="ckw_plant_status", primary_key=("plant_id", "reading_ts"),
                  write_disposition={"disposition": "merge", "strategy": "insert-only"})
    def ckw_plant_status() -> Iterator[pa.Table]:
        """Live readings of the Lutersarni wind turbine, one row per reading timestamp."""
        yield from _tables(fetch_plant_status(run.client, run.log, run.report), PLANT_STATUS)

    return ckw_prices, ckw_tra_signals, ckw_plant_status


@dlt.source(name="ckw_ingest_log", max_table_nesting=0)
def ckw_ingest_log_source(snapshot: SpoolSnapshot | None):
    @dlt.resource(name="ckw_api_health_log", primary_key=("run_id", "endpoint", "call_seq", "attempt"),
                  write_disposition=UPSERT)
    def ckw_api_health_log() -> Iterator[pa.Table]:
        """Every HTTP attempt against the CKW API, retries and failures included."""
        yield from _tables([_parse_times(snapshot.attempts, "checked_at")], HEALTH_LOG)

    @dlt.resource(name="ckw_rejects", primary_key=("run_id", "endpoint", "record_hash"), write_disposition=UPSERT)
    def ckw_rejects() -> Iterator[pa.Table]:
        """Records the API sent that broke the contract, with the reason; never loaded as data."""
        yield from _tables([_parse_times(snapshot.rejects, "rejected_at")], REJECTS)

    return ckw_api_health_log, ckw_rejects
