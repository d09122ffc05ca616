"""dlt source of the CKW public API: typed resources merged on their natural keys.

One resource per ingested table (ckw.md §7). A source is built fresh for every run (a
module-level source run twice in one process fails inside dlt), bound to the run's client,
ingest log and report. ``ckw_ingest_log_source`` loads the spooled attempts and rejects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterator

import dlt

from grid_platform.ckw.client import CkwClient
from grid_platform.ckw.fetch import FetchReport, fetch_plant_status, fetch_prices, fetch_tra_signals
from grid_platform.ckw.ingest_log import IngestLog, SpoolSnapshot
from grid_platform.ckw.normalise import TARIFF_NAMES

DATASET = "raw"


def _col(data_type: str, nullable: bool = True, **hints) -> dict:
    # A new dict per column: dlt writes the column name into the hint it is given.
    return {"data_type": data_type, "nullable": nullable, **hints}


def _ts(nullable: bool = True) -> dict:
    return _col("timestamp", nullable, timezone=True)


def _text(nullable: bool = True) -> dict:
    return _col("text", nullable)


def _bigint(nullable: bool = True) -> dict:
    return _col("bigint", nullable)


def _double() -> dict:
    return _col("double")


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
    @dlt.resource(
        name="ckw_prices",
        primary_key=("slot_start", "tariff_type", "tariff_name"),
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        columns={
            "slot_start": _ts(False), "slot_end": _ts(False),
            "tariff_name": _text(False), "tariff_type": _text(False),
            "unit": _text(), "value": {"data_type": "decimal", "precision": 10, "scale": 6},
            "publication_ts": _ts(), "ingested_at": _ts(),
        },
    )
    def ckw_prices(
        slot_start=dlt.sources.incremental(
            "slot_start",
            initial_value=run.price_range[0] if run.price_range else None,
            end_value=run.price_range[1] if run.price_range else None,
            range_end="open",
        ),
    ) -> Iterator[dict]:
        """Dynamic quarter-hour prices of every tariff type and customer variant, upserted on
        (slot_start, tariff_type, tariff_name) so overlapping and repeated runs add no rows."""
        # A bounded incremental on the interval start: the run's partition window.
        yield from fetch_prices(run.client, run.log, run.report, slot_start.start_value, slot_start.end_value,
                                run.tariff_names)

    @dlt.resource(
        name="ckw_tra_signals",
        primary_key=("signal_name", "signal_date", "start_ts"),
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        columns={
            "signal_name": _text(False), "description": _text(),
            "signal_date": {"data_type": "date", "nullable": False},
            "start_ts": _ts(False), "end_ts": _ts(), "ingested_at": _ts(),
        },
    )
    def ckw_tra_signals() -> Iterator[dict]:
        """Ripple-control (TRA) signals by explicit date; a corrected End or Description
        replaces the stored one."""
        yield from fetch_tra_signals(run.client, run.log, run.report, run.tra_days)

    @dlt.resource(
        name="ckw_plant_status",
        primary_key=("plant_id", "reading_ts"),
        # A re-poll of the same reading is a no-op for data (the seed appended duplicates).
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        columns={
            "plant_id": _text(False), "reading_ts": _ts(False),
            "operational_status": _text(), "voltage_kv": _double(), "active_power_mw": _double(),
            "reactive_power_mvar": _double(), "wind_speed_kmh": _double(), "raw_payload": _text(),
            "ingested_at": _ts(),
        },
    )
    def ckw_plant_status() -> Iterator[dict]:
        """Live readings of the Lutersarni wind turbine, one row per reading timestamp."""
        yield from fetch_plant_status(run.client, run.log, run.report)

    return ckw_prices, ckw_tra_signals, ckw_plant_status


@dlt.source(name="ckw_ingest_log", max_table_nesting=0)
def ckw_ingest_log_source(snapshot: SpoolSnapshot | None):
    @dlt.resource(
        name="ckw_api_health_log",
        primary_key=("run_id", "endpoint", "call_seq", "attempt"),
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        columns={
            "run_id": _text(False), "endpoint": _text(False),
            "call_seq": _bigint(False), "attempt": _bigint(False),
            "request": _text(), "checked_at": _ts(False), "status_code": _bigint(),
            "response_time_ms": _bigint(), "success": {"data_type": "bool"}, "error_message": _text(),
            "outcome": _text(), "ratelimit_limit": _bigint(), "ratelimit_remaining": _bigint(),
            "ratelimit_reset": _bigint(),
        },
    )
    def ckw_api_health_log() -> Iterator[dict]:
        """Every HTTP attempt against the CKW API, retries and failures included."""
        yield from snapshot.attempts

    @dlt.resource(
        name="ckw_rejects",
        primary_key=("run_id", "endpoint", "record_hash"),
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        columns={
            "run_id": _text(False), "endpoint": _text(False),
            "record_hash": _text(False), "rejected_at": _ts(), "reason": _text(),
            "record": _text(),
        },
    )
    def ckw_rejects() -> Iterator[dict]:
        """Records the API sent that broke the contract, with the reason; never loaded as data."""
        yield from snapshot.rejects

    return ckw_api_health_log, ckw_rejects
